#pragma once

// This site's changes for one peer, read from the write-ahead log: the
// peer's logical slot (SlotName), the publications of the scopes the peer
// takes (Publications; deletes travel as the tombstones repl_tombstone
// records, in kTombstonePublication), without the transactions this site
// applied from that peer (they carry its replication origin, OriginName).
// Rows and keys are spelled as the trigger-based log spelled them
// (wal_rows.h), so the applier and the link protocol are unchanged.
//
// Positions: a transaction is named by where its commit record starts (the
// order of commits); (commit, n) is its n-th change and (commit,
// kWholeTransaction) all of it. The slot's confirmed position is the last
// acknowledged position's ResumeLsn(): a transaction acknowledged in part is
// sent again after a reconnection and its applied changes skipped.
//
// A WalReader is used by one thread at a time.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/replication/applier.h"
#include "common/replication/change_log.h"
#include "common/replication/wal_rows.h"
#include "common/store/database.h"
#include "common/store/wal_stream.h"
#include "strata/v1/site_link.pb.h"

namespace strata::replication {

// Slots and replication origins are the database cluster's, not one
// database's: their names hold the site's code too.
// "strata_cas_to_p01": the slot site CAS streams to peer P01.
std::string SlotName(const std::string& site, const std::string& peer);
// "strata_p01_from_cas": the replication origin of changes P01 applied from CAS.
std::string OriginName(const std::string& site, const std::string& peer);
// The publications a reader of `scopes` streams: each scope's tables'
// ("strata_global", ...) and the tombstones' (deletes), kTombstonePublication.
std::vector<std::string> Publications(const std::vector<std::string>& scopes);
inline constexpr char kTombstonePublication[] = "strata_tombstones";

struct WalPosition {
  int64_t commit = 0;                 // the commit record's start (an LSN)
  int64_t index = kWholeTransaction;  // changes of that transaction seen
  friend bool operator<(const WalPosition& a, const WalPosition& b) {
    return a.commit != b.commit ? a.commit < b.commit : a.index < b.index;
  }
  friend bool operator==(const WalPosition& a, const WalPosition& b) {
    return a.commit == b.commit && a.index == b.index;
  }
  friend bool operator<=(const WalPosition& a, const WalPosition& b) { return !(b < a); }
  // Where the slot's stream must start for the changes after this position:
  // a transaction cut short comes again whole (what was applied of it is
  // skipped by index), a finished one does not.
  int64_t ResumeLsn() const { return index == kWholeTransaction ? commit + 1 : commit; }
};

struct WalBatch {
  std::vector<v1::Change> changes;
  WalPosition end;             // where the next read starts
  int64_t oldest_unix_ms = 0;  // commit time of the oldest change (0: none)
  bool full = false;           // stopped at a limit, not for want of changes
};

// The state of a peer's slot.
struct SlotState {
  bool exists = false;
  bool lost = false;      // its WAL was removed (max_slot_wal_keep_size)
  int64_t confirmed = 0;  // confirmed_flush_lsn
  int64_t wal_bytes = 0;  // WAL written since it: the lag in bytes
};
absl::StatusOr<SlotState> ReadSlot(store::Transaction& tx, const std::string& slot);

// Why a peer that applied this site's changes up to `applied` (in log
// epoch `peer_epoch`) must be re-initialized from a snapshot rather than
// resume from its slot; nullptr when it can resume.
const char* SnapshotReason(const SlotState& slot, const std::string& peer_epoch,
                           const std::string& my_epoch, const WalPosition& applied);

// What a peer's slot holds for it while no session streams it: changes
// (inserts and updates of its scopes' tables and tombstones, counted up to
// `max_messages` messages decoded), and the age of the oldest. Unavailable
// while a session streams the slot (its own counts are the lag then).
absl::StatusOr<Lag> PeekLag(store::Transaction& tx, const std::string& site,
                            const PeerFilter& filter, int max_messages = 100000);

// Drops the slots of `site` that no session uses whose peer is not in
// `peers` (no longer in the hierarchy) or has not been in contact for
// `retention_seconds` (repl_outbound.updated_at: the start and end of each
// session and its acknowledgements, so a slot being filled by a long
// snapshot is not taken away): their WAL is not kept forever, and such a
// peer is re-initialized from a snapshot when it comes back. A slot with no
// contact recorded at all (none is made without a session) is kept.
// Returns how many went.
absl::StatusOr<int64_t> DropLapsedSlots(store::Transaction& tx, const std::string& site,
                                        int64_t retention_seconds,
                                        const std::vector<std::string>& peers);

class WalReader {
 public:
  // `site` is this site, `filter.peer` the peer: they name the slot and the
  // origin to leave out; `filter.scopes` the publications. `conninfo` must
  // allow replication connections.
  static absl::StatusOr<std::unique_ptr<WalReader>> Open(const std::string& conninfo,
                                                         const std::string& site,
                                                         const PeerFilter& filter,
                                                         const Catalog& catalog, TypeMap types);
  ~WalReader();

  // Makes the slot anew (dropping the old one) and calls `read_snapshot`
  // with the name of the snapshot exported at its consistent point, which
  // the callee imports (SET TRANSACTION SNAPSHOT) to read the tables: the
  // snapshot and the stream after `*end` together hold every change once.
  absl::Status Reinitialize(const std::function<absl::Status(const std::string&)>& read_snapshot,
                            WalPosition* end);

  // Starts streaming after `after` (changes at or before it are skipped).
  absl::Status Start(const WalPosition& after);

  // Up to `max_changes` changes and about `max_bytes` (at least one change),
  // waiting up to `wait` for the first message. Stops at a transaction's end
  // when it can, else cuts the transaction (the end names its last change).
  // When nothing is pending, `end` moves up to the server's position even
  // without changes (other scopes, the peer's own changes, other tables).
  absl::StatusOr<WalBatch> Read(int max_changes, int64_t max_bytes, absl::Duration wait);

  // The peer applied everything up to `acked`: the slot may let go of the
  // WAL before acked.ResumeLsn().
  absl::Status Confirm(const WalPosition& acked);

  // Tells the server the reader is alive while it does not read (a sender
  // waiting for acknowledgements), at most every few seconds: a walsender
  // ends a stream that says nothing for wal_sender_timeout.
  absl::Status KeepAlive();

 private:
  WalReader(const std::string& site, PeerFilter filter, const Catalog& catalog, TypeMap types);
  // Appends the change an insert or update of `e` makes, if the peer takes it.
  absl::Status AddChange(const store::WalEvent& e, WalBatch& batch, int64_t* bytes);
  // The current row of `table` with `key`, if it still has the version
  // (hlc, origin): to fill in values an update left out of the WAL.
  absl::StatusOr<std::optional<std::string>> CurrentRow(const TableInfo& table,
                                                        const store::WalEvent& e, int64_t hlc,
                                                        const std::string& origin);

  const PeerFilter filter_;
  const Catalog& catalog_;
  const TypeMap types_;
  const std::string slot_;
  const std::string skip_origin_;
  std::string conninfo_;
  std::unique_ptr<store::WalStream> stream_;
  store::ConnectionPtr conn_;  // slots and rows
  store::PgOutputDecoder decoder_;
  WalPosition after_;     // changes at or before it were delivered before
  WalPosition position_;  // the last position read
  bool in_transaction_ = false;
  bool skip_transaction_ = false;
  int64_t commit_unix_ms_ = 0;
};

}  // namespace strata::replication
