// stratactl get sites

#include "provider/stratactl/command.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/sites.grpc.pb.h"

namespace strata::ctl {

std::vector<Command> SiteCommands() {
  return {{"get", "sites", {"site"}, "The sites of the hierarchy", [](CLI::App*) -> Action {
             return [](Client& c) {
               v1::SiteList l;
               if (int rc = c.ListAll(&v1::SiteService::Stub::ListSites, &l)) return rc;
               Table t{{"CODE", "TYPE", "PARENT", "VERSION", "STATE", "ATTACHED"}, {}};
               for (const auto& s : l.sites()) {
                 t.rows.push_back(
                     {s.code(), s.type(), s.parent(), s.version(), s.state(), s.attached_at()});
               }
               Show(c.options(), l, l.next_page_token(), t);
               return kOk;
             };
           }}};
}

}  // namespace strata::ctl
