// stratactl get audit

#include "provider/stratactl/command.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/audit.grpc.pb.h"

namespace strata::ctl {

std::vector<Command> AuditCommands() {
  return {
      {"get",
       "audit",
       {},
       "The audit log: every change and every refusal",
       [](CLI::App*) -> Action {
         return [](Client& c) {
           v1::AuditList l;
           if (int rc = c.ListAll(&v1::AuditService::Stub::ListAuditLog, &l)) return rc;
           Table t{{"AT", "SITE", "ADMIN", "ACTION", "OBJECT", "NAME", "OUTCOME", "SUMMARY"}, {}};
           for (const auto& e : l.entries()) {
             t.rows.push_back({e.at(), e.site_code(), e.admin(), e.action(), e.object_type(),
                               e.object_name(), e.outcome(), e.summary()});
           }
           Show(c.options(), l, l.next_page_token(), t);
           return kOk;
         };
       }}};
}

}  // namespace strata::ctl
