// stratactl get approvals, approve device X, block device X, unblock device X

#include <memory>

#include "absl/strings/str_cat.h"
#include "provider/stratactl/command.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/client_approval.grpc.pb.h"

namespace strata::ctl {
namespace {

using Method = grpc::Status (v1::ClientApprovalService::Stub::*)(grpc::ClientContext*,
                                                                 const v1::GetRequest&,
                                                                 v1::ClientApproval*);

Command Decide(const std::string& verb, Method method, const std::string& help,
               const std::string& done) {
  return {verb,
          "device",
          {"client"},
          help,
          OnName(method,
                 std::function<void(const Options&, const v1::ClientApproval&)>(
                     [done](const Options& o, const v1::ClientApproval& out) {
                       PrintDone(o,
                                 absl::StrCat("device \"", out.name(), "\" (", out.device_id(),
                                              ") ", done, "; the decision reaches every site"),
                                 out);
                     }),
                 "The device's name or id"),
          "get devices --all"};
}

}  // namespace

std::vector<Command> ApprovalCommands() {
  return {
      {"get",
       "approvals",
       {"approval"},
       "Clients waiting for approval, and blocked clients",
       [](CLI::App*) -> Action {
         return [](Client& c) {
           v1::ClientApprovalList l;
           if (int rc = c.ListAll(&v1::ClientApprovalService::Stub::ListClientApprovals, &l)) {
             return rc;
           }
           Table t{{"NAME", "STATE", "SITE", "REGISTERED_VIA", "REGISTERED", "DECIDED_BY", "ID"},
                   {}};
           for (const auto& a : l.clients()) {
             t.rows.push_back({a.name(), a.state(), a.site_code(), a.registered_via(),
                               a.registered_at(), a.decided_by(), a.device_id()});
           }
           Show(c.options(), l, l.next_page_token(), t);
           return kOk;
         };
       }},
      Decide("approve", &v1::ClientApprovalService::Stub::ApproveClient,
             "Approve a client waiting for approval (approval mode manual)", "approved"),
      Decide("block", &v1::ClientApprovalService::Stub::BlockClient,
             "Block a client: refused at registration and at its management point", "blocked"),
      Decide("unblock", &v1::ClientApprovalService::Stub::UnblockClient, "Unblock a blocked client",
             "unblocked"),
  };
}

}  // namespace strata::ctl
