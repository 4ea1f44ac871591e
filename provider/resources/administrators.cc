// Administrators, and who the caller is
// (proto/strata/v1/admin/administrators.proto).

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"
#include "provider/input.h"
#include "provider/listing.h"
#include "provider/rbac.h"
#include "provider/resource.h"
#include "strata/v1/admin/administrators.grpc.pb.h"

namespace strata::provider {
namespace {

constexpr Permission kRead{"admin.read", "List administrators"};
constexpr Permission kCreate{"admin.create", "Add administrators"};
constexpr Permission kUpdate{"admin.update", "Change administrators' roles, scopes, collections"};
constexpr Permission kDelete{"admin.delete", "Remove administrators"};

class AdministratorServiceImpl final : public v1::AdministratorService::Service {
 public:
  explicit AdministratorServiceImpl(CallCore& core) : core_(core) {}

  grpc::Status WhoAmI(grpc::ServerContext* ctx, const v1::WhoAmIRequest*,
                      v1::Administrator* out) override {
    return core_.Run(*ctx, __func__, "", [&](Call& call) {
      const Caller& c = call.caller;
      out->Clear();
      out->set_name(c.name);
      for (const auto& r : c.roles) out->add_roles(r);
      for (const auto& s : c.scopes) out->add_scopes(s);
      for (const auto& k : c.collections) out->add_collections(k);
      for (const auto& p : c.permissions) out->add_permissions(p);
      return absl::OkStatus();
    });
  }

  grpc::Status ListAdministrators(grpc::ServerContext* ctx, const v1::ListRequest* req,
                                  v1::AdministratorList* out) override {
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) {
      out->Clear();
      ListSpec spec;
      spec.select = "SELECT name, roles::text, scopes::text, collections::text FROM administrators";
      spec.filter_columns = {"name"};
      spec.order = {{"name", "name"}};
      spec.default_order = "name";
      return ListPage(call.tx, *req, spec, {}, out, [&](const Result& r, size_t i) {
        auto* a = out->add_administrators();
        a->set_name(r.GetString(i, 0));
        for (const auto& v : store::ParseTextArray(r.GetString(i, 1))) a->add_roles(v);
        for (const auto& v : store::ParseTextArray(r.GetString(i, 2))) a->add_scopes(v);
        for (const auto& v : store::ParseTextArray(r.GetString(i, 3))) a->add_collections(v);
      });
    });
  }

