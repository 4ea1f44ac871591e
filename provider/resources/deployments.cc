// Deployments of applications to collections
// (proto/strata/v1/admin/deployments.proto) and their status: what each
// targeted device reported (deployment_states, site data up to the CAS)
// and the counts every site keeps of it as the states arrive
// (deployment_state_counts, migration 0013).

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/base/status.h"
#include "provider/input.h"
#include "provider/listing.h"
#include "provider/rbac.h"
#include "provider/resource.h"
#include "provider/resources/applications.h"
#include "provider/resources/collections.h"
#include "strata/v1/admin/deployments.grpc.pb.h"

namespace strata::provider {
namespace {

constexpr Permission kRead{"deployment.read", "List deployments and their status"};
constexpr Permission kUpdate{"deployment.update", "Deploy applications to collections"};

constexpr int kDefaultRetries = 3;
constexpr int kDefaultRetrySeconds = 600;
constexpr int kDefaultStatusDevices = 1000;
constexpr int kMaxStatusDevices = 20000;

std::string DeploymentSelect() {
  return absl::StrCat(
      "SELECT d.name, d.application, d.collection, d.action, d.purpose, ", Ts("d.available_at"),
      ", ", Ts("d.deadline"),
      ", d.max_retries, d.retry_seconds, d.rerun_interrupted, a.scopes::text, d.created_by, ",
      Ts("d.created_at"),
      ", (SELECT count(*) FROM collection_members m WHERE m.collection = d.collection), "
      "d.ignore_maintenance_windows, d.grace_minutes FROM "
      "app_deployments d LEFT JOIN applications a ON a.name = d.application");
}

void FillDeployment(const Result& r, size_t i, v1::Deployment* d) {
  d->set_name(r.GetString(i, 0));
  d->set_application(r.GetString(i, 1));
  d->set_collection(r.GetString(i, 2));
  d->set_action(r.GetString(i, 3));
  d->set_purpose(r.GetString(i, 4));
  d->set_available_at(r.GetString(i, 5));
  d->set_deadline(r.GetString(i, 6));
  d->set_max_retries(static_cast<int32_t>(r.GetInt(i, 7)));
  d->set_retry_seconds(static_cast<int32_t>(r.GetInt(i, 8)));
  d->set_rerun_interrupted(r.GetBool(i, 9));
  if (!r.IsNull(i, 10))
    for (auto& s : store::ParseTextArray(r.GetString(i, 10))) d->add_scopes(std::move(s));
  d->set_created_by(r.GetString(i, 11));
  d->set_created_at(r.GetString(i, 12));
  d->set_targeted(r.GetInt(i, 13));
  d->set_ignore_maintenance_windows(r.GetBool(i, 14));
  d->set_grace_minutes(static_cast<int32_t>(r.GetInt(i, 15)));
}

// RFC 3339 ("2026-12-01T08:00:00Z", "2026-12-01T09:00:00+01:00") or unix
// seconds; `fallback` when empty.
absl::StatusOr<absl::Time> ParseWhen(const std::string& what, const std::string& text,
                                     absl::Time fallback) {
  if (text.empty()) return fallback;
  int64_t unix = 0;
  if (absl::SimpleAtoi(text, &unix) && unix >= 0 && unix < (int64_t{1} << 40))
    return absl::FromUnixSeconds(unix);
  absl::Time t;
  std::string err;
  if (absl::ParseTime(absl::RFC3339_full, text, &t, &err)) return t;
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": \"", text,
                   "\" is not a time (RFC 3339, e.g. 2026-12-01T08:00:00Z, or unix seconds)"));
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

// The deployment if it exists and the caller sees its application.
absl::Status ReadDeployment(Call& call, const std::string& name, v1::Deployment* out) {
  ASSIGN_OR_RETURN(Result r,
                   call.tx.Exec(absl::StrCat(DeploymentSelect(), " WHERE d.name = $1"), {name}));
  if (r.empty()) return absl::NotFoundError(absl::StrCat("no deployment \"", name, "\""));
  out->Clear();
  FillDeployment(r, 0, out);
  return RequireScopeVisible(call.caller, "deployment", name, out->scopes());
}

class DeploymentServiceImpl final : public v1::DeploymentService::Service {
 public:
  explicit DeploymentServiceImpl(CallCore& core) : core_(core) {}

