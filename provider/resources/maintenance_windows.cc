// Maintenance windows (proto/strata/v1/admin/maintenance_windows.proto):
// when required installs may run on a collection's members. Resolved to
// devices at their primary as deployments are; the agent keeps to them.

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/deploy/windows.h"
#include "provider/input.h"
#include "provider/listing.h"
#include "provider/rbac.h"
#include "provider/resource.h"
#include "provider/resources/collections.h"
#include "strata/v1/admin/maintenance_windows.grpc.pb.h"

namespace strata::provider {
namespace {

constexpr Permission kRead{"window.read", "List maintenance windows"};
constexpr Permission kUpdate{"window.update", "Create and delete maintenance windows"};

std::string WindowSelect() {
  return absl::StrCat(
      "SELECT w.name, w.collection, w.start, w.utc, w.duration_minutes, w.recurrence, "
      "w.created_by, ",
      Ts("w.updated_at"), " FROM maintenance_windows w");
}

void FillWindow(const Result& r, size_t i, v1::MaintenanceWindow* w) {
  w->set_name(r.GetString(i, 0));
  w->set_collection(r.GetString(i, 1));
  w->set_start(r.GetString(i, 2));
  w->set_utc(r.GetBool(i, 3));
  w->set_duration_minutes(static_cast<int32_t>(r.GetInt(i, 4)));
  w->set_recurrence(r.GetString(i, 5));
  w->set_created_by(r.GetString(i, 6));
  w->set_updated_at(r.GetString(i, 7));
}

class MaintenanceWindowServiceImpl final : public v1::MaintenanceWindowService::Service {
 public:
  explicit MaintenanceWindowServiceImpl(CallCore& core) : core_(core) {}

  grpc::Status ListMaintenanceWindows(grpc::ServerContext* ctx, const v1::ListRequest* req,
                                      v1::MaintenanceWindowList* out) override {
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) {
      out->Clear();
      ListSpec spec;
      spec.select = WindowSelect();
      store::Params params;
      // The windows of collections the caller sees.
      spec.where = absl::StrCat(
          "EXISTS (SELECT 1 FROM collections c WHERE c.name = w.collection "
          "AND ",
          VisibleByScope(call.caller, "c", params), ")");
      spec.filter_columns = {"w.name", "w.collection"};
      spec.order = {{"name", "w.name"}, {"collection", "w.collection"}};
      spec.default_order = "w.name";
      return ListPage(call.tx, *req, spec, params, out,
                      [&](const Result& r, size_t i) { FillWindow(r, i, out->add_windows()); });
    });
  }

  grpc::Status CreateMaintenanceWindow(grpc::ServerContext* ctx, const v1::MaintenanceWindow* req,
                                       v1::MaintenanceWindow* out) override {
    return core_.Run(*ctx, __func__, kUpdate.name, [&](Call& call) -> absl::Status {
      RETURN_IF_ERROR(CheckName("name", req->name()));
      v1::MaintenanceWindow w = *req;
      if (w.recurrence().empty()) w.set_recurrence("none");
      RETURN_IF_ERROR(deploy::CheckWindow(w));
      v1::Collection coll;
      RETURN_IF_ERROR(ReadCollection(call, w.collection(), &coll));
      RETURN_IF_ERROR(RequireContained(call.tx, call.caller, w.collection()));
      ASSIGN_OR_RETURN(Result exists, call.tx.Exec("SELECT 1 FROM maintenance_windows WHERE "
                                                   "name = $1",
                                                   {w.name()}));
      if (!exists.empty())
        return absl::AlreadyExistsError(
            absl::StrCat("maintenance window \"", w.name(), "\" already exists"));
      RETURN_IF_ERROR(
          call.tx
              .Exec("INSERT INTO maintenance_windows (name, collection, start, utc, "
                    "duration_minutes, recurrence, created_by) VALUES ($1, $2, $3, "
                    "$4, $5, $6, $7)",
                    {w.name(), w.collection(), w.start(), w.utc() ? "true" : "false",
                     absl::StrCat(w.duration_minutes()), w.recurrence(), call.caller.name})
              .status());
      RETURN_IF_ERROR(call.Audit("create", "maintenance window", w.name(),
                                 absl::StrCat("collection ", w.collection(), " from ", w.start(),
                                              w.utc() ? " UTC" : " local", " for ",
                                              w.duration_minutes(), " min, ", w.recurrence())));
      ASSIGN_OR_RETURN(
          Result r, call.tx.Exec(absl::StrCat(WindowSelect(), " WHERE w.name = $1"), {w.name()}));
      FillWindow(r, 0, out);
      return absl::OkStatus();
    });
  }

  grpc::Status DeleteMaintenanceWindow(grpc::ServerContext* ctx, const v1::GetRequest* req,
                                       v1::Deleted* out) override {
    return core_.Run(*ctx, __func__, kUpdate.name, [&](Call& call) -> absl::Status {
      ASSIGN_OR_RETURN(Result r, call.tx.Exec("DELETE FROM maintenance_windows WHERE name = $1 "
                                              "RETURNING collection",
                                              {req->name()}));
      if (r.empty())
        return absl::NotFoundError(absl::StrCat("no maintenance window \"", req->name(), "\""));
      ASSIGN_OR_RETURN(Result coll, call.tx.Exec("SELECT 1 FROM collections WHERE name = $1",
                                                 {r.GetString(0, 0)}));
      if (!coll.empty()) RETURN_IF_ERROR(RequireContained(call.tx, call.caller, r.GetString(0, 0)));
      RETURN_IF_ERROR(call.Audit("delete", "maintenance window", req->name(),
                                 absl::StrCat("collection ", r.GetString(0, 0))));
      out->set_name(req->name());
      return absl::OkStatus();
    });
  }

 private:
  CallCore& core_;
};

}  // namespace

Resource MaintenanceWindowsResource() {
  return {"maintenance windows", {kRead, kUpdate}, [](const ResourceContext& c) {
            return std::make_unique<MaintenanceWindowServiceImpl>(*c.core);
          }};
}

}  // namespace strata::provider
