#pragma once

// What a link reads of this site's database besides the WAL
// (wal_reader.h): consistent snapshots for re-initialization, the log's
// identity (its epoch), lag, pruning, the hierarchy below a site. The
// trigger-based change log (repl_log) is no longer written (migration 0004);
// pruning empties what it held.

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

// A position in a site's changes, as the link protocol carries it
// (Watermark's xid and log_id fields): since the WAL capture, xid holds a
// transaction's commit position (an LSN) and log_id the changes of it seen
// (wal_reader.h: WalPosition); (C, kWholeTransaction) covers all of it.
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

struct LogHead {
  int64_t horizon = 0;         // transactions below this xid have finished
  int64_t pruned_through = 0;  // old log rows of transactions below this xid may be gone
  int64_t last_id = 0;         // newest row of the old trigger log
  std::string epoch;           // names this database's changes (see Watermark)
};
absl::StatusOr<LogHead> ReadLogHead(store::Transaction& tx);

// The rows a peer takes, read in the caller's REPEATABLE READ transaction
// (which imported the snapshot of the peer's new slot, WalReader::
// Reinitialize). Rows are handed to `sink` in chunks of `chunk_rows`.
struct SnapshotInfo {
  std::vector<std::string> tables;
};
absl::StatusOr<SnapshotInfo> ReadSnapshot(
    store::Transaction& tx, const PeerFilter& filter, int chunk_rows,
    const std::function<absl::Status(std::vector<v1::Change>&&)>& sink);

// A link's lag: changes the peer has not acknowledged, and the age of the
// oldest (wal_reader.h: PeekLag).
struct Lag {
  int64_t changes = 0;
  double seconds = 0;
};

// Removes rows of the old trigger log every peer in `peers` has
// acknowledged or older than `retention_seconds`, and tombstones past
// retention. Returns the new pruned_through.
absl::StatusOr<int64_t> PruneLog(store::Transaction& tx, int64_t retention_seconds,
                                 const std::vector<std::string>& peers);

// Site codes in the subtree rooted at `code` (itself included), from the
// sites table.
absl::StatusOr<std::vector<std::string>> Subtree(store::Transaction& tx, const std::string& code);

}  // namespace strata::replication
