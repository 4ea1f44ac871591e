#pragma once

// Applying a peer's changes to this site's database: last writer wins by
// (hlc, origin site), deletes remembered as tombstones, batch and watermark
// in the caller's one transaction (contract items 2 and 8). The caller's
// connection carries the peer's replication origin (OriginName): what is
// applied reaches the WAL marked so, and this site's readers send it on to
// its other peers but never back (item 5).
//
// Everything a peer sends is validated: unknown tables, scopes the peer may
// not send, origins it may not speak for, malformed rows and oversized
// batches are InvalidArgument, and the caller's transaction must then roll back.

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "common/replication/change_log.h"
#include "common/replication/row_values.h"
#include "common/store/database.h"
#include "google/protobuf/repeated_field.h"
#include "strata/v1/site_link.pb.h"

namespace strata::replication {

// A replicated table and the statements that apply changes to it, built once
// from the catalog (repl_scope + pg_attribute).
struct TableInfo {
  std::string name;
  std::string scope;
  std::vector<std::string> key_columns;
  // Every column here, with its type: rows from a site on an older release
  // may lack some (UpsertSql).
  std::vector<std::pair<std::string, std::string>> columns;
  std::vector<ColumnKind> kinds;  // of `columns`, in order
  // Each column's type without its modifier: values are read as this and
  // the INSERT fits them to the column, so a value too long for a
  // varchar(n) is an error, as in any INSERT, not cut by an explicit cast.
  std::vector<std::string> input_types;
  // $1..$n: one text[] per column (row_values.h), with or without the
  // tombstone probe.
  std::string upsert_sql;
  std::string upsert_no_tombstones_sql;
  std::string delete_sql;        // $1: [{"key", "hlc", "origin"}] -> applied keys
  std::string stale_delete_sql;  // snapshot end: $1 origins, $2 in/out -> deleted keys
};

class Catalog {
 public:
  static absl::StatusOr<Catalog> Load(store::Transaction& tx);
  const TableInfo* Find(const std::string& table) const;
  const std::map<std::string, TableInfo>& tables() const { return tables_; }

 private:
  std::map<std::string, TableInfo> tables_;
};

struct ApplyPolicy {
  std::string peer;                          // the sender
  std::vector<std::string> allowed_scopes;   // scopes the peer may send us
  std::vector<std::string> allowed_origins;  // empty: any origin
  int max_changes = 10000;                   // per batch
};

struct ApplyStats {
  int64_t received = 0;
  int64_t applied = 0;
};

// Marks the transaction as an apply: the stamping and tombstone triggers
// step aside (a link's receiving connection sets the same for its session).
absl::Status BeginApply(store::Transaction& tx);

// A batch made ready for the database without it: every change's shape
// checked, runs of one table and operation deduplicated (last change of a
// key wins), each run's statement argument built. Refers into the changes it
// was made from, which must outlive it.
struct PreparedRun {
  const TableInfo* table = nullptr;
  bool is_delete = false;
  std::vector<const v1::Change*> changes;
  std::unordered_map<std::string_view, const v1::Change*> by_key;  // into `changes`
  // The statement's arguments: an upsert's columns as text[] literals (the
  // run's columns, in the table's order), a delete's [{key, hlc, origin}].
  store::Params params;
  // Upserts whose rows lack some of the table's columns (a sender on an
  // older release): the statement for the columns they have, so the others
  // keep their values (or defaults) instead of becoming NULL. Empty: the
  // table's own statements.
  std::string partial_upsert_sql;
  std::string partial_upsert_no_tombstones_sql;
};
struct PreparedBatch {
  int64_t received = 0;
  std::vector<PreparedRun> runs;
};

// The part of applying that needs neither a transaction nor the peer's
// policy, so a reader thread can do it while the previous batch applies.
// `max_changes` bounds the batch. Rows must spell their change's key in
// their key columns; key columns must have one JSON spelling (text, uuid,
// integers, numeric, timestamps, booleans; not floats).
absl::StatusOr<PreparedBatch> PrepareChanges(
    const Catalog& catalog, const google::protobuf::RepeatedPtrField<v1::Change>& changes,
    int max_changes);
// Checks the batch against `policy` (scopes, origins) and applies it in
// order. With `snapshot_keys`, also records the keys for FinishSnapshot.
absl::StatusOr<ApplyStats> ApplyPrepared(store::Transaction& tx, const ApplyPolicy& policy,
                                         const PreparedBatch& batch, bool snapshot_keys);

// PrepareChanges + ApplyPrepared.
absl::StatusOr<ApplyStats> ApplyChanges(
    store::Transaction& tx, const Catalog& catalog, const ApplyPolicy& policy,
    const google::protobuf::RepeatedPtrField<v1::Change>& changes, bool snapshot_keys);

// Snapshot support: StartSnapshot before the first chunk; FinishSnapshot
// deletes the rows of `tables` the snapshot speaks for (by origin: in
// `origins`, or with `origins_exclude` not in them) that it did not contain,
// leaving tombstones (which carry the deletes on). Tables must be ones the peer may send
// (policy.allowed_scopes), else InvalidArgument and nothing is deleted.
absl::Status StartSnapshot(store::Transaction& tx);
absl::StatusOr<int64_t> FinishSnapshot(store::Transaction& tx, const Catalog& catalog,
                                       const ApplyPolicy& policy,
                                       const std::vector<std::string>& tables,
                                       const std::vector<std::string>& origins,
                                       bool origins_exclude);

// Receiver watermark of `peer`'s log, locked for the rest of the transaction.
struct Inbound {
  std::string epoch;
  Position position;
};
absl::StatusOr<std::optional<Inbound>> LockInbound(store::Transaction& tx, const std::string& peer);
absl::Status StoreInbound(store::Transaction& tx, const std::string& peer, const Inbound& inbound);
// Moves `peer`'s watermark forward to `inbound` (same epoch, later position)
// and locks it; false (nothing changed) when there is no watermark, its
// epoch differs, or it is at or past `inbound` already.
absl::StatusOr<bool> AdvanceInbound(store::Transaction& tx, const std::string& peer,
                                    const Inbound& inbound);

// The stamps a row carries: its top-level "_hlc" and "_origin".
struct RowStamps {
  int64_t hlc = 0;
  std::string origin;
};
// True when `json` is exactly one JSON object whose top level has "_hlc" (an
// integer) and "_origin" (a string) once each and no key written with
// escapes (PostgreSQL would decode "\u005fhlc" into a second "_hlc").
// Structure only: values are not decoded. With `key_columns`, also returns
// the key as the change log writes it: "[" + the raw values of those
// columns joined by ", " + "]" (empty if one is missing). With `names`,
// also every top-level key, in order, and with `values` each one's raw
// JSON value.
bool ParseRowObject(std::string_view json, RowStamps* stamps,
                    const std::vector<std::string>* key_columns = nullptr,
                    std::string* key = nullptr, std::vector<std::string_view>* names = nullptr,
                    std::vector<std::string_view>* values = nullptr);

}  // namespace strata::replication
