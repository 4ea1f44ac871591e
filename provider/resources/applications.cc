// Applications (proto/strata/v1/admin/applications.proto): definitions of
// what can be installed and how to tell it is, global data every site holds.
// Deployed with resources/deployments.cc.

#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"
#include "common/collections/app_deployments.h"
#include "common/deploy/application.h"
#include "provider/input.h"
#include "provider/listing.h"
#include "provider/rbac.h"
#include "provider/resource.h"
#include "provider/resources/applications.h"
#include "strata/v1/admin/applications.grpc.pb.h"

namespace strata::provider {
namespace {

constexpr Permission kRead{"application.read", "List applications and their definitions"};
constexpr Permission kUpdate{"application.update", "Create, change and delete applications"};

std::string AppSelect() {
  return absl::StrCat("SELECT a.name, a.definition, a.scopes::text, a.created_by, ",
                      Ts("a.updated_at"), " FROM applications a");
}

absl::Status FillApp(const Result& r, size_t i, v1::Application* out) {
  RETURN_IF_ERROR(collections::ParseApplication(r.GetString(i, 1), out));
  out->set_name(r.GetString(i, 0));
  out->clear_scopes();
  for (auto& s : store::ParseTextArray(r.GetString(i, 2))) out->add_scopes(std::move(s));
  out->set_created_by(r.GetString(i, 3));
  out->set_updated_at(r.GetString(i, 4));
  return absl::OkStatus();
}

// The content each deployment type names exists (a package with a version;
// that version, when one is named).
absl::Status CheckContent(Transaction& tx, const v1::Application& app,
                          std::set<std::string>* packages) {
  for (const auto& dt : app.deployment_types()) {
    if (!dt.has_content()) continue;
    const auto& c = dt.content();
    ASSIGN_OR_RETURN(Result r, tx.Exec("SELECT max(version), bool_or(version = $2) FROM "
                                       "package_versions WHERE package = $1",
                                       {c.package(), absl::StrCat(c.version())}));
    if (r.IsNull(0, 0))
      return absl::NotFoundError(absl::StrCat("deployment type \"", dt.name(), "\": no package \"",
                                              c.package(), "\" with content (get packages)"));
    if (c.version() != 0 && !r.GetBool(0, 1))
      return absl::NotFoundError(absl::StrCat("deployment type \"", dt.name(), "\": package \"",
                                              c.package(), "\" has no version ", c.version()));
    packages->insert(c.package());
  }
  return absl::OkStatus();
}

// Every application `app` names (dependencies, superseded) exists and the
// caller sees it; dependencies make no cycle and no chain deeper than 5.
absl::Status CheckReferences(Call& call, const v1::Application& app) {
  std::vector<std::string> named(app.depends_on().begin(), app.depends_on().end());
  for (const auto& s : app.supersedes()) named.push_back(s.application());
  for (const auto& name : named) {
    v1::Application other;
    RETURN_IF_ERROR(ReadApplication(call, name, &other));
  }
  // The dependency graph as stored, with this application's edges as given.
  ASSIGN_OR_RETURN(Result r, call.tx.Exec("SELECT name, depends_on::text FROM applications"));
  std::map<std::string, std::vector<std::string>> edges;
  for (size_t i = 0; i < r.size(); ++i)
    edges[r.GetString(i, 0)] = store::ParseTextArray(r.GetString(i, 1));
  edges[app.name()] = {app.depends_on().begin(), app.depends_on().end()};
  // Depth-first from the application; a path that comes back is a cycle.
  std::vector<std::string> path{app.name()};
  std::function<absl::Status(const std::string&)> walk =
      [&](const std::string& at) -> absl::Status {
    for (const auto& next : edges[at]) {
      if (std::find(path.begin(), path.end(), next) != path.end()) {
        path.push_back(next);
        return absl::InvalidArgumentError(
            absl::StrCat("depends_on: a cycle: ", absl::StrJoin(path, " -> ")));
      }
      path.push_back(next);
      if (static_cast<int>(path.size()) - 1 > deploy::kMaxDependencyDepth)
        return absl::InvalidArgumentError(absl::StrCat("depends_on: a chain deeper than ",
                                                       deploy::kMaxDependencyDepth, ": ",
                                                       absl::StrJoin(path, " -> ")));
      RETURN_IF_ERROR(walk(next));
      path.pop_back();
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(walk(app.name()));
  // Applications that depend on this one: their chains grow by its depth.
  std::function<int(const std::string&, int)> depth = [&](const std::string& at, int d) {
    int best = d;
    for (const auto& next : edges[at]) best = std::max(best, depth(next, d + 1));
    return best;
  };
  for (const auto& [name, deps] : edges) {
    if (name != app.name() && depth(name, 0) > deploy::kMaxDependencyDepth)
      return absl::InvalidArgumentError(absl::StrCat("depends_on: application \"", name,
                                                     "\" would reach a chain deeper than ",
                                                     deploy::kMaxDependencyDepth));
  }
  return absl::OkStatus();
}

// What an application runs reaches every device its deployments (and those
// of applications that depend on it or supersede it) target: changing it is
// acting on them, so each of those collections must lie within the caller's.
absl::Status RequireDeployedWithin(Call& call, const std::string& name) {
  ASSIGN_OR_RETURN(
      Result colls,
      call.tx.Exec("WITH RECURSIVE affected(name) AS (SELECT $1::text UNION SELECT a.name FROM "
                   "applications a JOIN affected f ON f.name = ANY(a.depends_on) OR f.name = "
                   "ANY(a.supersedes)) SELECT DISTINCT c FROM (SELECT d.collection AS c FROM "
                   "app_deployments d JOIN affected f ON f.name = d.application UNION ALL SELECT "
                   "unnest(r.collections) FROM deployment_rollouts r JOIN affected f ON f.name = "
                   "r.application) x WHERE EXISTS (SELECT 1 FROM collections k WHERE k.name = "
                   "x.c) ORDER BY 1",
                   {name}));
  for (size_t i = 0; i < colls.size(); ++i) {
    absl::Status s = RequireContained(call.tx, call.caller, colls.GetString(i, 0));
    if (!s.ok())
      return absl::PermissionDeniedError(
          absl::StrCat("application \"", name,
                       "\" is deployed (itself or through an application "
                       "using it) to collection \"",
                       colls.GetString(i, 0), "\", outside your collections: ", s.message()));
  }
  return absl::OkStatus();
}

std::string Summary(const v1::Application& app) {
  std::vector<std::string> dts;
  for (const auto& dt : app.deployment_types()) dts.push_back(dt.name());
  return absl::StrCat("deployment types [", absl::StrJoin(dts, ", "), "] depends on [",
                      absl::StrJoin(app.depends_on(), ", "), "]");
}

class ApplicationServiceImpl final : public v1::ApplicationService::Service {
 public:
  explicit ApplicationServiceImpl(CallCore& core) : core_(core) {}

  grpc::Status ListApplications(grpc::ServerContext* ctx, const v1::ListRequest* req,
                                v1::ApplicationList* out) override {
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) -> absl::Status {
      out->Clear();
      ListSpec spec;
      spec.select = AppSelect();
      store::Params params;
      spec.where = VisibleByScope(call.caller, "a", params);
      spec.filter_columns = {"a.name"};
      spec.order = {{"name", "a.name"}, {"updated", "a.updated_at"}};
      spec.default_order = "a.name";
      absl::Status fill_status;
      RETURN_IF_ERROR(ListPage(call.tx, *req, spec, params, out, [&](const Result& r, size_t i) {
        absl::Status s = FillApp(r, i, out->add_applications());
        if (fill_status.ok()) fill_status = s;
      }));
      return fill_status;
    });
  }

  grpc::Status GetApplication(grpc::ServerContext* ctx, const v1::GetRequest* req,
                              v1::Application* out) override {
    return core_.Run(*ctx, __func__, kRead.name,
                     [&](Call& call) { return ReadApplication(call, req->name(), out); });
  }

  grpc::Status CreateApplication(grpc::ServerContext* ctx, const v1::Application* req,
                                 v1::Application* out) override {
    return Save(*ctx, __func__, *req, /*create=*/true, out);
  }

  grpc::Status UpdateApplication(grpc::ServerContext* ctx, const v1::Application* req,
                                 v1::Application* out) override {
    return Save(*ctx, __func__, *req, /*create=*/false, out);
  }

  grpc::Status DeleteApplication(grpc::ServerContext* ctx, const v1::GetRequest* req,
                                 v1::Deleted* out) override {
    return core_.Run(*ctx, __func__, kUpdate.name, [&](Call& call) -> absl::Status {
      v1::Application app;
      RETURN_IF_ERROR(ReadApplication(call, req->name(), &app));
      ASSIGN_OR_RETURN(Result used,
                       call.tx.Exec("SELECT 'deployment', name FROM app_deployments WHERE "
                                    "application = $1 UNION ALL SELECT 'rollout', name FROM "
                                    "deployment_rollouts WHERE application = $1 UNION ALL "
                                    "SELECT 'application', name FROM "
                                    "applications WHERE $1 = ANY(depends_on) OR $1 = "
                                    "ANY(supersedes) ORDER BY 1, 2 LIMIT 1",
                                    {req->name()}));
      if (!used.empty())
        return absl::FailedPreconditionError(
            absl::StrCat("application \"", req->name(), "\" is used by ", used.GetString(0, 0),
                         " \"", used.GetString(0, 1), "\": delete or change that first"));
      RETURN_IF_ERROR(
          call.tx.Exec("DELETE FROM applications WHERE name = $1", {req->name()}).status());
      RETURN_IF_ERROR(call.Audit("delete", "application", req->name(), Summary(app)));
      out->set_name(req->name());
      return absl::OkStatus();
    });
  }

 private:
  grpc::Status Save(const grpc::ServerContext& ctx, const char* method, const v1::Application& req,
                    bool create, v1::Application* out) {
    return core_.Run(ctx, method, kUpdate.name, [&](Call& call) -> absl::Status {
      Transaction& tx = call.tx;
      RETURN_IF_ERROR(CheckName("name", req.name()));
      RETURN_IF_ERROR(deploy::CheckApplication(req));
      RETURN_IF_ERROR(CheckNames("depends_on", req.depends_on()));
      std::vector<std::string> scopes = ToVector(req.scopes());
      v1::Application before;
      if (create) {
        ASSIGN_OR_RETURN(Result exists,
                         tx.Exec("SELECT 1 FROM applications WHERE name = $1", {req.name()}));
        if (!exists.empty())
          return absl::AlreadyExistsError(absl::StrCat(
              "application \"", req.name(), "\" already exists (update application changes it)"));
        if (scopes.empty()) scopes = {"Default"};
      } else {
        RETURN_IF_ERROR(ReadApplication(call, req.name(), &before));
        if (scopes.empty()) scopes = ToVector(before.scopes());
        RETURN_IF_ERROR(RequireDeployedWithin(call, req.name()));
      }
      RETURN_IF_ERROR(CheckScopes(tx, call.caller, scopes));
      std::set<std::string> packages;
      RETURN_IF_ERROR(CheckContent(tx, req, &packages));
      RETURN_IF_ERROR(CheckReferences(call, req));
      v1::Application stored = req;
      stored.clear_scopes();
      stored.clear_created_by();
      stored.clear_updated_at();
      std::vector<std::string> superseded;
      for (const auto& s : req.supersedes()) superseded.push_back(s.application());
      store::Params params{req.name(),
                           req.description(),
                           req.publisher(),
                           req.software_version(),
                           collections::ApplicationJson(stored),
                           store::TextArrayLiteral(ToVector(req.depends_on())),
                           store::TextArrayLiteral(superseded),
                           store::TextArrayLiteral({packages.begin(), packages.end()}),
                           store::TextArrayLiteral(scopes),
                           call.caller.name};
      if (!create) params.pop_back();  // created_by stays
      RETURN_IF_ERROR(
          tx.Exec(create ? "INSERT INTO applications (name, description, publisher, "
                           "software_version, definition, depends_on, supersedes, packages, "
                           "scopes, created_by) VALUES ($1, $2, $3, $4, $5, $6::text[], "
                           "$7::text[], $8::text[], $9::text[], $10)"
                         : "UPDATE applications SET description = $2, publisher = $3, "
                           "software_version = $4, definition = $5, depends_on = $6::text[], "
                           "supersedes = $7::text[], packages = $8::text[], scopes = "
                           "$9::text[], updated_at = now() WHERE name = $1",
                  params)
              .status());
      RETURN_IF_ERROR(
          call.Audit(create ? "create" : "update", "application", req.name(), Summary(req)));
      return ReadApplication(call, req.name(), out);
    });
  }

  CallCore& core_;
};

}  // namespace

absl::Status ReadApplication(Call& call, const std::string& name, v1::Application* out) {
  ASSIGN_OR_RETURN(Result r, call.tx.Exec(absl::StrCat(AppSelect(), " WHERE a.name = $1"), {name}));
  if (r.empty()) return absl::NotFoundError(absl::StrCat("no application \"", name, "\""));
  RETURN_IF_ERROR(FillApp(r, 0, out));
  return RequireScopeVisible(call.caller, "application", name, out->scopes());
}

Resource ApplicationsResource() {
  return {"applications", {kRead, kUpdate}, [](const ResourceContext& c) {
            return std::make_unique<ApplicationServiceImpl>(*c.core);
          }};
}

}  // namespace strata::provider
