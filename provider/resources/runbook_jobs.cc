// Runbook jobs (proto/strata/v1/admin/runbook_jobs.proto): a runbook's
// published version run on a worker group. The job is global data carrying
// its own copy of that version; its state, attempts and streams are site
// data of the group's site, up to the CAS (common/site/runbook_dispatch.h).
// runbook.run starts, stops, suspends and resumes jobs (every one, and
// every refusal, audited; a start with the body's hash); runbook.read-jobs
// reads them. Who sees a job: the
// holders of one of the runbook's scopes when it started.

#include "common/collections/runbook_jobs.h"

#include <functional>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/deploy/runbook.h"
#include "common/deploy/script.h"
#include "common/inventory/report_check.h"
#include "provider/input.h"
#include "provider/listing.h"
#include "provider/rbac.h"
#include "provider/resource.h"
#include "provider/resources/runbooks.h"
#include "strata/v1/admin/runbook_jobs.grpc.pb.h"

namespace strata::provider {
namespace {

constexpr Permission kRun{"runbook.run", "Start, stop, suspend and resume runbook jobs"};
constexpr Permission kReadJobs{"runbook.read-jobs", "Read runbook jobs, their state and streams"};

constexpr size_t kMaxStreamRead = 1 << 20;  // per GetRunbookJob

std::string JobSelect() {
  return absl::StrCat(
      "SELECT j.id::text, j.runbook, j.version, j.sha256, j.worker_group, j.site_code, "
      "j.arguments, j.created_by, ",
      Ts("j.created_at"),
      ", coalesce(r.state, 'queued'), coalesce(r.attempt, 0), "
      "coalesce(r.worker_name, ''), ",
      Ts("r.started_at"), ", ", Ts("r.ended_at"),
      ", coalesce(r.exit_code, 0), coalesce(r.detail, ''), j.stop_requested_by, "
      "coalesce((extract(epoch FROM r.started_at - j.created_at) * 1000)::bigint, 0), "
      "j.scopes::text, j.schedule, j.resumable, j.suspend_requested, j.suspend_changed_by, "
      "coalesce(r.checkpoint_bytes, 0), ",
      Ts("r.checkpoint_at"),
      " FROM runbook_jobs j LEFT JOIN runbook_job_runs r ON r.job_id = j.id");
}

absl::Status FillJob(const Result& r, size_t i, v1::RunbookJob* j) {
  j->set_id(r.GetString(i, 0));
  j->set_runbook(r.GetString(i, 1));
  j->set_version(static_cast<int32_t>(r.GetInt(i, 2)));
  j->set_sha256(r.GetString(i, 3));
  j->set_group(r.GetString(i, 4));
  j->set_site(r.GetString(i, 5));
  RETURN_IF_ERROR(deploy::ParseArguments(r.GetString(i, 6), j->mutable_parameters()));
  j->set_created_by(r.GetString(i, 7));
  j->set_created_at(r.GetString(i, 8));
  j->set_state(r.GetString(i, 9));
  j->set_attempt(static_cast<int32_t>(r.GetInt(i, 10)));
  j->set_worker(r.GetString(i, 11));
  if (!r.IsNull(i, 12)) j->set_started_at(r.GetString(i, 12));
  if (!r.IsNull(i, 13)) j->set_ended_at(r.GetString(i, 13));
  j->set_exit_code(static_cast<int32_t>(r.GetInt(i, 14)));
  j->set_detail(r.GetString(i, 15));
  j->set_stop_requested_by(r.GetString(i, 16));
  j->set_queue_to_start_ms(std::max<int64_t>(0, r.GetInt(i, 17)));
  j->set_schedule(r.GetString(i, 19));
  j->set_resumable(r.GetBool(i, 20));
  j->set_suspend_requested(r.GetBool(i, 21));
  j->set_suspend_changed_by(r.GetString(i, 22));
  j->set_checkpoint_bytes(static_cast<int32_t>(r.GetInt(i, 23)));
  if (!r.IsNull(i, 24)) j->set_checkpoint_at(r.GetString(i, 24));
  return absl::OkStatus();
}

// The job if it exists and the caller holds one of its scopes.
absl::Status ReadJob(Call& call, const std::string& id, v1::RunbookJob* out) {
  if (!inventory::IsUuid(id))
    return absl::InvalidArgumentError(absl::StrCat("\"", id, "\" is not a job id (a UUID)"));
  ASSIGN_OR_RETURN(Result r,
                   call.tx.Exec(absl::StrCat(JobSelect(), " WHERE j.id = $1::uuid"), {id}));
  if (r.empty()) return absl::NotFoundError(absl::StrCat("no runbook job ", id));
  out->Clear();
  RETURN_IF_ERROR(FillJob(r, 0, out));
  google::protobuf::RepeatedPtrField<std::string> scopes;
  for (auto& x : store::ParseTextArray(r.GetString(0, 18))) *scopes.Add() = std::move(x);
  return RequireScopeVisible(call.caller, "runbook job", id, scopes);
}

// One stream of an attempt from `from` on: the pieces in order, each byte
// once (a piece sent again overlaps what is there), up to the first gap (a
// piece not arrived yet) and at most `budget` bytes.
absl::Status ReadStream(Transaction& tx, const std::string& job, int attempt,
                        const std::string& stream, int64_t from, size_t* budget,
                        v1::RunbookJobStream* out) {
  out->set_stream(stream);
  out->set_from(from);
  ASSIGN_OR_RETURN(Result r,
                   tx.Exec("SELECT byte_offset, text FROM runbook_job_output WHERE job_id = "
                           "$1::uuid AND attempt = $2 AND stream = $3 AND byte_offset + "
                           "octet_length(text) > $4 ORDER BY byte_offset",
                           {job, absl::StrCat(attempt), stream, absl::StrCat(from)}));
  int64_t covered = from;
  std::string text;
  for (size_t i = 0; i < r.size() && *budget > 0; ++i) {
    const int64_t off = r.GetInt(i, 0);
    if (off > covered) break;  // a gap: later pieces wait for it
    const std::string piece = r.GetString(i, 1);
    const int64_t skip = covered - off;
    if (skip >= static_cast<int64_t>(piece.size())) continue;
    const size_t n = std::min(piece.size() - static_cast<size_t>(skip), *budget);
    text.append(piece, static_cast<size_t>(skip), n);
    covered += static_cast<int64_t>(n);
    *budget -= n;
  }
  out->set_text(std::move(text));
  out->set_next(covered);
  return absl::OkStatus();
}

// The assets a runbook names: each must exist and be in one of the
// caller's scopes (what a job receives, its starter must be allowed to use).
absl::Status RequireAssets(Call& call, const v1::RunbookDefinition& d) {
  if (d.assets_size() == 0) return absl::OkStatus();
  ASSIGN_OR_RETURN(Result r, call.tx.Exec("SELECT name, scopes::text FROM runbook_assets WHERE "
                                          "name = ANY($1::text[])",
                                          {store::TextArrayLiteral(ToVector(d.assets()))}));
  std::map<std::string, std::string> found;
  for (size_t i = 0; i < r.size(); ++i) found[r.GetString(i, 0)] = r.GetString(i, 1);
  for (const auto& name : d.assets()) {
    auto it = found.find(name);
    if (it == found.end())
      return absl::FailedPreconditionError(
          absl::StrCat("the runbook uses asset \"", name, "\", which does not exist"));
    google::protobuf::RepeatedPtrField<std::string> scopes;
    for (auto& x : store::ParseTextArray(it->second)) *scopes.Add() = std::move(x);
    RETURN_IF_ERROR(RequireScopeVisible(call.caller, "runbook asset", name, scopes));
  }
  return absl::OkStatus();
}

class RunbookJobServiceImpl final : public v1::RunbookJobService::Service {
 public:
  explicit RunbookJobServiceImpl(CallCore& core) : core_(core) {}

