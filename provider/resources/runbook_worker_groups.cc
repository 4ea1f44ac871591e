// Runbook worker groups (proto/strata/v1/admin/runbook_worker_groups.proto):
// global data every site holds. A group names a collection (its members are
// the workers) and the primary or secondary site that dispatches its jobs.
// runbook.workers changes groups (audited); runbook.read lists them.

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "provider/input.h"
#include "provider/listing.h"
#include "provider/rbac.h"
#include "provider/resource.h"
#include "provider/resources/collections.h"
#include "provider/resources/runbooks.h"
#include "strata/v1/admin/runbook_worker_groups.grpc.pb.h"

namespace strata::provider {
namespace {

constexpr Permission kWorkers{"runbook.workers", "Create, change and delete runbook worker groups"};
constexpr char kRead[] = "runbook.read";  // resources/runbooks.cc

constexpr int kDefaultJobsPerWorker = 30;  // as an SMA sandbox
constexpr int kDefaultLeaseSeconds = 60;

std::string GroupSelect() {
  return absl::StrCat(
      "SELECT g.name, g.description, g.site_code, g.collection, g.max_jobs_per_worker, "
      "g.max_jobs, g.lease_seconds, g.scopes::text, g.created_by, ",
      Ts("g.updated_at"),
      ", (SELECT count(*) FROM runbook_worker_assignments a WHERE a.worker_group = g.name), "
      "(SELECT count(*) FROM runbook_job_runs r WHERE r.worker_group = g.name AND r.state = "
      "'queued'), (SELECT count(*) FROM runbook_job_runs r WHERE r.worker_group = g.name AND "
      "r.state IN ('dispatched', 'running')) FROM runbook_worker_groups g");
}

void FillGroup(const Result& r, size_t i, v1::RunbookWorkerGroup* g) {
  g->set_name(r.GetString(i, 0));
  g->set_description(r.GetString(i, 1));
  g->set_site(r.GetString(i, 2));
  g->set_collection(r.GetString(i, 3));
  g->set_max_jobs_per_worker(static_cast<int32_t>(r.GetInt(i, 4)));
  g->set_max_jobs(static_cast<int32_t>(r.GetInt(i, 5)));
  g->set_lease_seconds(static_cast<int32_t>(r.GetInt(i, 6)));
  for (auto& x : store::ParseTextArray(r.GetString(i, 7))) g->add_scopes(std::move(x));
  g->set_created_by(r.GetString(i, 8));
  g->set_updated_at(r.GetString(i, 9));
  g->set_workers(r.GetInt(i, 10));
  g->set_jobs_queued(r.GetInt(i, 11));
  g->set_jobs_running(r.GetInt(i, 12));
}

std::string Summary(const v1::RunbookWorkerGroup& g) {
  return absl::StrCat("site ", g.site(), ", collection \"", g.collection(), "\", ",
                      g.max_jobs_per_worker(), " jobs per worker, ",
                      g.max_jobs() == 0 ? std::string("no group limit")
                                        : absl::StrCat(g.max_jobs(), " jobs in all"),
                      ", lease ", g.lease_seconds(), " s");
}

class RunbookWorkerGroupServiceImpl final : public v1::RunbookWorkerGroupService::Service {
 public:
  explicit RunbookWorkerGroupServiceImpl(CallCore& core) : core_(core) {}

  grpc::Status ListRunbookWorkerGroups(grpc::ServerContext* ctx, const v1::ListRequest* req,
                                       v1::RunbookWorkerGroupList* out) override {
    return core_.Run(*ctx, __func__, kRead, [&](Call& call) -> absl::Status {
      out->Clear();
      ListSpec spec;
      spec.select = GroupSelect();
      store::Params params;
      spec.where = VisibleByScope(call.caller, "g", params);
      spec.filter_columns = {"g.name"};
      spec.order = {{"name", "g.name"}, {"site", "g.site_code"}};
      spec.default_order = "g.name";
      return ListPage(call.tx, *req, spec, params, out,
                      [&](const Result& r, size_t i) { FillGroup(r, i, out->add_groups()); });
    });
  }

  grpc::Status GetRunbookWorkerGroup(grpc::ServerContext* ctx, const v1::GetRequest* req,
                                     v1::RunbookWorkerGroup* out) override {
    return core_.Run(*ctx, __func__, kRead,
                     [&](Call& call) { return ReadWorkerGroup(call, req->name(), out); });
  }

  grpc::Status CreateRunbookWorkerGroup(grpc::ServerContext* ctx, const v1::RunbookWorkerGroup* req,
                                        v1::RunbookWorkerGroup* out) override {
    return Save(*ctx, __func__, *req, /*create=*/true, out);
  }

  grpc::Status UpdateRunbookWorkerGroup(grpc::ServerContext* ctx, const v1::RunbookWorkerGroup* req,
                                        v1::RunbookWorkerGroup* out) override {
    return Save(*ctx, __func__, *req, /*create=*/false, out);
  }

  grpc::Status DeleteRunbookWorkerGroup(grpc::ServerContext* ctx, const v1::GetRequest* req,
                                        v1::Deleted* out) override {
    return core_.RunAudited(
        *ctx, __func__, kWorkers.name, "runbook worker group", req->name(),
        [&](Call& call) -> absl::Status {
          v1::RunbookWorkerGroup g;
          RETURN_IF_ERROR(ReadWorkerGroup(call, req->name(), &g));
          if (g.jobs_queued() + g.jobs_running() > 0)
            return absl::FailedPreconditionError(absl::StrCat(
                "worker group \"", g.name(), "\" has ", g.jobs_queued(), " jobs queued and ",
                g.jobs_running(), " under way: stop them (stop job ID) or let them end first"));
          RETURN_IF_ERROR(
              call.tx.Exec("DELETE FROM runbook_worker_groups WHERE name = $1", {g.name()})
                  .status());
          RETURN_IF_ERROR(call.Audit("delete", "runbook worker group", g.name(), Summary(g)));
          out->set_name(g.name());
          return absl::OkStatus();
        });
  }

