// stratactl create rollout, get rollouts, describe rollout, delete rollout

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "provider/stratactl/command.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/rollouts.grpc.pb.h"

namespace strata::ctl {
namespace {

struct RolloutFlags {
  v1::Rollout req;
  std::vector<std::string> phases;
  int success = 0, failure = 0, retries = 0, retry_seconds = 0;
  bool ignore_windows = false;
};

Action CreateRollout(CLI::App* cmd) {
  auto f = std::make_shared<RolloutFlags>();
  cmd->add_option("name", *f->req.mutable_name(),
                  "The rollout's name; phase N's deployment is \"NAME (phase N)\"")
      ->required();
  cmd->add_option("--application", *f->req.mutable_application(), "The application")->required();
  cmd->add_option("--phase", f->phases,
                  "A collection, in the order of the phases (repeatable, 2 to 10)")
      ->required();
  cmd->add_option("--success-percent", f->success,
                  "The next phase starts once this share of a phase's devices installed it "
                  "(default 95)")
      ->check(CLI::Range(1, 100));
  auto* failure =
      cmd->add_option("--failure-percent", f->failure,
                      "More than this share of a phase's devices failed: the rollout halts "
                      "(default 5)")
          ->check(CLI::Range(0, 100));
  auto* retries = cmd->add_option("--max-retries", f->retries,
                                  "Each phase's deployment: tries after a failure (default 3)")
                      ->check(CLI::Range(0, 100));
  cmd->add_option("--retry-seconds", f->retry_seconds, "Wait before a retry (default 600)")
      ->check(CLI::Range(10, 86400));
  cmd->add_flag("--ignore-maintenance-windows", f->ignore_windows,
                "Installs run outside the devices' maintenance windows too");
  return [f, failure, retries](Client& c) {
    for (const auto& p : f->phases) f->req.add_collections(p);
    f->req.set_success_percent(f->success);
    if (failure->count() > 0) f->req.set_failure_percent(f->failure);
    if (retries->count() > 0) f->req.set_max_retries(f->retries);
    f->req.set_retry_seconds(f->retry_seconds);
    f->req.set_ignore_maintenance_windows(f->ignore_windows);
    v1::Rollout out;
    if (int rc = c.Call(&v1::RolloutService::Stub::CreateRollout, f->req, &out)) return rc;
    PrintDone(c.options(),
              absl::StrCat("rollout \"", out.name(), "\": ", out.application(), " to ",
                           absl::StrJoin(out.collections(), " then "), "; phase 1 deployed as \"",
                           out.name(), " (phase 1)\""),
              out);
    return kOk;
  };
}

void DescribeRollout(const Options& o, const v1::Rollout& r) {
  Describe(o, r,
           {{"name", r.name()},
            {"application", r.application()},
            {"phases", absl::StrJoin(r.collections(), " then ")},
            {"success at", absl::StrCat(r.success_percent(), " %")},
            {"halt above", absl::StrCat(r.failure_percent(), " % failed")},
            {"phase", absl::StrCat(r.phase(), " of ", r.collections_size())},
            {"state", r.state()},
            {"reason", r.reason()},
            {"created by", r.created_by()},
            {"updated", r.updated_at()}});
}

}  // namespace

std::vector<Command> RolloutCommands() {
  return {
      {"create",
       "rollout",
       {},
       "A phased rollout: an application to one collection after another",
       CreateRollout,
       "get applications --all"},
      {"get",
       "rollouts",
       {"rollout"},
       "Phased rollouts: the phase under way, running, completed or halted (and why)",
       [](CLI::App*) -> Action {
         return [](Client& c) {
           v1::RolloutList l;
           if (int rc = c.ListAll(&v1::RolloutService::Stub::ListRollouts, &l)) return rc;
           Table t{{"NAME", "APPLICATION", "PHASE", "STATE", "REASON"}, {}};
           for (const auto& r : l.rollouts())
             t.rows.push_back({r.name(), r.application(),
                               absl::StrCat(r.phase(), "/", r.collections_size()), r.state(),
                               r.reason()});
           Show(c.options(), l, l.next_page_token(), t);
           return kOk;
         };
       }},
      {"describe",
       "rollout",
       {},
       "A phased rollout",
       OnName<v1::RolloutService::Stub, v1::Rollout>(&v1::RolloutService::Stub::GetRollout,
                                                     DescribeRollout),
       "get rollouts --all"},
      {"delete",
       "rollout",
       {},
       "A rollout and its phases' deployments",
       DeleteByName(&v1::RolloutService::Stub::DeleteRollout, "rollout"),
       "get rollouts --all"},
  };
}

}  // namespace strata::ctl
