// stratactl get site-systems

#include "absl/strings/str_cat.h"
#include "provider/stratactl/command.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/site_systems.grpc.pb.h"

namespace strata::ctl {

std::vector<Command> SiteSystemCommands() {
  return {{"get",
           "site-systems",
           {"site-system"},
           "Management points (and distribution points) of every site, with their state",
           [](CLI::App*) -> Action {
             return [](Client& c) {
               v1::SiteSystemList l;
               if (int rc = c.ListAll(&v1::SiteSystemService::Stub::ListSiteSystems, &l)) {
                 return rc;
               }
               Table t{{"SITE", "ROLE", "NAME", "STATE", "VERSION", "CLIENTS", "LAST_CONTACT",
                        "ADDRESS"},
                       {}};
               for (const auto& s : l.systems()) {
                 t.rows.push_back({s.site_code(), s.role(), s.name(), s.state(), s.version(),
                                   absl::StrCat(s.clients_connected()), s.last_contact_at(),
                                   s.address()});
               }
               Show(c.options(), l, l.next_page_token(), t);
               return kOk;
             };
           }}};
}

}  // namespace strata::ctl
