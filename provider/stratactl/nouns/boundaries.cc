// stratactl get boundaries / boundary-groups, create and delete boundary /
// boundary-group NAME

#include <memory>

#include "absl/strings/str_cat.h"
#include "provider/stratactl/command.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/boundaries.grpc.pb.h"

namespace strata::ctl {
namespace {

int ListBoundaries(Client& c) {
  v1::BoundaryList l;
  if (int rc = c.ListAll(&v1::BoundaryService::Stub::ListBoundaries, &l)) return rc;
  Table t{{"NAME", "VALUE", "GROUP"}, {}};
  for (const auto& b : l.boundaries()) t.rows.push_back({b.name(), b.value(), b.group()});
  Show(c.options(), l, l.next_page_token(), t);
  return kOk;
}

int ListGroups(Client& c) {
  v1::BoundaryGroupList l;
  if (int rc = c.ListAll(&v1::BoundaryService::Stub::ListBoundaryGroups, &l)) return rc;
  Table t{{"NAME", "ASSIGNED_SITE"}, {}};
  for (const auto& g : l.groups()) t.rows.push_back({g.name(), g.assigned_site()});
  Show(c.options(), l, l.next_page_token(), t);
  return kOk;
}

Action CreateBoundary(CLI::App* cmd) {
  struct State {
    std::string name, value, group;
  };
  auto st = std::make_shared<State>();
  cmd->add_option("name", st->name, "Its name")->required();
  cmd->add_option("--value", st->value, "A subnet (10.1.0.0/16) or a range (10.1.0.10-10.1.0.200)")
      ->required();
  cmd->add_option("--group", st->group, "Its boundary group")->required();
  return [st](Client& c) {
    v1::Boundary req;
    req.set_name(st->name);
    req.set_value(st->value);
    req.set_group(st->group);
    v1::Boundary out;
    if (int rc = c.Call(&v1::BoundaryService::Stub::CreateBoundary, req, &out)) return rc;
    PrintDone(
        c.options(),
        absl::StrCat("boundary \"", out.name(), "\" created: ", out.value(), " -> ", out.group()),
        out);
    return kOk;
  };
}

Action CreateGroup(CLI::App* cmd) {
  struct State {
    std::string name, site;
  };
  auto st = std::make_shared<State>();
  cmd->add_option("name", st->name, "Its name")->required();
  cmd->add_option("--site", st->site, "The site it assigns clients to")->required();
  return [st](Client& c) {
    v1::BoundaryGroup req;
    req.set_name(st->name);
    req.set_assigned_site(st->site);
    v1::BoundaryGroup out;
    if (int rc = c.Call(&v1::BoundaryService::Stub::CreateBoundaryGroup, req, &out)) return rc;
    PrintDone(c.options(),
              absl::StrCat("boundary group \"", out.name(), "\" created: clients go to ",
                           out.assigned_site()),
              out);
    return kOk;
  };
}

}  // namespace

std::vector<Command> BoundaryCommands() {
  return {
      {"get",
       "boundaries",
       {"boundary"},
       "Boundaries: subnets and ranges, by boundary group",
       [](CLI::App*) -> Action { return ListBoundaries; }},
      {"get",
       "boundary-groups",
       {"boundary-group"},
       "Boundary groups and their assigned sites",
       [](CLI::App*) -> Action { return ListGroups; }},
      {"create", "boundary", {}, "A boundary (--value, --group)", CreateBoundary},
      {"create", "boundary-group", {}, "A boundary group (--site)", CreateGroup},
      {"delete",
       "boundary",
       {},
       "A boundary",
       DeleteByName(&v1::BoundaryService::Stub::DeleteBoundary, "boundary"),
       "get boundaries --all"},
      {"delete",
       "boundary-group",
       {},
       "A boundary group without boundaries",
       DeleteByName(&v1::BoundaryService::Stub::DeleteBoundaryGroup, "boundary-group"),
       "get boundary-groups --all"},
  };
}

}  // namespace strata::ctl
