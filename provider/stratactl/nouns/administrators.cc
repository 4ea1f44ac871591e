// stratactl whoami, get admins, set admin NAME --role ..., delete admin NAME

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "provider/stratactl/command.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/administrators.grpc.pb.h"

namespace strata::ctl {
namespace {

int WhoAmI(Client& c) {
  v1::Administrator a;
  if (int rc = c.Call(&v1::AdministratorService::Stub::WhoAmI, v1::WhoAmIRequest(), &a)) {
    return rc;
  }
  Describe(c.options(), a,
           {{"name", a.name()},
            {"roles", absl::StrJoin(a.roles(), ", ")},
            {"scopes", absl::StrJoin(a.scopes(), ", ")},
            {"collections", absl::StrJoin(a.collections(), ", ")},
            {"permissions", absl::StrJoin(a.permissions(), " ")}});
  return kOk;
}

int List(Client& c) {
  v1::AdministratorList l;
  if (int rc = c.ListAll(&v1::AdministratorService::Stub::ListAdministrators, &l)) return rc;
  Table t{{"NAME", "ROLES", "SCOPES", "COLLECTIONS"}, {}};
  for (const auto& a : l.administrators()) {
    t.rows.push_back({a.name(), absl::StrJoin(a.roles(), ","), absl::StrJoin(a.scopes(), ","),
                      absl::StrJoin(a.collections(), ",")});
  }
  Show(c.options(), l, l.next_page_token(), t);
  return kOk;
}

Action Set(CLI::App* cmd) {
  struct State {
    std::string name;
    std::vector<std::string> roles, scopes, collections;
  };
  auto st = std::make_shared<State>();
  cmd->add_option("name", st->name, "The certificate CN of the administrator")->required();
  cmd->add_option("--role", st->roles, "A security role (repeatable, at least one)")->required();
  cmd->add_option("--scope", st->scopes, "A security scope (repeatable; default All)");
  cmd->add_option("--collection", st->collections,
                  "A collection whose devices they see (default All Systems)");
  return [st](Client& c) {
    v1::Administrator req;
    req.set_name(st->name);
    for (const auto& r : st->roles) req.add_roles(r);
    for (const auto& s : st->scopes) req.add_scopes(s);
    for (const auto& k : st->collections) req.add_collections(k);
    v1::Administrator out;
    if (int rc = c.Call(&v1::AdministratorService::Stub::SetAdministrator, req, &out)) return rc;
    PrintDone(c.options(),
              absl::StrCat("administrator \"", out.name(), "\": roles ",
                           absl::StrJoin(out.roles(), ", ")),
              out);
    return kOk;
  };
}

}  // namespace

std::vector<Command> AdministratorCommands() {
  const std::string names = "get admins --all";
  return {
      {"whoami",
       "",
       {},
       "Your roles, permissions, scopes and collections",
       [](CLI::App*) -> Action { return WhoAmI; }},
      {"get",
       "admins",
       {"admin", "administrators"},
       "Administrators and what they hold",
       [](CLI::App*) -> Action { return List; }},
      {"set",
       "admin",
       {},
       "Create or change an administrator (--role, --scope, --collection)",
       Set,
       names},
      {"delete",
       "admin",
       {},
       "An administrator",
       DeleteByName(&v1::AdministratorService::Stub::DeleteAdministrator, "admin"),
       names},
  };
}

}  // namespace strata::ctl
