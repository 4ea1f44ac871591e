// stratactl get dps, get/create/update/delete dp-group, distribute /
// undistribute package, set boundary-group-dps, validate content

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "provider/stratactl/command.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/distribution_points.grpc.pb.h"

namespace strata::ctl {
namespace {

void Fill(google::protobuf::RepeatedPtrField<std::string>* out,
          const std::vector<std::string>& values) {
  for (const auto& v : values) *out->Add() = v;
}

// distribute / undistribute package NAME --dp X --dp-group G
std::function<Action(CLI::App*)> DistributionSetup(bool take_back) {
  return [take_back](CLI::App* cmd) -> Action {
    struct State {
      std::string package;
      std::vector<std::string> dps, groups;
    };
    auto st = std::make_shared<State>();
    cmd->add_option("name", st->package, "The package's name")->required();
    cmd->add_option("--dp", st->dps, "A distribution point (repeat for more)");
    cmd->add_option("--dp-group", st->groups, "A DP group (repeat for more)");
    return [st, take_back](Client& c) {
      v1::Distribution req;
      req.set_package(st->package);
      Fill(req.mutable_dps(), st->dps);
      Fill(req.mutable_groups(), st->groups);
      v1::Distribution out;
      auto method = take_back ? &v1::DistributionPointService::Stub::Undistribute
                              : &v1::DistributionPointService::Stub::Distribute;
      if (int rc = c.Call(method, req, &out)) return rc;
      std::vector<std::string> to;
      for (const auto& d : out.dps()) to.push_back("DP " + d);
      for (const auto& g : out.groups()) to.push_back("DP group " + g);
      PrintDone(
          c.options(),
          absl::StrCat("package \"", out.package(), "\" ",
                       take_back ? "taken back from " : "distributed to ", absl::StrJoin(to, ", "),
                       take_back ? "" : " (get content-status shows where it stands)"),
          out);
      return kOk;
    };
  };
}

}  // namespace

std::vector<Command> DistributionPointCommands() {
  return {
      {"get",
       "dps",
       {"dp", "distribution-points", "distribution-point"},
       "Distribution points: site, state, address, groups, content installed",
       [](CLI::App*) -> Action {
         return [](Client& c) {
           v1::DistributionPointList l;
           if (int rc = c.ListAll(&v1::DistributionPointService::Stub::ListDistributionPoints, &l))
             return rc;
           Table t{
               {"NAME", "SITE", "STATE", "ADDRESS", "GROUPS", "INSTALLED", "LAST_SEEN", "VERSION"},
               {}};
           for (const auto& d : l.distribution_points())
             t.rows.push_back({d.name(), d.site_code(), d.state(), d.address(),
                               absl::StrJoin(d.groups(), ","),
                               absl::StrCat(d.packages_installed(), "/", d.packages_assigned()),
                               d.last_seen_at(), d.version()});
           Show(c.options(), l, l.next_page_token(), t);
           return kOk;
         };
       }},
      {"get",
       "dp-groups",
       {"dp-group"},
       "DP groups and their members",
       [](CLI::App*) -> Action {
         return [](Client& c) {
           v1::DpGroupList l;
           if (int rc = c.ListAll(&v1::DistributionPointService::Stub::ListDpGroups, &l)) return rc;
           Table t{{"NAME", "MEMBERS", "DESCRIPTION"}, {}};
           for (const auto& g : l.groups())
             t.rows.push_back({g.name(), absl::StrJoin(g.members(), ","), g.description()});
           Show(c.options(), l, l.next_page_token(), t);
           return kOk;
         };
       }},
      {"create",
       "dp-group",
       {},
       "A DP group (--dp for each member)",
       [](CLI::App* cmd) -> Action {
         struct State {
           std::string name, description;
           std::vector<std::string> dps;
         };
         auto st = std::make_shared<State>();
         cmd->add_option("name", st->name, "The group's name")->required();
         cmd->add_option("--dp", st->dps, "A member (repeat for more)");
         cmd->add_option("--description", st->description, "What it is for");
         return [st](Client& c) {
           v1::DpGroup req;
           req.set_name(st->name);
           req.set_description(st->description);
           Fill(req.mutable_members(), st->dps);
           v1::DpGroup out;
           if (int rc = c.Call(&v1::DistributionPointService::Stub::CreateDpGroup, req, &out))
             return rc;
           PrintDone(c.options(),
                     absl::StrCat("DP group \"", out.name(), "\" created with ", out.members_size(),
                                  " members"),
                     out);
           return kOk;
         };
       }},
      {"update",
       "dp-group",
       {},
       "Add (--add-dp) or remove (--remove-dp) members",
       [](CLI::App* cmd) -> Action {
         struct State {
           std::string name;
           std::vector<std::string> add, remove;
         };
         auto st = std::make_shared<State>();
         cmd->add_option("name", st->name, "The group's name")->required();
         cmd->add_option("--add-dp", st->add, "A DP to add: it gets the group's content");
         cmd->add_option("--remove-dp", st->remove, "A DP to remove");
         return [st](Client& c) {
           v1::DpGroupChange req;
           req.set_name(st->name);
           Fill(req.mutable_add(), st->add);
           Fill(req.mutable_remove(), st->remove);
           v1::DpGroup out;
           if (int rc = c.Call(&v1::DistributionPointService::Stub::UpdateDpGroup, req, &out))
             return rc;
           PrintDone(
               c.options(),
               absl::StrCat("DP group \"", out.name(), "\": ", absl::StrJoin(out.members(), ", ")),
               out);
           return kOk;
         };
       },
       "get dp-groups --all"},
      {"delete",
       "dp-group",
       {},
       "A DP group (its distributions go with it)",
       DeleteByName(&v1::DistributionPointService::Stub::DeleteDpGroup, "DP group"),
       "get dp-groups --all"},
      {"distribute",
       "package",
       {},
       "Send a package to DPs (--dp) and DP groups (--dp-group)",
       DistributionSetup(false),
       "get packages --all"},
      {"undistribute",
       "package",
       {},
       "Take a package back from DPs and DP groups",
       DistributionSetup(true),
       "get packages --all"},
      {"set",
       "boundary-group-dps",
       {},
       "The DPs of a boundary group, in order (--dp each)",
       [](CLI::App* cmd) -> Action {
         struct State {
           std::string group;
           std::vector<std::string> dps;
         };
         auto st = std::make_shared<State>();
         cmd->add_option("name", st->group, "The boundary group")->required();
         cmd->add_option("--dp", st->dps, "A DP, in the order clients try them (none: clear)");
         return [st](Client& c) {
           v1::BoundaryGroupDps req;
           req.set_boundary_group(st->group);
           Fill(req.mutable_dps(), st->dps);
           v1::BoundaryGroupDps out;
           if (int rc = c.Call(&v1::DistributionPointService::Stub::SetBoundaryGroupDps, req, &out))
             return rc;
           PrintDone(c.options(),
                     absl::StrCat("boundary group \"", out.boundary_group(), "\" uses ",
                                  out.dps().empty() ? "no DP" : absl::StrJoin(out.dps(), ", ")),
                     out);
           return kOk;
         };
       },
       "get boundary-groups --all"},
      {"validate",
       "content",
       {},
       "Re-hash a site's (or --dp's) content library now",
       [](CLI::App* cmd) -> Action {
         struct State {
           std::string site, dp;
         };
         auto st = std::make_shared<State>();
         cmd->add_option("site", st->site, "The site code")->required();
         cmd->add_option("--dp", st->dp, "A distribution point of that site");
         return [st](Client& c) {
           v1::ValidationRequest req;
           req.set_site_code(st->site);
           req.set_dp(st->dp);
           v1::ValidationRequest out;
           if (int rc = c.Call(&v1::DistributionPointService::Stub::ValidateContent, req, &out))
             return rc;
           PrintDone(c.options(),
                     absl::StrCat("validation of ", st->dp.empty() ? "site " + st->site : st->dp,
                                  " requested at ", out.requested_at(),
                                  "; get content-status PACKAGE shows what it finds"),
                     out);
           return kOk;
         };
       },
       "get sites --all"},
  };
}

}  // namespace strata::ctl
