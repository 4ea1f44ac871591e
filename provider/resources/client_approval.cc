// Client approval and blocking (proto/strata/v1/admin/client_approval.proto).
// A decision is global data (client_decisions): it reaches the site where
// the client registers, which honours it at registration and tells its
// management points (common/site/client_service.cc).

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "provider/listing.h"
#include "provider/rbac.h"
#include "provider/resource.h"
#include "provider/resources/devices.h"
#include "strata/v1/admin/client_approval.grpc.pb.h"

namespace strata::provider {
namespace {

constexpr Permission kApprove{"device.approve", "Approve, block and unblock clients"};

std::string ApprovalSelect() {
  return absl::StrCat("SELECT d.id::text, d.name, d.site_code, coalesce(d.registered_via, ''), ",
                      ApprovalState("d"), " AS state, ", Ts("d.discovered_at"),
                      ", coalesce(cd.decided_by, ''), ", Ts("cd.decided_at"),
                      " FROM devices d LEFT JOIN client_decisions cd ON cd.device_id = d.id");
}

void FillApproval(const Result& r, size_t i, v1::ClientApproval* a) {
  a->set_device_id(r.GetString(i, 0));
  a->set_name(r.GetString(i, 1));
  a->set_site_code(r.GetString(i, 2));
  a->set_registered_via(r.GetString(i, 3));
  a->set_state(r.GetString(i, 4));
  a->set_registered_at(r.GetString(i, 5));
  a->set_decided_by(r.GetString(i, 6));
  a->set_decided_at(r.GetString(i, 7));
}

absl::Status ReadApproval(Transaction& tx, const std::string& id, v1::ClientApproval* out) {
  ASSIGN_OR_RETURN(Result r,
                   tx.Exec(absl::StrCat(ApprovalSelect(), " WHERE d.id = $1::uuid"), {id}));
  if (r.empty()) return absl::NotFoundError(absl::StrCat("no device ", id));
  out->Clear();
  FillApproval(r, 0, out);
  return absl::OkStatus();
}

class ClientApprovalServiceImpl final : public v1::ClientApprovalService::Service {
 public:
  explicit ClientApprovalServiceImpl(CallCore& core) : core_(core) {}

  grpc::Status ListClientApprovals(grpc::ServerContext* ctx, const v1::ListRequest* req,
                                   v1::ClientApprovalList* out) override {
    return core_.Run(*ctx, __func__, "device.read", [&](Call& call) {
      out->Clear();
      store::Params params;
      ListSpec spec;
      spec.select = ApprovalSelect();
      spec.where = absl::StrCat(ApprovalState("d"), " <> 'approved' AND ",
                                VisibleDevice(call.caller, "d", params));
      spec.filter_columns = {"d.name"};
      spec.order = {{"name", "d.name"}, {"registered", "d.discovered_at"}, {"site", "d.site_code"}};
      spec.default_order = "d.discovered_at, d.id";
      return ListPage(call.tx, *req, spec, params, out,
                      [&](const Result& r, size_t i) { FillApproval(r, i, out->add_clients()); });
    });
  }

  grpc::Status ApproveClient(grpc::ServerContext* ctx, const v1::GetRequest* req,
                             v1::ClientApproval* out) override {
    return Decide(*ctx, __func__, req->name(), "approve", out);
  }

  grpc::Status BlockClient(grpc::ServerContext* ctx, const v1::GetRequest* req,
                           v1::ClientApproval* out) override {
    return Decide(*ctx, __func__, req->name(), "block", out);
  }

  grpc::Status UnblockClient(grpc::ServerContext* ctx, const v1::GetRequest* req,
                             v1::ClientApproval* out) override {
    return Decide(*ctx, __func__, req->name(), "unblock", out);
  }

 private:
  // approve: pending -> approved; block: anything -> blocked; unblock:
  // blocked -> approved. Anything else is refused as already so.
  grpc::Status Decide(const grpc::ServerContext& ctx, const char* method, const std::string& name,
                      const std::string& action, v1::ClientApproval* out) {
    return core_.Run(ctx, method, kApprove.name, [&](Call& call) -> absl::Status {
      ASSIGN_OR_RETURN(std::string id, ResolveDevice(call.tx, call.caller, name));
      v1::ClientApproval before;
      RETURN_IF_ERROR(ReadApproval(call.tx, id, &before));
      const std::string& state = before.state();
      std::string decision;
      if (action == "approve") {
        if (state != "pending") {
          return absl::FailedPreconditionError(absl::StrCat(
              "device \"", name, "\" is ", state,
              state == "blocked" ? " (unblock it instead)" : ", not waiting for approval"));
        }
        decision = "approved";
      } else if (action == "block") {
        if (state == "blocked") {
          return absl::FailedPreconditionError(
              absl::StrCat("device \"", name, "\" is already blocked"));
        }
        decision = "blocked";
      } else {
        if (state != "blocked") {
          return absl::FailedPreconditionError(
              absl::StrCat("device \"", name, "\" is not blocked (it is ", state, ")"));
        }
        decision = "approved";
      }
      RETURN_IF_ERROR(call.tx
                          .Exec("INSERT INTO client_decisions (device_id, decision, decided_by) "
                                "VALUES ($1::uuid, $2, $3) ON CONFLICT (device_id) DO UPDATE SET "
                                "decision = EXCLUDED.decision, decided_by = "
                                "EXCLUDED.decided_by, decided_at = now()",
                                {id, decision, call.caller.name})
                          .status());
      RETURN_IF_ERROR(call.Audit(action, "device", before.name(),
                                 absl::StrCat(id, ": ", state, " -> ", decision)));
      return ReadApproval(call.tx, id, out);
    });
  }

  CallCore& core_;
};

}  // namespace

Resource ClientApprovalResource() {
  return {"client approval", {kApprove}, [](const ResourceContext& c) {
            return std::make_unique<ClientApprovalServiceImpl>(*c.core);
          }};
}

}  // namespace strata::provider
