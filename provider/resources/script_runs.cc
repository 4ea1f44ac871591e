// Runs of scripts (proto/strata/v1/admin/script_runs.proto): an approved
// script run on a collection's members or one device. A run is global data
// carrying its own copy of the approved body; the devices it reaches are
// resolved at their primaries (script_run_assignments), and each device's
// result is site data up to the CAS (script_results). A device that has
// not reported by the run's expiry counts as expired. Every run and every
// refused one is audited with the body's hash and the target.

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"
#include "common/deploy/script.h"
#include "common/inventory/report_check.h"
#include "provider/input.h"
#include "provider/listing.h"
#include "provider/rbac.h"
#include "provider/resource.h"
#include "provider/resources/collections.h"
#include "provider/resources/scripts.h"
#include "strata/v1/admin/script_runs.grpc.pb.h"

namespace strata::provider {
namespace {

constexpr Permission kRun{"script.run", "Run approved scripts on devices"};
constexpr char kRead[] = "script.read";  // resources/scripts.cc

constexpr int64_t kDefaultExpirySeconds = 3600;
constexpr int64_t kMaxExpirySeconds = 7 * 86400;
constexpr int kDefaultStatusDevices = 1000;
constexpr int kMaxStatusDevices = 20000;
constexpr const char* kStates[] = {"pending", "running", "succeeded", "failed", "expired"};

std::string RunSelect() {
  return absl::StrCat(
      "SELECT x.id::text, x.script, x.sha256, x.collection, coalesce(x.device_id::text, ''), "
      "coalesce((SELECT v.name FROM devices v WHERE v.id = x.device_id), ''), x.arguments, "
      "x.created_by, ",
      Ts("x.created_at"), ", ", Ts("x.expires_at"),
      ", (SELECT count(*) FROM collection_members m WHERE m.collection = x.collection AND "
      "(x.device_id IS NULL OR m.device_id = x.device_id)) FROM script_runs x");
}

absl::Status FillRun(const Result& r, size_t i, v1::ScriptRun* x) {
  x->set_id(r.GetString(i, 0));
  x->set_script(r.GetString(i, 1));
  x->set_sha256(r.GetString(i, 2));
  x->set_collection(r.GetString(i, 3));
  x->set_device_id(r.GetString(i, 4));
  x->set_device_name(r.GetString(i, 5));
  RETURN_IF_ERROR(deploy::ParseArguments(r.GetString(i, 6), x->mutable_arguments()));
  x->set_created_by(r.GetString(i, 7));
  x->set_created_at(r.GetString(i, 8));
  x->set_expires_at(r.GetString(i, 9));
  x->set_targeted(r.GetInt(i, 10));
  return absl::OkStatus();
}

absl::Status ReadRun(Call& call, const std::string& id, v1::ScriptRun* out) {
  if (!inventory::IsUuid(id))
    return absl::InvalidArgumentError(absl::StrCat("\"", id, "\" is not a run id (a UUID)"));
  ASSIGN_OR_RETURN(Result r,
                   call.tx.Exec(absl::StrCat(RunSelect(), " WHERE x.id = $1::uuid"), {id}));
  if (r.empty()) return absl::NotFoundError(absl::StrCat("no script run ", id));
  out->Clear();
  return FillRun(r, 0, out);
}

std::string TargetText(const v1::ScriptRun& run) {
  return run.device_id().empty()
             ? absl::StrCat("collection \"", run.collection(), "\"")
             : absl::StrCat("device ", run.device_name(), " (", run.device_id(), ")");
}

class ScriptRunServiceImpl final : public v1::ScriptRunService::Service {
 public:
  explicit ScriptRunServiceImpl(CallCore& core) : core_(core) {}

  grpc::Status RunScript(grpc::ServerContext* ctx, const v1::RunScriptRequest* req,
                         v1::ScriptRun* out) override {
    return core_.RunAudited(
        *ctx, __func__, kRun.name, "script", req->script(), [&](Call& call) -> absl::Status {
          Transaction& tx = call.tx;
          v1::Script s;
          RETURN_IF_ERROR(ReadScript(call, req->script(), &s));
          if (s.approved_sha256().empty())
            return absl::FailedPreconditionError(
                absl::StrCat("script \"", s.name(), "\" (body sha256 ", s.sha256(),
                             ") is not approved: an administrator with script.approve "
                             "approves it first (approve script)"));
          if (s.approved_sha256() != s.sha256())
            return absl::FailedPreconditionError(absl::StrCat(
                "script \"", s.name(), "\" changed since its approval (approved ",
                s.approved_sha256(), ", now ", s.sha256(), "): it must be approved again"));
          ASSIGN_OR_RETURN(Target target, ResolveTarget(call, req->collection(), req->device()));
          ASSIGN_OR_RETURN(auto args, deploy::ResolveArguments(s.parameters(), req->arguments()));
          const int64_t expires =
              req->expires_in_seconds() == 0 ? kDefaultExpirySeconds : req->expires_in_seconds();
          if (expires < 60 || expires > kMaxExpirySeconds)
            return absl::InvalidArgumentError(absl::StrCat(
                "expires_in_seconds: 60 to ", kMaxExpirySeconds, " (7 days), not ", expires));
          google::protobuf::RepeatedPtrField<v1::ScriptArgument> stored(args.begin(), args.end());
          ASSIGN_OR_RETURN(
              Result made,
              tx.Exec("INSERT INTO script_runs (id, script, interpreter, body, sha256, arguments, "
                      "timeout_seconds, run_as, collection, device_id, created_by, expires_at) "
                      "SELECT gen_random_uuid(), name, interpreter, body, approved_sha256, $2, "
                      "timeout_seconds, run_as, $3, nullif($4, '')::uuid, $5, now() + $6 * "
                      "interval '1 second' FROM scripts WHERE name = $1 RETURNING id::text",
                      {s.name(), deploy::ArgumentsJson(stored), target.collection, target.device_id,
                       call.caller.name, absl::StrCat(expires)}));
          const std::string id = made.GetString(0, 0);
          RETURN_IF_ERROR(ReadRun(call, id, out));
          std::vector<std::string> shown;
          for (const auto& a : stored) shown.push_back(absl::StrCat(a.name(), "=", a.value()));
          return call.Audit(
              "run", "script", s.name(),
              Truncated(
                  absl::StrCat("run ", id, " of body sha256 ", s.approved_sha256(), " on ",
                               TargetText(*out), " (", out->targeted(), " devices), expires in ",
                               expires, " s; arguments [", absl::StrJoin(shown, ", "), "]"),
                  4096));
        });
  }