 private:
  grpc::Status Save(const grpc::ServerContext& ctx, const char* method,
                    const v1::RunbookWorkerGroup& req, bool create, v1::RunbookWorkerGroup* out) {
    return core_.RunAudited(
        ctx, method, kWorkers.name, "runbook worker group", req.name(),
        [&](Call& call) -> absl::Status {
          Transaction& tx = call.tx;
          RETURN_IF_ERROR(CheckName("name", req.name()));
          RETURN_IF_ERROR(CheckText("description", req.description(), 4096));
          v1::RunbookWorkerGroup g = req;
          if (g.max_jobs_per_worker() == 0) g.set_max_jobs_per_worker(kDefaultJobsPerWorker);
          if (g.lease_seconds() == 0) g.set_lease_seconds(kDefaultLeaseSeconds);
          if (g.max_jobs_per_worker() < 1 || g.max_jobs_per_worker() > 1000)
            return absl::InvalidArgumentError(absl::StrCat(
                "max_jobs_per_worker: 1 to 1000 (default 30), not ", g.max_jobs_per_worker()));
          if (g.max_jobs() < 0) return absl::InvalidArgumentError("max_jobs: 0 (no limit) or more");
          if (g.lease_seconds() < 10 || g.lease_seconds() > 3600)
            return absl::InvalidArgumentError(
                absl::StrCat("lease_seconds: 10 to 3600 (default 60), not ", g.lease_seconds()));
          ASSIGN_OR_RETURN(Result site,
                           tx.Exec("SELECT type FROM sites WHERE code = $1", {g.site()}));
          if (site.empty())
            return absl::NotFoundError(
                absl::StrCat("no site \"", g.site(),
                             "\" in the hierarchy (a worker group's site is the "
                             "primary or secondary whose clients are its workers)"));
          if (site.GetString(0, 0) != "primary" && site.GetString(0, 0) != "secondary")
            return absl::InvalidArgumentError(
                absl::StrCat("site ", g.site(), " is a ", site.GetString(0, 0),
                             ": workers are clients of a primary or secondary site"));
          v1::Collection coll;
          RETURN_IF_ERROR(ReadCollection(call, g.collection(), &coll));
          RETURN_IF_ERROR(RequireContained(tx, call.caller, g.collection()));
          std::vector<std::string> scopes = ToVector(req.scopes());
          if (create) {
            ASSIGN_OR_RETURN(Result exists, tx.Exec("SELECT 1 FROM runbook_worker_groups WHERE "
                                                    "name = $1",
                                                    {req.name()}));
            if (!exists.empty())
              return absl::AlreadyExistsError(
                  absl::StrCat("worker group \"", req.name(), "\" already exists"));
            if (scopes.empty()) scopes = {"Default"};
          } else {
            v1::RunbookWorkerGroup before;
            RETURN_IF_ERROR(ReadWorkerGroup(call, req.name(), &before));
            if (scopes.empty()) scopes = ToVector(before.scopes());
          }
          RETURN_IF_ERROR(CheckScopes(tx, call.caller, scopes));
          const store::Params values = {g.name(),
                                        g.description(),
                                        g.site(),
                                        g.collection(),
                                        absl::StrCat(g.max_jobs_per_worker()),
                                        absl::StrCat(g.max_jobs()),
                                        absl::StrCat(g.lease_seconds()),
                                        store::TextArrayLiteral(scopes),
                                        call.caller.name};
          RETURN_IF_ERROR(
              tx.Exec(create ? "INSERT INTO runbook_worker_groups (name, description, site_code, "
                               "collection, max_jobs_per_worker, max_jobs, lease_seconds, scopes, "
                               "created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text[], $9)"
                             : "UPDATE runbook_worker_groups SET description = $2, site_code = "
                               "$3, collection = $4, max_jobs_per_worker = $5, max_jobs = $6, "
                               "lease_seconds = $7, scopes = $8::text[], updated_at = now() "
                               "WHERE name = $1",
                      values)
                  .status());
          RETURN_IF_ERROR(call.Audit(create ? "create" : "update", "runbook worker group", g.name(),
                                     Summary(g)));
          return ReadWorkerGroup(call, g.name(), out);
        });
  }

  CallCore& core_;
};

}  // namespace

absl::Status ReadWorkerGroup(Call& call, const std::string& name, v1::RunbookWorkerGroup* out) {
  ASSIGN_OR_RETURN(Result r,
                   call.tx.Exec(absl::StrCat(GroupSelect(), " WHERE g.name = $1"), {name}));
  if (r.empty()) return absl::NotFoundError(absl::StrCat("no runbook worker group \"", name, "\""));
  out->Clear();
  FillGroup(r, 0, out);
  return RequireScopeVisible(call.caller, "runbook worker group", name, out->scopes());
}

Resource RunbookWorkerGroupsResource() {
  return {"runbook_worker_groups", {kWorkers}, [](const ResourceContext& c) {
            return std::make_unique<RunbookWorkerGroupServiceImpl>(*c.core);
          }};
}

}  // namespace strata::provider
