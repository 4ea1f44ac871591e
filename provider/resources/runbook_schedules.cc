// Runbook schedules (proto/strata/v1/admin/runbook_schedules.proto): global
// data at the CAS and primaries, fired by the site that made them
// (common/site/runbook_schedules.h). runbook.run changes them, audited;
// runbook.read lists them. The rule is checked here (common/deploy/
// schedule.h) and stored whole as protobuf JSON.

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"
#include "common/deploy/schedule.h"
#include "common/deploy/script.h"
#include "provider/input.h"
#include "provider/listing.h"
#include "provider/rbac.h"
#include "provider/resource.h"
#include "provider/resources/runbooks.h"
#include "strata/v1/admin/runbook_schedules.grpc.pb.h"

namespace strata::provider {
namespace {

constexpr char kRun[] = "runbook.run";    // resources/runbook_jobs.cc
constexpr char kRead[] = "runbook.read";  // resources/runbooks.cc

std::string ScheduleSelect() {
  return absl::StrCat(
      "SELECT s.name, s.description, s.runbook, s.worker_group, s.rule, "
      "s.parameters, s.disabled, s.scopes::text, s.created_by, ",
      Ts("s.updated_at"), ", s._origin FROM runbook_schedules s");
}

// The rule's fields only (what the rule column holds).
v1::RunbookSchedule RuleOf(const v1::RunbookSchedule& s) {
  v1::RunbookSchedule r;
  r.set_kind(s.kind());
  r.set_start(s.start());
  r.set_interval_seconds(s.interval_seconds());
  r.set_at(s.at());
  *r.mutable_week_days() = s.week_days();
  *r.mutable_month_days() = s.month_days();
  r.set_time_zone(s.time_zone());
  r.set_missed(s.missed());
  return r;
}

absl::Status FillSchedule(const Result& r, size_t i, v1::RunbookSchedule* s) {
  google::protobuf::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(r.GetString(i, 4), s, opts).ok())
    return absl::DataLossError(absl::StrCat("schedule \"", r.GetString(i, 0), "\": bad rule"));
  s->set_name(r.GetString(i, 0));
  s->set_description(r.GetString(i, 1));
  s->set_runbook(r.GetString(i, 2));
  s->set_group(r.GetString(i, 3));
  RETURN_IF_ERROR(deploy::ParseArguments(r.GetString(i, 5), s->mutable_parameters()));
  s->set_disabled(r.GetBool(i, 6));
  for (auto& x : store::ParseTextArray(r.GetString(i, 7))) s->add_scopes(std::move(x));
  s->set_created_by(r.GetString(i, 8));
  s->set_updated_at(r.GetString(i, 9));
  s->set_site(r.GetString(i, 10));
  if (!s->disabled()) {
    auto next = deploy::NextRun(*s, absl::Now());
    if (next.ok() && *next != absl::InfiniteFuture())
      s->set_next_run(absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", *next, absl::UTCTimeZone()));
  }
  return absl::OkStatus();
}

std::string Summary(const v1::RunbookSchedule& s) {
  std::string when = s.kind();
  if (s.kind() == "interval") absl::StrAppend(&when, " every ", s.interval_seconds(), " s");
  if (!s.at().empty()) absl::StrAppend(&when, " at ", s.at(), " ", s.time_zone());
  if (s.week_days_size()) absl::StrAppend(&when, " on days ", absl::StrJoin(s.week_days(), ","));
  if (s.month_days_size())
    absl::StrAppend(&when, " on days ", absl::StrJoin(s.month_days(), ","), " of the month");
  return absl::StrCat("runbook \"", s.runbook(), "\" on worker group \"", s.group(), "\", ", when,
                      " from ", s.start(), ", missed runs: ", s.missed(),
                      s.disabled() ? ", disabled" : "");
}

absl::Status ReadSchedule(Call& call, const std::string& name, v1::RunbookSchedule* out) {
  ASSIGN_OR_RETURN(Result r,
                   call.tx.Exec(absl::StrCat(ScheduleSelect(), " WHERE s.name = $1"), {name}));
  if (r.empty()) return absl::NotFoundError(absl::StrCat("no runbook schedule \"", name, "\""));
  out->Clear();
  RETURN_IF_ERROR(FillSchedule(r, 0, out));
  return RequireScopeVisible(call.caller, "runbook schedule", name, out->scopes());
}

class RunbookScheduleServiceImpl final : public v1::RunbookScheduleService::Service {
 public:
  explicit RunbookScheduleServiceImpl(CallCore& core, std::string site)
      : core_(core), site_(std::move(site)) {}

  grpc::Status ListRunbookSchedules(grpc::ServerContext* ctx, const v1::ListRequest* req,
                                    v1::RunbookScheduleList* out) override {
    return core_.Run(*ctx, __func__, kRead, [&](Call& call) -> absl::Status {
      out->Clear();
      ListSpec spec;
      spec.select = ScheduleSelect();
      store::Params params;
      spec.where = VisibleByScope(call.caller, "s", params);
      spec.filter_columns = {"s.name", "s.runbook"};
      spec.order = {{"name", "s.name"}, {"runbook", "s.runbook"}};
      spec.default_order = "s.name";
      absl::Status fill_status;
      RETURN_IF_ERROR(ListPage(call.tx, *req, spec, params, out, [&](const Result& r, size_t i) {
        absl::Status s = FillSchedule(r, i, out->add_schedules());
        if (fill_status.ok()) fill_status = s;
      }));
      return fill_status;
    });
  }

