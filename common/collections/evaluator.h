#pragma once

// Collection membership evaluation at a primary, for its own devices.
//
// A collection's members are
//   limiting ∩ (query rules ∪ direct members ∪ included collections)
//            − excluded collections
// (All Systems: every device of the site). Collections are evaluated in
// dependency order (limiting, include and exclude references first); a
// reference cycle or a broken query marks the collections involved as failed
// (collection_eval.error) and leaves their membership as it was.
//
// Full evaluation recomputes whole collections: those whose definition
// changed since their last evaluation (and everything depending on them), or
// all of them on the full schedule. Incremental evaluation recomputes every
// collection for the devices queued in collection_dirty (by triggers on the
// device and inventory tables) and drains that queue. Both write only the
// difference to collection_members, in the caller's connection, one
// transaction per step. Not thread-safe: one evaluator per site.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/store/database.h"

namespace strata::collections {

struct EvalStats {
  int collections = 0;  // evaluated
  int failed = 0;       // skipped: broken definition or cycle
  int64_t added = 0;
  int64_t removed = 0;
  int devices = 0;  // incremental: devices re-evaluated
};

class Evaluator {
 public:
  explicit Evaluator(std::string site_code) : site_(std::move(site_code)) {}

  // Full evaluation of the collections whose definition changed (all of
  // them if `all`), each in its own transaction.
  absl::StatusOr<EvalStats> EvaluateChanged(store::Connection& conn, bool all);

  // A value that changes whenever any definition (collection or rule)
  // changes, here or by replication: cheap enough to ask every second.
  absl::StatusOr<std::string> DefinitionsVersion(store::Connection& conn);

  // Incremental evaluation of up to `max_devices` queued devices, in one
  // transaction that also removes them from the queue.
  absl::StatusOr<EvalStats> EvaluateDirty(store::Connection& conn, int max_devices = 1000);

  // Incremental evaluation of `device_ids` inside `tx` (the queue untouched).
  absl::StatusOr<EvalStats> EvaluateDevices(store::Transaction& tx,
                                            const std::vector<std::string>& device_ids);

 private:
  const std::string site_;
};

// Why `text` cannot be a rule of collection `collection`, given the current
// definitions (reads them through `tx`): a bad query, an unknown collection,
// or a reference that would close a cycle. OK when it can.
absl::Status CheckRule(store::Transaction& tx, const std::string& collection,
                       const std::string& kind, const std::string& query_or_ref);

}  // namespace strata::collections
