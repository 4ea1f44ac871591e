#include "primary/collection_loop.h"

#include <chrono>
#include <vector>

#include "common/base/log.h"
#include "common/base/status.h"
#include "common/collections/client_settings.h"
#include "common/collections/evaluator.h"
#include "common/store/database.h"

namespace strata::primary {
namespace {

// Which deployments reach which device, after membership changed: for
// every device the kinds whose deployments changed (all of them on the
// full schedule), and the devices whose membership changed.
absl::Status AssignClientSettings(store::Connection& conn, const std::string& site, bool full,
                                  std::vector<std::string>* seen) {
  ASSIGN_OR_RETURN(std::vector<std::string> versions, collections::DeploymentVersions(conn));
  collections::DeploymentKinds whole;
  int kinds = 0;
  for (size_t i = 0; i < whole.size(); ++i) {
    whole[i] = full || seen->size() != versions.size() || (*seen)[i] != versions[i];
    kinds += whole[i] ? 1 : 0;
  }
  ASSIGN_OR_RETURN(collections::AssignStats stats,
                   collections::AssignClientSettings(conn, site, whole));
  *seen = std::move(versions);
  if (stats.added > 0 || stats.removed > 0) {
    LogInfo("client_settings.assigned", {{"whole_kinds", kinds},
                                         {"devices", stats.devices},
                                         {"added", stats.added},
                                         {"removed", stats.removed}});
  }
  return absl::OkStatus();
}

void Run(const site::SiteJobContext& ctx) {
  const v1::SiteServerConfig& config = ctx.config();
  collections::Evaluator evaluator(config.site_code());
  const auto full_period = std::chrono::seconds(config.collection_full_eval_seconds() > 0
                                                    ? config.collection_full_eval_seconds()
                                                    : kDefaultCollectionFullEvalSeconds);
  auto next_full = std::chrono::steady_clock::now();
  while (!ctx.stopping()) {
    auto conn = store::Connection::Open(config.database());
    absl::Status s = conn.ok() ? (*conn)->Listen("strata_collections") : conn.status();
    std::string seen;  // definitions version last evaluated (this connection)
    std::vector<std::string> seen_deployments;  // deployment versions last resolved
    while (s.ok() && !ctx.stopping()) {
      const bool full = std::chrono::steady_clock::now() >= next_full;
      auto version = evaluator.DefinitionsVersion(**conn);
      if (!version.ok()) {
        s = version.status();
        break;
      }
      absl::StatusOr<collections::EvalStats> changed = collections::EvalStats();
      if (full || *version != seen) changed = evaluator.EvaluateChanged(**conn, full);
      if (!changed.ok()) {
        s = changed.status();
        break;
      }
      seen = *version;
      if (full) next_full = std::chrono::steady_clock::now() + full_period;
      if (changed->collections > 0 || changed->failed > 0) {
        LogInfo("collections.evaluated", {{"full", full},
                                          {"collections", changed->collections},
                                          {"failed", changed->failed},
                                          {"added", changed->added},
                                          {"removed", changed->removed}});
      }
      while (s.ok() && !ctx.stopping()) {
        auto dirty = evaluator.EvaluateDirty(**conn, 1000);
        if (!dirty.ok()) {
          s = dirty.status();
        } else if (dirty->added > 0 || dirty->removed > 0) {
          LogDebug(
              "collections.incremental",
              {{"devices", dirty->devices}, {"added", dirty->added}, {"removed", dirty->removed}});
        }
        if (!dirty.ok() || dirty->devices < 1000) break;
      }
      if (s.ok()) s = AssignClientSettings(**conn, config.site_code(), full, &seen_deployments);
      if (s.ok()) {
        auto n = (*conn)->AwaitNotification(1000);
        if (!n.ok()) s = n.status();
      }
    }
    if (!s.ok() && !ctx.stopping()) LogWarning("collections.evaluation_failed", {{"error", s}});
    ctx.Sleep(absl::Seconds(1));
  }
}

}  // namespace

site::SiteJob CollectionLoop() { return {"collections", Run}; }

}  // namespace strata::primary
