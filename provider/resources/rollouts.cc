// Phased rollouts (proto/strata/v1/admin/rollouts.proto): made here, at the
// top of the hierarchy, with their first phase's deployment; advanced by
// the site server (common/site/rollouts.cc).

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"
#include "provider/input.h"
#include "provider/listing.h"
#include "provider/rbac.h"
#include "provider/resource.h"
#include "provider/resources/applications.h"
#include "provider/resources/collections.h"
#include "strata/v1/admin/rollouts.grpc.pb.h"

namespace strata::provider {
namespace {

// Rollouts are deployments: the deployments resource's permissions.
constexpr char kRead[] = "deployment.read";
constexpr char kUpdate[] = "deployment.update";

constexpr int kMaxPhases = 10;

std::string RolloutSelect() {
  return absl::StrCat(
      "SELECT r.name, r.application, r.collections::text, r.success_percent, "
      "r.failure_percent, r.max_retries, r.retry_seconds, r.ignore_maintenance_windows, r.phase, "
      "r.state, r.reason, r.created_by, ",
      Ts("r.created_at"), ", ", Ts("r.updated_at"),
      ", a.scopes::text FROM deployment_rollouts r LEFT JOIN applications a ON a.name = "
      "r.application");
}

void FillRollout(const Result& r, size_t i, v1::Rollout* x) {
  x->set_name(r.GetString(i, 0));
  x->set_application(r.GetString(i, 1));
  for (auto& c : store::ParseTextArray(r.GetString(i, 2))) x->add_collections(std::move(c));
  x->set_success_percent(static_cast<int32_t>(r.GetInt(i, 3)));
  x->set_failure_percent(static_cast<int32_t>(r.GetInt(i, 4)));
  x->set_max_retries(static_cast<int32_t>(r.GetInt(i, 5)));
  x->set_retry_seconds(static_cast<int32_t>(r.GetInt(i, 6)));
  x->set_ignore_maintenance_windows(r.GetBool(i, 7));
  x->set_phase(static_cast<int32_t>(r.GetInt(i, 8)));
  x->set_state(r.GetString(i, 9));
  x->set_reason(r.GetString(i, 10));
  x->set_created_by(r.GetString(i, 11));
  x->set_created_at(r.GetString(i, 12));
  x->set_updated_at(r.GetString(i, 13));
}

// The rollout if it exists and the caller sees its application.
absl::Status ReadRollout(Call& call, const std::string& name, v1::Rollout* out) {
  ASSIGN_OR_RETURN(Result r,
                   call.tx.Exec(absl::StrCat(RolloutSelect(), " WHERE r.name = $1"), {name}));
  if (r.empty()) return absl::NotFoundError(absl::StrCat("no rollout \"", name, "\""));
  out->Clear();
  FillRollout(r, 0, out);
  google::protobuf::RepeatedPtrField<std::string> scopes;
  if (!r.IsNull(0, 14))
    for (auto& s : store::ParseTextArray(r.GetString(0, 14))) *scopes.Add() = std::move(s);
  return RequireScopeVisible(call.caller, "rollout", name, scopes);
}

class RolloutServiceImpl final : public v1::RolloutService::Service {
 public:
  explicit RolloutServiceImpl(CallCore& core) : core_(core) {}

  grpc::Status ListRollouts(grpc::ServerContext* ctx, const v1::ListRequest* req,
                            v1::RolloutList* out) override {
    return core_.Run(*ctx, __func__, "", [&](Call& call) -> absl::Status {
      RETURN_IF_ERROR(call.Require(kRead));
      out->Clear();
      ListSpec spec;
      spec.select = RolloutSelect();
      store::Params params;
      spec.where = VisibleByScope(call.caller, "a", params);
      spec.filter_columns = {"r.name", "r.application"};
      spec.order = {{"name", "r.name"}, {"updated", "r.updated_at"}};
      spec.default_order = "r.name";
      return ListPage(call.tx, *req, spec, params, out,
                      [&](const Result& r, size_t i) { FillRollout(r, i, out->add_rollouts()); });
    });
  }

  grpc::Status GetRollout(grpc::ServerContext* ctx, const v1::GetRequest* req,
                          v1::Rollout* out) override {
    return core_.Run(*ctx, __func__, "", [&](Call& call) -> absl::Status {
      RETURN_IF_ERROR(call.Require(kRead));
      return ReadRollout(call, req->name(), out);
    });
  }