  // Needs admin.create for a new administrator, admin.update otherwise.
  grpc::Status SetAdministrator(grpc::ServerContext* ctx, const v1::Administrator* req,
                                v1::Administrator* out) override {
    return core_.Run(*ctx, __func__, "", [&](Call& call) -> absl::Status {
      Transaction& tx = call.tx;
      const Caller& c = call.caller;
      out->Clear();
      RETURN_IF_ERROR(CheckName("name", req->name()));
      ASSIGN_OR_RETURN(Result before,
                       tx.Exec("SELECT roles::text, scopes::text, collections::text FROM "
                               "administrators WHERE name = $1 FOR UPDATE",
                               {req->name()}));
      RETURN_IF_ERROR(
          call.Require(before.empty() ? kCreate.name : kUpdate.name, "administrator", req->name()));
      if (req->roles_size() == 0) {
        return absl::InvalidArgumentError("roles: an administrator needs at least one role");
      }
      RETURN_IF_ERROR(CheckNames("roles", req->roles()));
      RETURN_IF_ERROR(CheckNames("scopes", req->scopes()));
      RETURN_IF_ERROR(CheckNames("collections", req->collections()));
      std::vector<std::string> roles = ToVector(req->roles());
      std::vector<std::string> scopes = ToVector(req->scopes());
      std::vector<std::string> colls = ToVector(req->collections());
      if (scopes.empty()) scopes = {"All"};
      if (colls.empty()) colls = {"All Systems"};
      RETURN_IF_ERROR(MustExist(tx, "security_roles", "role", roles));
      std::vector<std::string> named_scopes;
      for (const auto& s : scopes) {
        if (s != "All") named_scopes.push_back(s);
      }
      RETURN_IF_ERROR(MustExist(tx, "security_scopes", "security scope", named_scopes));
      RETURN_IF_ERROR(MustExist(tx, "collections", "collection", colls));
      // Nobody grants more than they hold, or changes their own rights.
      if (req->name() == c.name) {
        return absl::PermissionDeniedError(
            absl::StrCat(c.name,
                         " may not change their own roles, scopes or collections (ask another "
                         "administrator)"));
      }
      std::vector<std::string> target_roles = roles;
      if (!before.empty()) {
        for (const auto& r : store::ParseTextArray(before.GetString(0, 0))) {
          target_roles.push_back(r);
        }
      }
      ASSIGN_OR_RETURN(std::string beyond, Exceeding(tx, c, target_roles));
      if (!beyond.empty()) {
        return absl::PermissionDeniedError(absl::StrCat(c.name,
                                                        " may not give or change roles holding ",
                                                        beyond, ", which ", c.name, " lacks"));
      }
      for (const auto& scope : scopes) {
        if (!c.all_scopes && !c.HoldsScope(scope)) {
          return absl::PermissionDeniedError(absl::StrCat(c.name, " may not give security scope \"",
                                                          scope, "\", which they do not hold"));
        }
      }
      for (const auto& k : colls) RETURN_IF_ERROR(RequireContained(tx, c, k));
      // Created meanwhile by someone else: retried as an update (which needs
      // admin.update), never silently overwritten.
      store::Params values{req->name(), store::TextArrayLiteral(roles),
                           store::TextArrayLiteral(scopes), store::TextArrayLiteral(colls)};
      if (before.empty()) values.emplace_back(c.name);
      ASSIGN_OR_RETURN(
          Result written,
          tx.Exec(before.empty()
                      ? "INSERT INTO administrators (name, roles, scopes, collections, created_by) "
                        "VALUES ($1, $2::text[], $3::text[], $4::text[], $5) ON CONFLICT (name) DO "
                        "NOTHING RETURNING name"
                      : "UPDATE administrators SET roles = $2::text[], scopes = $3::text[], "
                        "collections = $4::text[], updated_at = now() WHERE name = $1 RETURNING "
                        "name",
                  values));
      if (written.empty()) {
        return absl::AbortedError(
            absl::StrCat("administrator ", req->name(), " changed meanwhile; try again"));
      }
      std::string now =
          absl::StrCat("roles=", absl::StrJoin(roles, ","), " scopes=", absl::StrJoin(scopes, ","),
                       " collections=", absl::StrJoin(colls, ","));
      std::string summary =
          before.empty()
              ? now
              : absl::StrCat("roles=", before.GetString(0, 0), " scopes=", before.GetString(0, 1),
                             " collections=", before.GetString(0, 2), " -> ", now);
      RETURN_IF_ERROR(
          call.Audit(before.empty() ? "create" : "update", "administrator", req->name(), summary));
      out->set_name(req->name());
      for (const auto& v : roles) out->add_roles(v);
      for (const auto& v : scopes) out->add_scopes(v);
      for (const auto& v : colls) out->add_collections(v);
      return absl::OkStatus();
    });
  }

  grpc::Status DeleteAdministrator(grpc::ServerContext* ctx, const v1::GetRequest* req,
                                   v1::Deleted* out) override {
    return core_.Run(*ctx, __func__, kDelete.name, [&](Call& call) -> absl::Status {
      Transaction& tx = call.tx;
      const Caller& c = call.caller;
      if (req->name() == c.name) {
        return absl::FailedPreconditionError("an administrator cannot delete themselves");
      }
      ASSIGN_OR_RETURN(Result target, tx.Exec("SELECT roles::text FROM administrators WHERE "
                                              "name = $1 FOR UPDATE",
                                              {req->name()}));
      if (!target.empty()) {
        ASSIGN_OR_RETURN(std::string beyond,
                         Exceeding(tx, c, store::ParseTextArray(target.GetString(0, 0))));
        if (!beyond.empty()) {
          return absl::PermissionDeniedError(absl::StrCat(c.name, " may not delete ", req->name(),
                                                          ", who holds ", beyond, ", which ",
                                                          c.name, " lacks"));
        }
      }
      ASSIGN_OR_RETURN(Result r, tx.Exec("DELETE FROM administrators WHERE name = $1 RETURNING "
                                         "roles::text",
                                         {req->name()}));
      if (r.empty()) {
        return absl::NotFoundError(absl::StrCat("no administrator \"", req->name(), "\""));
      }
      RETURN_IF_ERROR(
          call.Audit("delete", "administrator", req->name(), "roles=" + r.GetString(0, 0)));
      out->set_name(req->name());
      return absl::OkStatus();
    });
  }

 private:
  CallCore& core_;
};

}  // namespace

Resource AdministratorsResource() {
  return {"administrators", {kRead, kCreate, kUpdate, kDelete}, [](const ResourceContext& c) {
            return std::make_unique<AdministratorServiceImpl>(*c.core);
          }};
}

}  // namespace strata::provider
