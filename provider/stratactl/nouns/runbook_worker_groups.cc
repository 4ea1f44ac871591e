// stratactl create|update worker-group NAME --site S --collection C,
// get worker-groups, describe worker-group, delete worker-group

#include <iostream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "provider/stratactl/command.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/runbook_worker_groups.grpc.pb.h"

namespace strata::ctl {
namespace {

using Stub = v1::RunbookWorkerGroupService::Stub;

Action SaveGroup(CLI::App* cmd, bool create) {
  auto g = std::make_shared<v1::RunbookWorkerGroup>();
  auto lease = std::make_shared<std::string>();
  auto per_worker = std::make_shared<int>(0), max_jobs = std::make_shared<int>(0);
  cmd->add_option("name", *g->mutable_name(), "The group's name")->required();
  cmd->add_option("--site", *g->mutable_site(),
                  "The primary or secondary site whose clients are its workers (it dispatches "
                  "the group's jobs)")
      ->required();
  cmd->add_option("--collection", *g->mutable_collection(),
                  "Its workers: this collection's members (direct members name devices one by "
                  "one)")
      ->required();
  cmd->add_option("--description", *g->mutable_description(), "What the group is for");
  cmd->add_option("--max-jobs-per-worker", *per_worker, "Jobs one worker runs at once (default 30)")
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--max-jobs", *max_jobs,
                  "Jobs of the group at once (default 0: no limit beyond the workers')")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--lease", *lease,
                  "A worker keeps a job while it renews its lease within this: 60, 30s, 5m "
                  "(default 60s, 10s to 1h)");
  auto scopes = std::make_shared<std::vector<std::string>>();
  cmd->add_option("--scope", *scopes, "Security scopes (default: Default); repeatable");
  return [g, lease, scopes, per_worker, max_jobs, create](Client& c) {
    g->set_max_jobs_per_worker(*per_worker);
    g->set_max_jobs(*max_jobs);
    if (!lease->empty()) {
      const int64_t s = ParseDuration(*lease);
      if (s <= 0) {
        std::cerr << "stratactl: --lease " << *lease << ": seconds, or 30s, 5m\n";
        return kUsage;
      }
      g->set_lease_seconds(static_cast<int32_t>(std::min<int64_t>(s, 1 << 30)));
    }
    for (const auto& x : *scopes) g->add_scopes(x);
    v1::RunbookWorkerGroup out;
    if (int rc = c.Call(create ? &Stub::CreateRunbookWorkerGroup : &Stub::UpdateRunbookWorkerGroup,
                        *g, &out))
      return rc;
    PrintDone(c.options(),
              absl::StrCat("worker group \"", out.name(), "\" ", create ? "created" : "updated",
                           ": ", out.workers(), " workers at this site's view"),
              out);
    return kOk;
  };
}

void DescribeGroup(const Options& o, const v1::RunbookWorkerGroup& g) {
  Describe(o, g,
           {{"name", g.name()},
            {"description", g.description()},
            {"site", g.site()},
            {"collection", g.collection()},
            {"workers", absl::StrCat(g.workers())},
            {"jobs per worker", absl::StrCat(g.max_jobs_per_worker())},
            {"jobs in all", g.max_jobs() == 0 ? "no limit" : absl::StrCat(g.max_jobs())},
            {"lease", Duration(g.lease_seconds())},
            {"jobs queued", absl::StrCat(g.jobs_queued())},
            {"jobs running", absl::StrCat(g.jobs_running())},
            {"scopes", absl::StrJoin(g.scopes(), ", ")},
            {"created by", g.created_by()},
            {"updated", g.updated_at()}});
}

}  // namespace

std::vector<Command> RunbookWorkerGroupCommands() {
  const std::string names = "get worker-groups --all";
  return {
      {"get",
       "worker-groups",
       {"worker-group"},
       "Runbook worker groups: their site, workers and jobs",
       [](CLI::App*) -> Action {
         return [](Client& c) {
           v1::RunbookWorkerGroupList l;
           if (int rc = c.ListAll(&Stub::ListRunbookWorkerGroups, &l)) return rc;
           Table t{{"NAME", "SITE", "COLLECTION", "WORKERS", "QUEUED", "RUNNING", "LEASE"}, {}};
           for (const auto& g : l.groups())
             t.rows.push_back({g.name(), g.site(), g.collection(), absl::StrCat(g.workers()),
                               absl::StrCat(g.jobs_queued()), absl::StrCat(g.jobs_running()),
                               Duration(g.lease_seconds())});
           Show(c.options(), l, l.next_page_token(), t);
           return kOk;
         };
       }},
      {"describe",
       "worker-group",
       {},
       "A runbook worker group",
       OnName<Stub, v1::RunbookWorkerGroup>(&Stub::GetRunbookWorkerGroup, DescribeGroup),
       names},
      {"create",
       "worker-group",
       {},
       "A runbook worker group (--site, --collection)",
       [](CLI::App* cmd) { return SaveGroup(cmd, true); }},
      {"update",
       "worker-group",
       {},
       "A runbook worker group (every flag, as create)",
       [](CLI::App* cmd) { return SaveGroup(cmd, false); },
       names},
      {"delete",
       "worker-group",
       {},
       "A runbook worker group with no job queued or under way",
       DeleteByName(&Stub::DeleteRunbookWorkerGroup, "worker group"),
       names},
  };
}

}  // namespace strata::ctl