  grpc::Status ListScriptRuns(grpc::ServerContext* ctx, const v1::ListRequest* req,
                              v1::ScriptRunList* out) override {
    return core_.Run(*ctx, __func__, kRead, [&](Call& call) -> absl::Status {
      out->Clear();
      ListSpec spec;
      spec.select = RunSelect();
      spec.filter_columns = {"x.script"};
      spec.order = {{"created", "x.created_at"}, {"script", "x.script"}};
      spec.default_order = "x.created_at DESC";
      absl::Status fill_status;
      RETURN_IF_ERROR(ListPage(call.tx, *req, spec, {}, out, [&](const Result& r, size_t i) {
        absl::Status s = FillRun(r, i, out->add_runs());
        if (fill_status.ok()) fill_status = s;
      }));
      return fill_status;
    });
  }

  grpc::Status GetScriptRun(grpc::ServerContext* ctx, const v1::ScriptRunStatusRequest* req,
                            v1::ScriptRunStatus* out) override {
    return core_.Run(*ctx, __func__, kRead, [&](Call& call) -> absl::Status {
      out->Clear();
      RETURN_IF_ERROR(ReadRun(call, req->id(), out->mutable_run()));
      const int max = req->max_devices() == 0 ? kDefaultStatusDevices : req->max_devices();
      if (max < 0 || max > kMaxStatusDevices)
        return absl::InvalidArgumentError(
            absl::StrCat("max_devices: 1 to ", kMaxStatusDevices, ", not ", max));
      // Every device the run reached (resolved at its primary) or that
      // reported it, the caller's only; no result yet: pending until the
      // run expires, then expired.
      store::Params params{req->id()};
      const std::string visible = VisibleDevice(call.caller, "v", params);
      const std::string from = absl::StrCat(
          " FROM (SELECT device_id FROM script_run_assignments WHERE run = $1::uuid UNION SELECT "
          "device_id FROM script_results WHERE run = $1::uuid) t JOIN devices v ON v.id = "
          "t.device_id JOIN script_runs x ON x.id = $1::uuid LEFT JOIN script_results r ON "
          "r.run = $1::uuid AND r.device_id = t.device_id WHERE ",
          visible);
      const std::string state =
          "coalesce(r.state, CASE WHEN x.expires_at <= now() THEN 'expired' ELSE 'pending' END)";
      ASSIGN_OR_RETURN(
          Result counts,
          call.tx.Exec(absl::StrCat("SELECT ", state, ", count(*)", from, " GROUP BY 1"), params));
      std::map<std::string, int64_t> by_state;
      for (size_t i = 0; i < counts.size(); ++i)
        by_state[counts.GetString(i, 0)] = counts.GetInt(i, 1);
      for (const char* s : kStates) {
        auto* c = out->add_counts();
        c->set_state(s);
        c->set_devices(by_state[s]);
      }
      std::string where;
      if (!req->state().empty()) {
        params.emplace_back(req->state());
        where = absl::StrCat(" AND ", state, " = $", params.size());
      }
      params.emplace_back(absl::StrCat(max + 1));
      ASSIGN_OR_RETURN(
          Result rows,
          call.tx.Exec(absl::StrCat("SELECT v.id::text, v.name, v.site_code, ", state,
                                    ", coalesce(r.exit_code, 0), ",
                                    req->without_output() ? "''" : "coalesce(r.output, '')",
                                    ", coalesce(r.truncated, false), coalesce(r.detail, ''), ",
                                    Ts("r.started_at"), ", ", Ts("r.finished_at"), from, where,
                                    " ORDER BY 4, v.name, v.id LIMIT $", params.size()),
                       params));
      for (size_t i = 0; i < rows.size(); ++i) {
        if (static_cast<int>(i) == max) {
          out->set_devices_truncated(true);
          break;
        }
        auto* d = out->add_devices();
        d->set_device_id(rows.GetString(i, 0));
        d->set_device_name(rows.GetString(i, 1));
        d->set_site_code(rows.GetString(i, 2));
        d->set_state(rows.GetString(i, 3));
        d->set_exit_code(static_cast<int32_t>(rows.GetInt(i, 4)));
        d->set_output(rows.GetString(i, 5));
        d->set_truncated(rows.GetBool(i, 6));
        d->set_detail(rows.GetString(i, 7));
        d->set_started_at(rows.GetString(i, 8));
        d->set_finished_at(rows.GetString(i, 9));
      }
      return absl::OkStatus();
    });
  }

 private:
  CallCore& core_;
};

}  // namespace

Resource ScriptRunsResource() {
  return {"script_runs", {kRun}, [](const ResourceContext& c) {
            return std::make_unique<ScriptRunServiceImpl>(*c.core);
          }};
}

}  // namespace strata::provider
