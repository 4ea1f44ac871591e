// The audit log (proto/strata/v1/admin/audit.proto). Entries are written by
// the call core (provider/core.h); this resource reads them.

#include "provider/listing.h"
#include "provider/resource.h"
#include "strata/v1/admin/audit.grpc.pb.h"

namespace strata::provider {
namespace {

constexpr Permission kRead{"audit.read", "Read the audit log"};

class AuditServiceImpl final : public v1::AuditService::Service {
 public:
  explicit AuditServiceImpl(CallCore& core) : core_(core) {}

  grpc::Status ListAuditLog(grpc::ServerContext* ctx, const v1::ListRequest* req,
                            v1::AuditList* out) override {
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) {
      out->Clear();
      ListSpec spec;
      spec.select = absl::StrCat("SELECT ", Ts("at"),
                                 ", site_code, admin, action, object_type, object_name, "
                                 "outcome, summary FROM audit_log");
      spec.filter_columns = {"admin", "object_name", "action", "outcome"};
      spec.order = {{"at", "at"}, {"admin", "admin"}, {"site", "site_code"}};
      spec.default_order = "at DESC, id";
      return ListPage(call.tx, *req, spec, {}, out, [&](const Result& r, size_t i) {
        auto* e = out->add_entries();
        e->set_at(r.GetString(i, 0));
        e->set_site_code(r.GetString(i, 1));
        e->set_admin(r.GetString(i, 2));
        e->set_action(r.GetString(i, 3));
        e->set_object_type(r.GetString(i, 4));
        e->set_object_name(r.GetString(i, 5));
        e->set_outcome(r.GetString(i, 6));
        e->set_summary(r.GetString(i, 7));
      });
    });
  }

 private:
  CallCore& core_;
};

}  // namespace

Resource AuditResource() {
  return {"audit", {kRead}, [](const ResourceContext& c) {
            return std::make_unique<AuditServiceImpl>(*c.core);
          }};
}

}  // namespace strata::provider