  grpc::Status GetRunbookSchedule(grpc::ServerContext* ctx, const v1::GetRequest* req,
                                  v1::RunbookSchedule* out) override {
    return core_.Run(*ctx, __func__, kRead,
                     [&](Call& call) { return ReadSchedule(call, req->name(), out); });
  }

  grpc::Status CreateRunbookSchedule(grpc::ServerContext* ctx, const v1::RunbookSchedule* req,
                                     v1::RunbookSchedule* out) override {
    return Save(*ctx, __func__, *req, /*create=*/true, out);
  }

  grpc::Status UpdateRunbookSchedule(grpc::ServerContext* ctx, const v1::RunbookSchedule* req,
                                     v1::RunbookSchedule* out) override {
    return Save(*ctx, __func__, *req, /*create=*/false, out);
  }

  grpc::Status DeleteRunbookSchedule(grpc::ServerContext* ctx, const v1::GetRequest* req,
                                     v1::Deleted* out) override {
    return core_.RunAudited(
        *ctx, __func__, kRun, "runbook schedule", req->name(), [&](Call& call) -> absl::Status {
          v1::RunbookSchedule s;
          RETURN_IF_ERROR(ReadSchedule(call, req->name(), &s));
          RETURN_IF_ERROR(
              call.tx.Exec("DELETE FROM runbook_schedules WHERE name = $1", {s.name()}).status());
          RETURN_IF_ERROR(call.Audit("delete", "runbook schedule", s.name(), Summary(s)));
          out->set_name(s.name());
          return absl::OkStatus();
        });
  }

 private:
  grpc::Status Save(const grpc::ServerContext& ctx, const char* method,
                    const v1::RunbookSchedule& req, bool create, v1::RunbookSchedule* out) {
    return core_.RunAudited(
        ctx, method, kRun, "runbook schedule", req.name(), [&](Call& call) -> absl::Status {
          Transaction& tx = call.tx;
          RETURN_IF_ERROR(CheckName("name", req.name()));
          RETURN_IF_ERROR(CheckText("description", req.description(), 4096));
          v1::RunbookSchedule s = req;
          RETURN_IF_ERROR(deploy::CheckSchedule(s, absl::Now()));
          v1::Runbook b;
          RETURN_IF_ERROR(ReadRunbook(call, s.runbook(), &b));
          if (b.published_version() == 0)
            return absl::FailedPreconditionError(absl::StrCat(
                "runbook \"", b.name(), "\" has no published version: publish it first"));
          v1::RunbookWorkerGroup g;
          RETURN_IF_ERROR(ReadWorkerGroup(call, s.group(), &g));
          // Checked now against the published version; kept as given and
          // resolved at each run against the version published then.
          RETURN_IF_ERROR(
              deploy::ResolveArguments(b.definition().parameters(), s.parameters()).status());
          std::vector<std::string> scopes = ToVector(req.scopes());
          if (create) {
            ASSIGN_OR_RETURN(Result exists, tx.Exec("SELECT 1 FROM runbook_schedules WHERE name "
                                                    "= $1",
                                                    {s.name()}));
            if (!exists.empty())
              return absl::AlreadyExistsError(
                  absl::StrCat("runbook schedule \"", s.name(), "\" already exists"));
            if (scopes.empty()) scopes = ToVector(b.scopes());
          } else {
            v1::RunbookSchedule before;
            RETURN_IF_ERROR(ReadSchedule(call, s.name(), &before));
            if (before.site() != site_)
              return absl::FailedPreconditionError(
                  absl::StrCat("runbook schedule \"", s.name(), "\" was made at site ",
                               before.site(), ", which fires it: change it there"));
            if (scopes.empty()) scopes = ToVector(before.scopes());
          }
          RETURN_IF_ERROR(CheckScopes(tx, call.caller, scopes));
          std::string rule;
          (void)google::protobuf::util::MessageToJsonString(RuleOf(s), &rule);
          RETURN_IF_ERROR(
              tx.Exec(create ? "INSERT INTO runbook_schedules (name, description, runbook, "
                               "worker_group, rule, parameters, disabled, scopes, created_by) "
                               "VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text[], $9)"
                             : "UPDATE runbook_schedules SET description = $2, runbook = $3, "
                               "worker_group = $4, rule = $5, parameters = $6, disabled = $7, "
                               "scopes = $8::text[], created_by = $9, updated_at = now() WHERE "
                               "name = $1",
                      {s.name(), s.description(), s.runbook(), s.group(), rule,
                       deploy::ArgumentsJson(s.parameters()), s.disabled() ? "t" : "f",
                       store::TextArrayLiteral(scopes), call.caller.name})
                  .status());
          RETURN_IF_ERROR(
              call.Audit(create ? "create" : "update", "runbook schedule", s.name(), Summary(s)));
          return ReadSchedule(call, s.name(), out);
        });
  }

  CallCore& core_;
  const std::string site_;
};

}  // namespace

Resource RunbookSchedulesResource() {
  return {"runbook_schedules", {}, [](const ResourceContext& c) {
            return std::make_unique<RunbookScheduleServiceImpl>(*c.core, c.site);
          }};
}

}  // namespace strata::provider