  grpc::Status StartRunbook(grpc::ServerContext* ctx, const v1::StartRunbookRequest* req,
                            v1::RunbookJob* out) override {
    return core_.RunAudited(
        *ctx, __func__, kRun.name, "runbook", req->runbook(), [&](Call& call) -> absl::Status {
          v1::Runbook b;
          RETURN_IF_ERROR(ReadRunbook(call, req->runbook(), &b));
          if (b.published_version() == 0)
            return absl::FailedPreconditionError(absl::StrCat(
                "runbook \"", b.name(), "\" has no published version",
                b.draft_version() > 0 ? absl::StrCat(": its draft (version ", b.draft_version(),
                                                     ") runs only once published (publish runbook)")
                                      : std::string()));
          v1::RunbookWorkerGroup g;
          if (req->group().empty())
            return absl::InvalidArgumentError("give the worker group to run it on (--group)");
          RETURN_IF_ERROR(ReadWorkerGroup(call, req->group(), &g));
          ASSIGN_OR_RETURN(
              auto args, deploy::ResolveArguments(b.definition().parameters(), req->parameters()));
          google::protobuf::RepeatedPtrField<v1::ScriptArgument> stored(args.begin(), args.end());
          const v1::RunbookDefinition& d = b.definition();
          RETURN_IF_ERROR(RequireAssets(call, d));
          collections::RunbookJobRequest job;
          job.runbook = b.name();
          job.version = b.published_version();
          job.arguments_json = deploy::ArgumentsJson(stored);
          job.group = g.name();
          job.site = g.site();
          job.created_by = call.caller.name;
          ASSIGN_OR_RETURN(const std::string id, collections::InsertRunbookJob(call.tx, job));
          RETURN_IF_ERROR(ReadJob(call, id, out));
          std::string shown;
          for (const auto& a : stored)
            absl::StrAppend(&shown, shown.empty() ? "" : " ", a.name(), "=", a.value());
          return call.Audit(
              "start", "runbook", b.name(),
              Truncated(absl::StrCat("job ", id, " of version ", d.version(), " (body sha256 ",
                                     d.sha256(), ") on worker group \"", g.name(), "\" at site ",
                                     g.site(), shown.empty() ? "" : "; parameters: ", shown),
                        4096));
        });
  }