  grpc::Status ListDeployments(grpc::ServerContext* ctx, const v1::ListRequest* req,
                               v1::DeploymentList* out) override {
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) {
      out->Clear();
      ListSpec spec;
      spec.select = DeploymentSelect();
      store::Params params;
      spec.where = VisibleByScope(call.caller, "a", params);
      spec.filter_columns = {"d.name", "d.application", "d.collection"};
      spec.order = {{"name", "d.name"}, {"created", "d.created_at"}};
      spec.default_order = "d.name";
      return ListPage(call.tx, *req, spec, params, out, [&](const Result& r, size_t i) {
        FillDeployment(r, i, out->add_deployments());
      });
    });
  }

  grpc::Status GetDeployment(grpc::ServerContext* ctx, const v1::GetRequest* req,
                             v1::Deployment* out) override {
    return core_.Run(*ctx, __func__, kRead.name,
                     [&](Call& call) { return ReadDeployment(call, req->name(), out); });
  }

  grpc::Status CreateDeployment(grpc::ServerContext* ctx, const v1::Deployment* req,
                                v1::Deployment* out) override {
    return core_.Run(*ctx, __func__, kUpdate.name, [&](Call& call) -> absl::Status {
      Transaction& tx = call.tx;
      v1::Application app;
      RETURN_IF_ERROR(ReadApplication(call, req->application(), &app));
      v1::Collection coll;
      RETURN_IF_ERROR(ReadCollection(call, req->collection(), &coll));
      RETURN_IF_ERROR(RequireContained(tx, call.caller, req->collection()));
      const std::string name = req->name().empty()
                                   ? absl::StrCat(req->application(), " to ", req->collection())
                                   : req->name();
      RETURN_IF_ERROR(CheckName("name", name));
      const std::string action = req->action().empty() ? "install" : req->action();
      if (action != "install" && action != "uninstall")
        return absl::InvalidArgumentError(
            absl::StrCat("action \"", action, "\": install or uninstall"));
      if (action == "uninstall") {
        for (const auto& dt : app.deployment_types())
          if (dt.uninstall_command().empty())
            return absl::InvalidArgumentError(
                absl::StrCat("application \"", app.name(), "\" deployment type \"", dt.name(),
                             "\" has no uninstall command: it cannot be deployed to uninstall"));
      }
      const std::string purpose = req->purpose().empty() ? "required" : req->purpose();
      if (purpose != "required" && purpose != "available")
        return absl::InvalidArgumentError(
            absl::StrCat("purpose \"", purpose, "\": required or available"));
      ASSIGN_OR_RETURN(absl::Time available,
                       ParseWhen("available_at", req->available_at(), absl::Now()));
      ASSIGN_OR_RETURN(absl::Time deadline, ParseWhen("deadline", req->deadline(), available));
      if (deadline < available)
        return absl::InvalidArgumentError(absl::StrCat(
            "deadline ", Rfc3339(deadline), " is before available_at ", Rfc3339(available)));
      if (req->grace_minutes() < 0 || req->grace_minutes() > 10080)
        return absl::InvalidArgumentError(
            absl::StrCat("grace_minutes: 0 to 10080 (7 days), not ", req->grace_minutes()));
      if (purpose == "available" && !req->deadline().empty())
        return absl::InvalidArgumentError("a deadline is for required deployments only");
      const int retries = req->has_max_retries() ? req->max_retries() : kDefaultRetries;
      if (retries < 0 || retries > 100)
        return absl::InvalidArgumentError(
            absl::StrCat("max_retries: 0 to 100 (default ", kDefaultRetries, "), not ", retries));
      const int retry_s = req->retry_seconds() == 0 ? kDefaultRetrySeconds : req->retry_seconds();
      if (retry_s < 10 || retry_s > 86400)
        return absl::InvalidArgumentError(
            absl::StrCat("retry_seconds: 10 to 86400, not ", retry_s));
      ASSIGN_OR_RETURN(Result exists,
                       tx.Exec("SELECT 1 FROM app_deployments WHERE name = $1", {name}));
      if (!exists.empty())
        return absl::AlreadyExistsError(absl::StrCat("deployment \"", name, "\" already exists"));
      RETURN_IF_ERROR(
          tx.Exec("INSERT INTO app_deployments (name, application, collection, action, purpose, "
                  "available_at, deadline, max_retries, retry_seconds, rerun_interrupted, "
                  "created_by, ignore_maintenance_windows, grace_minutes) VALUES ($1, $2, $3, $4, "
                  "$5, $6::timestamptz, $7::timestamptz, $8, $9, $10, $11, $12, $13)",
                  {name, req->application(), req->collection(), action, purpose, Rfc3339(available),
                   Rfc3339(deadline), absl::StrCat(retries), absl::StrCat(retry_s),
                   req->rerun_interrupted() ? "true" : "false", call.caller.name,
                   req->ignore_maintenance_windows() ? "true" : "false",
                   absl::StrCat(req->grace_minutes())})
              .status());
      RETURN_IF_ERROR(call.Audit(
          "create", "deployment", name,
          absl::StrCat(action, " ", req->application(), " to collection ", req->collection(), " (",
                       purpose, ", deadline ", Rfc3339(deadline), ")")));
      return ReadDeployment(call, name, out);
    });
  }

  grpc::Status DeleteDeployment(grpc::ServerContext* ctx, const v1::GetRequest* req,
                                v1::Deleted* out) override {
    return core_.Run(*ctx, __func__, kUpdate.name, [&](Call& call) -> absl::Status {
      v1::Deployment d;
      RETURN_IF_ERROR(ReadDeployment(call, req->name(), &d));
      ASSIGN_OR_RETURN(Result coll,
                       call.tx.Exec("SELECT 1 FROM collections WHERE name = $1", {d.collection()}));
      if (!coll.empty()) RETURN_IF_ERROR(RequireContained(call.tx, call.caller, d.collection()));
      RETURN_IF_ERROR(
          call.tx.Exec("DELETE FROM app_deployments WHERE name = $1", {req->name()}).status());
      RETURN_IF_ERROR(call.Audit(
          "delete", "deployment", req->name(),
          absl::StrCat(d.action(), " ", d.application(), " to collection ", d.collection())));
      out->set_name(req->name());
      return absl::OkStatus();
    });
  }

  grpc::Status GetDeploymentStatus(grpc::ServerContext* ctx, const v1::DeploymentStatusRequest* req,
                                   v1::DeploymentStatus* out) override {
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) -> absl::Status {
      out->Clear();
      v1::Deployment d;
      RETURN_IF_ERROR(ReadDeployment(call, req->name(), &d));
      const int max = req->max_devices() == 0 ? kDefaultStatusDevices : req->max_devices();
      if (max < 0 || max > kMaxStatusDevices)
        return absl::InvalidArgumentError(
            absl::StrCat("max_devices: 1 to ", kMaxStatusDevices, ", not ", max));
      out->set_name(d.name());
      out->set_application(d.application());
      out->set_collection(d.collection());
      out->set_targeted(d.targeted());
      Result counts;
      if (call.caller.SeesAllDevices()) {
        // The counts every site keeps as states arrive.
        ASSIGN_OR_RETURN(counts, call.tx.Exec("SELECT site_code, state, devices FROM "
                                              "deployment_state_counts WHERE deployment = $1 "
                                              "ORDER BY 1, 2",
                                              {d.name()}));
      } else {
        // An admin limited to some collections counts only their devices.
        store::Params p{d.name()};
        const std::string visible = VisibleDevice(call.caller, "v", p);
        ASSIGN_OR_RETURN(counts,
                         call.tx.Exec(absl::StrCat("SELECT s.site_code, s.state, count(*) FROM "
                                                   "deployment_states s JOIN devices v ON v.id = "
                                                   "s.device_id WHERE s.deployment = $1 AND ",
                                                   visible, " GROUP BY 1, 2 ORDER BY 1, 2"),
                                      p));
        store::Params q{d.collection()};
        const std::string members = VisibleDevice(call.caller, "v", q);
        ASSIGN_OR_RETURN(Result targeted,
                         call.tx.Exec(absl::StrCat("SELECT count(*) FROM collection_members m "
                                                   "JOIN devices v ON v.id = m.device_id WHERE "
                                                   "m.collection = $1 AND ",
                                                   members),
                                      q));
        out->set_targeted(targeted.GetInt(0, 0));
      }
      std::map<std::string, int64_t> total;
      int64_t reported = 0;
      for (size_t i = 0; i < counts.size(); ++i) {
        if (out->sites_size() == 0 || out->sites().rbegin()->site_code() != counts.GetString(i, 0))
          out->add_sites()->set_site_code(counts.GetString(i, 0));
        auto* c = out->mutable_sites()->rbegin()->add_counts();
        c->set_state(counts.GetString(i, 1));
        c->set_devices(counts.GetInt(i, 2));
        total[c->state()] += c->devices();
        reported += c->devices();
      }
      // Members that reported nothing yet (Configuration Manager's "unknown").
      if (d.targeted() > reported) total["unknown"] += d.targeted() - reported;
      for (const auto& [state, n] : total) {
        auto* c = out->add_counts();
        c->set_state(state);
        c->set_devices(n);
      }
      store::Params params{d.name()};
      std::string where =
          absl::StrCat("s.deployment = $1 AND ", VisibleDevice(call.caller, "v", params));
      if (!req->state().empty()) {
        params.emplace_back(req->state());
        absl::StrAppend(&where, " AND s.state = $", params.size());
      }
      params.emplace_back(absl::StrCat(max + 1));
      ASSIGN_OR_RETURN(
          Result rows,
          call.tx.Exec(
              absl::StrCat("SELECT s.device_id::text, v.name, s.site_code, s.state, "
                           "s.exit_code, s.detail, s.bytes_done, s.bytes_total, "
                           "s.attempt, ",
                           Ts("s.reported_at"),
                           " FROM deployment_states s JOIN devices v ON v.id = "
                           "s.device_id WHERE ",
                           where, " ORDER BY s.state, v.name, s.device_id LIMIT $", params.size()),
              params));
      for (size_t i = 0; i < rows.size(); ++i) {
        if (static_cast<int>(i) == max) {
          out->set_devices_truncated(true);
          break;
        }
        auto* x = out->add_devices();
        x->set_device_id(rows.GetString(i, 0));
        x->set_device_name(rows.GetString(i, 1));
        x->set_site_code(rows.GetString(i, 2));
        x->set_state(rows.GetString(i, 3));
        x->set_exit_code(static_cast<int32_t>(rows.GetInt(i, 4)));
        x->set_detail(rows.GetString(i, 5));
        x->set_bytes_done(rows.GetInt(i, 6));
        x->set_bytes_total(rows.GetInt(i, 7));
        x->set_attempt(static_cast<int32_t>(rows.GetInt(i, 8)));
        x->set_updated_at(rows.GetString(i, 9));
      }
      return absl::OkStatus();
    });
  }

 private:
  CallCore& core_;
};

}  // namespace

Resource DeploymentsResource() {
  return {"deployments", {kRead, kUpdate}, [](const ResourceContext& c) {
            return std::make_unique<DeploymentServiceImpl>(*c.core);
          }};
}

}  // namespace strata::provider
