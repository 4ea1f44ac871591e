// Security roles (proto/strata/v1/admin/roles.proto).

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"
#include "provider/input.h"
#include "provider/listing.h"
#include "provider/resource.h"
#include "strata/v1/admin/roles.grpc.pb.h"

namespace strata::provider {
namespace {

constexpr Permission kRead{"role.read", "List security roles and their permissions"};
constexpr Permission kCreate{"role.create", "Create custom roles (copies of others)"};
constexpr Permission kDelete{"role.delete", "Delete custom roles"};

void FillRole(const Result& r, size_t i, v1::Role* out) {
  out->set_name(r.GetString(i, 0));
  out->set_description(r.GetString(i, 1));
  out->set_builtin(r.GetBool(i, 2));
  for (const auto& p : store::ParseTextArray(r.GetString(i, 3))) out->add_permissions(p);
}

absl::Status ReadRole(Transaction& tx, const std::string& name, v1::Role* out) {
  ASSIGN_OR_RETURN(Result r, tx.Exec("SELECT name, description, builtin, permissions::text FROM "
                                     "security_roles WHERE name = $1",
                                     {name}));
  if (r.empty()) return absl::NotFoundError(absl::StrCat("no role \"", name, "\""));
  out->Clear();
  FillRole(r, 0, out);
  return absl::OkStatus();
}

class RoleServiceImpl final : public v1::RoleService::Service {
 public:
  explicit RoleServiceImpl(CallCore& core) : core_(core) {}

  grpc::Status ListRoles(grpc::ServerContext* ctx, const v1::ListRequest* req,
                         v1::RoleList* out) override {
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) {
      out->Clear();
      ListSpec spec;
      spec.select = "SELECT name, description, builtin, permissions::text FROM security_roles";
      spec.filter_columns = {"name"};
      spec.order = {{"name", "name"}};
      spec.default_order = "name";
      return ListPage(call.tx, *req, spec, {}, out,
                      [&](const Result& r, size_t i) { FillRole(r, i, out->add_roles()); });
    });
  }

  grpc::Status GetRole(grpc::ServerContext* ctx, const v1::GetRequest* req,
                       v1::Role* out) override {
    return core_.Run(*ctx, __func__, kRead.name,
                     [&](Call& call) { return ReadRole(call.tx, req->name(), out); });
  }

  grpc::Status CopyRole(grpc::ServerContext* ctx, const v1::CopyRoleRequest* req,
                        v1::Role* out) override {
    return core_.Run(*ctx, __func__, kCreate.name, [&](Call& call) -> absl::Status {
      const Caller& c = call.caller;
      RETURN_IF_ERROR(CheckName("name", req->name()));
      RETURN_IF_ERROR(CheckText("description", req->description()));
      v1::Role source;
      RETURN_IF_ERROR(ReadRole(call.tx, req->source(), &source));
      const std::vector<std::string>& known = KnownPermissions();
      std::set<std::string> perms(source.permissions().begin(), source.permissions().end());
      if (perms.count("*") && req->remove_permissions_size() > 0) {
        perms = {known.begin(), known.end()};  // expand to remove
      }
      for (const auto& list : {req->add_permissions(), req->remove_permissions()}) {
        for (const auto& p : list) {
          if (std::find(known.begin(), known.end(), p) == known.end()) {
            return absl::InvalidArgumentError(absl::StrCat(
                "unknown permission \"", p, "\" (known: ", absl::StrJoin(known, ", "), ")"));
          }
        }
      }
      for (const auto& p : req->add_permissions()) perms.insert(p);
      for (const auto& p : req->remove_permissions()) perms.erase(p);
      for (const auto& p : perms) {
        if (!c.Has(p)) {
          return absl::PermissionDeniedError(absl::StrCat(c.name, " may not make a role holding ",
                                                          p, ", which ", c.name, " lacks"));
        }
      }
      ASSIGN_OR_RETURN(Result exists,
                       call.tx.Exec("SELECT 1 FROM security_roles WHERE name = $1", {req->name()}));
      if (!exists.empty()) {
        return absl::AlreadyExistsError(absl::StrCat("role \"", req->name(), "\" already exists"));
      }
      std::vector<std::string> list(perms.begin(), perms.end());
      RETURN_IF_ERROR(call.tx
                          .Exec("INSERT INTO security_roles (name, description, permissions) "
                                "VALUES ($1, $2, $3::text[])",
                                {req->name(), req->description(), store::TextArrayLiteral(list)})
                          .status());
      RETURN_IF_ERROR(call.Audit(
          "create", "role", req->name(),
          absl::StrCat("copy of ", req->source(), "; permissions=", absl::StrJoin(list, ","))));
      return ReadRole(call.tx, req->name(), out);
    });
  }

  grpc::Status DeleteRole(grpc::ServerContext* ctx, const v1::GetRequest* req,
                          v1::Deleted* out) override {
    return core_.Run(*ctx, __func__, kDelete.name, [&](Call& call) -> absl::Status {
      v1::Role role;
      RETURN_IF_ERROR(ReadRole(call.tx, req->name(), &role));
      if (role.builtin()) {
        return absl::FailedPreconditionError(
            absl::StrCat("role \"", req->name(), "\" is built in and cannot be deleted"));
      }
      ASSIGN_OR_RETURN(Result users,
                       call.tx.Exec("SELECT string_agg(name, ', ' ORDER BY name) FROM "
                                    "administrators WHERE $1 = ANY(roles)",
                                    {req->name()}));
      if (!users.IsNull(0, 0)) {
        return absl::FailedPreconditionError(
            absl::StrCat("role \"", req->name(), "\" is still held by: ", users.GetString(0, 0)));
      }
      RETURN_IF_ERROR(
          call.tx.Exec("DELETE FROM security_roles WHERE name = $1", {req->name()}).status());
      RETURN_IF_ERROR(call.Audit("delete", "role", req->name(),
                                 "permissions=" + absl::StrJoin(role.permissions(), ",")));
      out->set_name(req->name());
      return absl::OkStatus();
    });
  }

 private:
  CallCore& core_;
};

}  // namespace

Resource RolesResource() {
  return {"roles", {kRead, kCreate, kDelete}, [](const ResourceContext& c) {
            return std::make_unique<RoleServiceImpl>(*c.core);
          }};
}

}  // namespace strata::provider