  grpc::Status ListRunbookJobs(grpc::ServerContext* ctx, const v1::ListRequest* req,
                               v1::RunbookJobList* out) override {
    return core_.Run(*ctx, __func__, kReadJobs.name, [&](Call& call) -> absl::Status {
      out->Clear();
      ListSpec spec;
      spec.select = JobSelect();
      store::Params params;
      spec.where = VisibleByScope(call.caller, "j", params);
      spec.filter_columns = {"j.runbook"};
      spec.order = {{"created", "j.created_at"}, {"runbook", "j.runbook"}, {"state", "r.state"}};
      spec.default_order = "j.created_at DESC";
      absl::Status fill_status;
      RETURN_IF_ERROR(ListPage(call.tx, *req, spec, params, out, [&](const Result& r, size_t i) {
        absl::Status s = FillJob(r, i, out->add_jobs());
        if (fill_status.ok()) fill_status = s;
      }));
      return fill_status;
    });
  }

  grpc::Status GetRunbookJob(grpc::ServerContext* ctx, const v1::GetRunbookJobRequest* req,
                             v1::RunbookJob* out) override {
    return core_.Run(*ctx, __func__, kReadJobs.name, [&](Call& call) -> absl::Status {
      RETURN_IF_ERROR(ReadJob(call, req->id(), out));
      ASSIGN_OR_RETURN(
          Result a,
          call.tx.Exec(
              absl::StrCat("SELECT attempt, worker_name, device_id::text, ", Ts("dispatched_at"),
                           ", ", Ts("started_at"), ", ", Ts("ended_at"),
                           ", outcome, detail FROM runbook_job_attempts WHERE job_id = "
                           "$1::uuid ORDER BY attempt"),
              {out->id()}));
      for (size_t i = 0; i < a.size(); ++i) {
        v1::RunbookJobAttempt* x = out->add_attempts();
        x->set_attempt(static_cast<int32_t>(a.GetInt(i, 0)));
        x->set_worker(a.GetString(i, 1));
        x->set_worker_id(a.GetString(i, 2));
        x->set_dispatched_at(a.GetString(i, 3));
        if (!a.IsNull(i, 4)) x->set_started_at(a.GetString(i, 4));
        if (!a.IsNull(i, 5)) x->set_ended_at(a.GetString(i, 5));
        x->set_outcome(a.GetString(i, 6));
        x->set_detail(a.GetString(i, 7));
      }
      if (req->without_streams()) return absl::OkStatus();
      const int attempt = req->attempt() > 0 ? req->attempt() : out->attempt();
      if (attempt == 0) return absl::OkStatus();
      size_t budget = kMaxStreamRead;
      const std::pair<const char*, int64_t> streams[] = {{"output", req->output_from()},
                                                         {"error", req->error_from()},
                                                         {"verbose", req->verbose_from()}};
      for (const auto& [name, from] : streams) {
        if (from < 0) return absl::InvalidArgumentError(absl::StrCat(name, "_from: 0 or more"));
        RETURN_IF_ERROR(
            ReadStream(call.tx, out->id(), attempt, name, from, &budget, out->add_streams()));
      }
      return absl::OkStatus();
    });
  }