  grpc::Status CreateRollout(grpc::ServerContext* ctx, const v1::Rollout* req,
                             v1::Rollout* out) override {
    return core_.Run(*ctx, __func__, "", [&](Call& call) -> absl::Status {
      RETURN_IF_ERROR(call.Require(kUpdate));
      Transaction& tx = call.tx;
      RETURN_IF_ERROR(CheckName("name", req->name()));
      if (req->name().size() > 200)
        return absl::InvalidArgumentError("name: at most 200 bytes (phases add to it)");
      ASSIGN_OR_RETURN(Result site, tx.Exec("SELECT coalesce(parent, '') FROM sites WHERE code = "
                                            "$1",
                                            {call.site()}));
      if (!site.empty() && !site.GetString(0, 0).empty())
        return absl::FailedPreconditionError(
            absl::StrCat("rollouts are made at the top of the hierarchy (", site.GetString(0, 0),
                         "), which sees every device's state; site ", call.site(), " is below it"));
      v1::Application app;
      RETURN_IF_ERROR(ReadApplication(call, req->application(), &app));
      if (req->collections_size() < 2 || req->collections_size() > kMaxPhases)
        return absl::InvalidArgumentError(
            absl::StrCat("collections: 2 to ", kMaxPhases, " phases, one collection each"));
      for (const auto& c : req->collections()) {
        v1::Collection coll;
        RETURN_IF_ERROR(ReadCollection(call, c, &coll));
        RETURN_IF_ERROR(RequireContained(tx, call.caller, c));
      }
      const int success = req->success_percent() == 0 ? 95 : req->success_percent();
      const int failure = req->has_failure_percent() ? req->failure_percent() : 5;
      const int retries = req->has_max_retries() ? req->max_retries() : 3;
      const int retry_s = req->retry_seconds() == 0 ? 600 : req->retry_seconds();
      if (success < 1 || success > 100)
        return absl::InvalidArgumentError("success_percent: 1 to 100");
      if (failure < 0 || failure > 100)
        return absl::InvalidArgumentError("failure_percent: 0 to 100");
      if (retries < 0 || retries > 100) return absl::InvalidArgumentError("max_retries: 0 to 100");
      if (retry_s < 10 || retry_s > 86400)
        return absl::InvalidArgumentError("retry_seconds: 10 to 86400");
      const std::string first = absl::StrCat(req->name(), " (phase 1)");
      ASSIGN_OR_RETURN(Result exists,
                       tx.Exec("SELECT 1 FROM deployment_rollouts WHERE name = $1 UNION ALL "
                               "SELECT 1 FROM app_deployments WHERE name = $2",
                               {req->name(), first}));
      if (!exists.empty())
        return absl::AlreadyExistsError(
            absl::StrCat("rollout \"", req->name(), "\" already exists"));
      store::Params params{
          req->name(),
          req->application(),
          store::TextArrayLiteral({req->collections().begin(), req->collections().end()}),
          absl::StrCat(success),
          absl::StrCat(failure),
          absl::StrCat(retries),
          absl::StrCat(retry_s),
          req->ignore_maintenance_windows() ? "true" : "false",
          call.caller.name};
      RETURN_IF_ERROR(
          tx.Exec("INSERT INTO deployment_rollouts (name, application, collections, "
                  "success_percent, failure_percent, max_retries, retry_seconds, "
                  "ignore_maintenance_windows, created_by, reason) VALUES ($1, $2, $3::text[], "
                  "$4, $5, $6, $7, $8, $9, 'phase 1 started')",
                  params)
              .status());
      RETURN_IF_ERROR(
          tx.Exec("INSERT INTO app_deployments (name, application, collection, action, purpose, "
                  "available_at, deadline, max_retries, retry_seconds, ignore_maintenance_windows, "
                  "created_by, rollout) VALUES ($1, $2, $3, 'install', 'required', now(), now(), "
                  "$4, $5, $6, $7, $8)",
                  {first, req->application(), req->collections(0), absl::StrCat(retries),
                   absl::StrCat(retry_s), req->ignore_maintenance_windows() ? "true" : "false",
                   call.caller.name, req->name()})
              .status());
      RETURN_IF_ERROR(call.Audit(
          "create", "rollout", req->name(),
          absl::StrCat(req->application(), " to [", absl::StrJoin(req->collections(), ", "),
                       "] success ", success, " % failure limit ", failure, " %")));
      return ReadRollout(call, req->name(), out);
    });
  }

  grpc::Status DeleteRollout(grpc::ServerContext* ctx, const v1::GetRequest* req,
                             v1::Deleted* out) override {
    return core_.Run(*ctx, __func__, "", [&](Call& call) -> absl::Status {
      RETURN_IF_ERROR(call.Require(kUpdate));
      v1::Rollout r;
      RETURN_IF_ERROR(ReadRollout(call, req->name(), &r));
      // Its phases are deployments to these collections: the caller's to change.
      for (const auto& c : r.collections()) {
        ASSIGN_OR_RETURN(Result exists,
                         call.tx.Exec("SELECT 1 FROM collections WHERE name = $1", {c}));
        if (!exists.empty()) RETURN_IF_ERROR(RequireContained(call.tx, call.caller, c));
      }
      ASSIGN_OR_RETURN(Result phases, call.tx.Exec("DELETE FROM app_deployments WHERE rollout = "
                                                   "$1",
                                                   {req->name()}));
      RETURN_IF_ERROR(
          call.tx.Exec("DELETE FROM deployment_rollouts WHERE name = $1", {req->name()}).status());
      RETURN_IF_ERROR(call.Audit("delete", "rollout", req->name(),
                                 absl::StrCat(phases.affected_rows(), " phase deployments, ",
                                              r.state(), " in phase ", r.phase())));
      out->set_name(req->name());
      return absl::OkStatus();
    });
  }

 private:
  CallCore& core_;
};

}  // namespace

Resource RolloutsResource() {
  return {"rollouts", {}, [](const ResourceContext& c) {
            return std::make_unique<RolloutServiceImpl>(*c.core);
          }};
}

}  // namespace strata::provider
