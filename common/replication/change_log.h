#pragma once

// Reading this site's change log (repl_log, see
// migrations/0001_replication.sql) for one peer: batches of finished
// transactions' changes,
// consistent snapshots for re-initialization, lag, and pruning.

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/replication/routing.h"  // ScopesFor
#include "common/store/database.h"
#include "strata/v1/site_link.pb.h"

namespace strata::replication {

inline constexpr int64_t kWholeTransaction = std::numeric_limits<int64_t>::max();

// A position in a change log: every row with (xid, id) up to and including
// (xid, log_id) has been seen. (X, kWholeTransaction) covers all of
// transaction X and below; transactions are only read once finished.
struct Position {
  int64_t xid = 0;
  int64_t log_id = kWholeTransaction;
  friend bool operator<(const Position& a, const Position& b) {
    return a.xid != b.xid ? a.xid < b.xid : a.log_id < b.log_id;
  }
  friend bool operator==(const Position& a, const Position& b) {
    return a.xid == b.xid && a.log_id == b.log_id;
  }
  friend bool operator<=(const Position& a, const Position& b) { return !(b < a); }
};

// What one peer receives from this log.
struct PeerFilter {
  std::string peer;                 // changes received from the peer never go back
  std::vector<std::string> scopes;  // e.g. {"global", "global_proxy"} down to a primary
  // For snapshots: the origins whose rows the peer takes from us.
  std::vector<std::string> origins;
  bool origins_exclude = false;
};

struct LogBatch {
  std::vector<v1::Change> changes;
  std::vector<Position> positions;  // of each change, for cutting a batch short
  Position end;                     // where the next read starts
  int64_t oldest_unix_ms = 0;       // when the oldest change was logged (0: none)
};

// Reads the changes after `after` that pass `filter`, at most `max_changes`
// and about `max_bytes` (at least one change), from finished transactions only. `end` moves past
// filtered-out rows and, when everything was read, up to the finished-transaction horizon.
absl::StatusOr<LogBatch> ReadLog(store::Transaction& tx, const Position& after,
                                 const PeerFilter& filter, int max_changes,
                                 int64_t max_bytes = INT64_MAX);

struct LogHead {
  int64_t horizon = 0;         // transactions below this xid have finished
  int64_t pruned_through = 0;  // log rows of transactions below this xid may be gone
  int64_t last_id = 0;         // newest log row
  std::string epoch;
};
absl::StatusOr<LogHead> ReadLogHead(store::Transaction& tx);

// Whether a peer that has applied up to `applied` (in `epoch`) can resume from
// the log, or must be re-initialized from a snapshot.
bool NeedsSnapshot(const LogHead& head, const std::string& peer_epoch, const Position& applied);

// A consistent snapshot of the rows a peer takes. Must run in a
// REPEATABLE READ transaction: the position and the rows come from one
// snapshot. Rows are handed to `sink` in chunks of `chunk_rows`.
struct SnapshotInfo {
  std::vector<std::string> tables;
  Position end;
};
absl::StatusOr<SnapshotInfo> ReadSnapshot(
    store::Transaction& tx, const PeerFilter& filter, int chunk_rows,
    const std::function<absl::Status(std::vector<v1::Change>&&)>& sink);

struct Lag {
  int64_t changes = 0;
  double seconds = 0;
};
// Changes after `acked` that the peer takes, and the age of the oldest.
absl::StatusOr<Lag> ComputeLag(store::Transaction& tx, const Position& acked,
                               const PeerFilter& filter);

// Removes log rows every peer in `peers` has acknowledged (a peer with no
// acknowledgement holds nothing back: it will need a snapshot anyway), rows
// older than `retention_seconds`, and tombstones past retention. Returns the
// new pruned_through.
absl::StatusOr<int64_t> PruneLog(store::Transaction& tx, int64_t retention_seconds,
                                 const std::vector<std::string>& peers);

// Site codes in the subtree rooted at `code` (itself included), from the
// sites table.
absl::StatusOr<std::vector<std::string>> Subtree(store::Transaction& tx, const std::string& code);

}  // namespace strata::replication