  grpc::Status StopRunbookJob(grpc::ServerContext* ctx, const v1::GetRequest* req,
                              v1::RunbookJob* out) override {
    return ChangeJob(*ctx, __func__, req->name(), out, [](Call& call, const v1::RunbookJob& j) {
      RETURN_IF_ERROR(call.tx
                          .Exec("UPDATE runbook_jobs SET stop_requested_by = $2, "
                                "stop_requested_at = now() WHERE id = $1::uuid",
                                {j.id(), call.caller.name})
                          .status());
      return call.Audit("stop", "runbook job", j.id(),
                        absl::StrCat("runbook \"", j.runbook(), "\" on group \"", j.group(),
                                     "\" at site ", j.site(), ", ", j.state()));
    });
  }

  grpc::Status SuspendRunbookJob(grpc::ServerContext* ctx, const v1::GetRequest* req,
                                 v1::RunbookJob* out) override {
    return ChangeJob(*ctx, __func__, req->name(), out, [](Call& call, const v1::RunbookJob& j) {
      if (!j.resumable())
        return absl::FailedPreconditionError(absl::StrCat(
            "job ", j.id(), " runs version ", j.version(), " of runbook \"", j.runbook(),
            "\", which is not resumable: stop the job instead (a version made with "
            "--resumable can be suspended)"));
      if (j.suspend_requested())
        return absl::FailedPreconditionError(
            absl::StrCat("job ", j.id(), " is ", j.state() == "suspended" ? "" : "being ",
                         "suspended already (asked by ", j.suspend_changed_by(), ")"));
      return SetSuspended(call, j, true);
    });
  }

  grpc::Status ResumeRunbookJob(grpc::ServerContext* ctx, const v1::GetRequest* req,
                                v1::RunbookJob* out) override {
    return ChangeJob(*ctx, __func__, req->name(), out, [](Call& call, const v1::RunbookJob& j) {
      if (!j.suspend_requested())
        return absl::FailedPreconditionError(
            absl::StrCat("job ", j.id(), " is not suspended (", j.state(), ")"));
      return SetSuspended(call, j, false);
    });
  }

 private:
  // Stop, suspend or resume the job `id` (runbook.run; every refusal
  // audited): `change` is given the job, neither ended nor being stopped;
  // `out` is the job after it.
  grpc::Status ChangeJob(grpc::ServerContext& ctx, absl::string_view method, const std::string& id,
                         v1::RunbookJob* out,
                         const std::function<absl::Status(Call&, const v1::RunbookJob&)>& change) {
    return core_.RunAudited(ctx, method, kRun.name, "runbook job", id,
                            [&](Call& call) -> absl::Status {
                              v1::RunbookJob j;
                              RETURN_IF_ERROR(ReadJob(call, id, &j));
                              RETURN_IF_ERROR(RequireUnderWay(j));
                              RETURN_IF_ERROR(change(call, j));
                              return ReadJob(call, j.id(), out);
                            });
  }

  // Neither ended nor being stopped: FailedPrecondition saying which.
  static absl::Status RequireUnderWay(const v1::RunbookJob& j) {
    if (j.state() == "completed" || j.state() == "failed" || j.state() == "stopped")
      return absl::FailedPreconditionError(
          absl::StrCat("job ", j.id(), " has ended (", j.state(), ")"));
    if (!j.stop_requested_by().empty())
      return absl::FailedPreconditionError(absl::StrCat(
          "job ", j.id(), " is being stopped already (asked by ", j.stop_requested_by(), ")"));
    return absl::OkStatus();
  }

  // Suspend (true) or resume (false): the job's desired state, which its
  // site makes the run follow; audited.
  static absl::Status SetSuspended(Call& call, const v1::RunbookJob& j, bool suspend) {
    RETURN_IF_ERROR(call.tx
                        .Exec("UPDATE runbook_jobs SET suspend_requested = $2::boolean, "
                              "suspend_changed_by = $3, suspend_changed_at = now() WHERE id = "
                              "$1::uuid",
                              {j.id(), suspend ? "true" : "false", call.caller.name})
                        .status());
    return call.Audit(
        suspend ? "suspend" : "resume", "runbook job", j.id(),
        absl::StrCat("runbook \"", j.runbook(), "\" on group \"", j.group(), "\" at site ",
                     j.site(), ", ", j.state(),
                     j.checkpoint_bytes() > 0
                         ? absl::StrCat(", checkpoint of ", j.checkpoint_bytes(), " bytes")
                         : std::string()));
  }

  CallCore& core_;
};

}  // namespace

Resource RunbookJobsResource() {
  return {"runbook_jobs", {kRun, kReadJobs}, [](const ResourceContext& c) {
            return std::make_unique<RunbookJobServiceImpl>(*c.core);
          }};
}

}  // namespace strata::provider
