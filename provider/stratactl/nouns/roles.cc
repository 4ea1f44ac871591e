// stratactl get roles, describe role, create role NAME --from ROLE, delete role

#include <memory>

#include "absl/strings/str_cat.h"
#include "provider/stratactl/command.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/roles.grpc.pb.h"

namespace strata::ctl {
namespace {

int List(Client& c) {
  v1::RoleList l;
  if (int rc = c.ListAll(&v1::RoleService::Stub::ListRoles, &l)) return rc;
  Table t{{"NAME", "BUILTIN", "PERMISSIONS", "DESCRIPTION"}, {}};
  for (const auto& r : l.roles()) {
    t.rows.push_back(
        {r.name(), Bool(r.builtin()), absl::StrCat(r.permissions_size()), r.description()});
  }
  Show(c.options(), l, l.next_page_token(), t);
  return kOk;
}

void ShowRole(const Options& o, const v1::Role& r) {
  std::vector<std::vector<std::string>> fields{
      {"name", r.name()}, {"description", r.description()}, {"built in", Bool(r.builtin())}};
  for (const auto& p : r.permissions()) fields.push_back({"permission", p});
  Describe(o, r, fields);
}

Action Create(CLI::App* cmd) {
  struct State {
    std::string name, from, description;
    std::vector<std::string> add, remove;
  };
  auto st = std::make_shared<State>();
  cmd->add_option("name", st->name, "Its name")->required();
  cmd->add_option("--from", st->from, "The role to copy (custom roles are copies)");
  cmd->add_option("--add", st->add, "A permission to add (repeatable)");
  cmd->add_option("--remove", st->remove, "A permission to remove (repeatable)");
  cmd->add_option("--description", st->description, "A description");
  return [st](Client& c) {
    if (st->from.empty()) {
      std::cerr << "stratactl: create role needs --from ROLE (custom roles are copies)\n";
      return kUsage;
    }
    v1::CopyRoleRequest req;
    req.set_source(st->from);
    req.set_name(st->name);
    req.set_description(st->description);
    for (const auto& p : st->add) req.add_add_permissions(p);
    for (const auto& p : st->remove) req.add_remove_permissions(p);
    v1::Role out;
    if (int rc = c.Call(&v1::RoleService::Stub::CopyRole, req, &out)) return rc;
    PrintDone(c.options(),
              absl::StrCat("role \"", out.name(), "\" created (", out.permissions_size(),
                           " permissions)"),
              out);
    return kOk;
  };
}

}  // namespace

std::vector<Command> RoleCommands() {
  const std::string names = "get roles --all";
  return {
      {"get", "roles", {"role"}, "Security roles", [](CLI::App*) -> Action { return List; }},
      {"describe",
       "role",
       {},
       "One security role and its permissions",
       OnName(&v1::RoleService::Stub::GetRole,
              std::function<void(const Options&, const v1::Role&)>(ShowRole)),
       names},
      {"create",
       "role",
       {},
       "A custom role: a copy of another (--from) with --add / --remove",
       Create},
      {"delete",
       "role",
       {},
       "A custom role nobody holds",
       DeleteByName(&v1::RoleService::Stub::DeleteRole, "role"),
       names},
  };
}

}  // namespace strata::ctl
