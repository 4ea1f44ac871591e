#include "common/replication/wal_reader.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"

namespace strata::replication {
namespace {

// How long a transaction already begun may keep the reader waiting for its
// next message before the batch is cut inside it.
constexpr absl::Duration kInTransactionWait = absl::Seconds(1);

std::string StampText(const store::WalRelation& rel, const store::WalTuple& tuple,
                      const char* column) {
  for (size_t i = 0; i < rel.columns.size() && i < tuple.size(); ++i) {
    if (rel.columns[i].name == column && tuple[i].kind == store::WalValue::kText) {
      return tuple[i].text;
    }
  }
  return {};
}

}  // namespace

std::string SlotName(const std::string& site, const std::string& peer) {
  return absl::AsciiStrToLower(absl::StrCat("strata_", site, "_to_", peer));
}
std::string OriginName(const std::string& site, const std::string& peer) {
  return absl::AsciiStrToLower(absl::StrCat("strata_", site, "_from_", peer));
}
std::vector<std::string> Publications(const std::vector<std::string>& scopes) {
  std::vector<std::string> out = {kTombstonePublication};
  for (const auto& scope : scopes) out.push_back(absl::StrCat("strata_", scope));
  return out;
}

absl::StatusOr<SlotState> ReadSlot(store::Transaction& tx, const std::string& slot) {
  ASSIGN_OR_RETURN(
      store::Result r,
      tx.Exec("SELECT coalesce(wal_status = 'lost', false), "
              "(confirmed_flush_lsn - '0/0'::pg_lsn)::bigint, "
              "coalesce((pg_current_wal_lsn() - confirmed_flush_lsn)::bigint, 0) "
              "FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()",
              {slot}));
  SlotState s;
  if (r.empty()) return s;
  s.exists = true;
  s.lost = r.GetBool(0, 0);
  s.confirmed = r.GetInt(0, 1);
  s.wal_bytes = r.GetInt(0, 2);
  return s;
}

const char* SnapshotReason(const SlotState& slot, const std::string& peer_epoch,
                           const std::string& my_epoch, const WalPosition& applied) {
  if (peer_epoch.empty()) return "new peer";
  if (peer_epoch != my_epoch) return "peer knows another log epoch";
  if (!slot.exists) return "no slot for the peer";
  if (slot.lost) return "the peer's slot lost its WAL";
  // The slot resends from its confirmed commit on; anything before it that
  // the peer has not applied is gone.
  if (applied.ResumeLsn() < slot.confirmed) return "peer is behind its slot";
  return nullptr;
}

absl::StatusOr<Lag> PeekLag(store::Transaction& tx, const std::string& site,
                            const PeerFilter& filter, int max_messages) {
  const std::string names = absl::StrJoin(Publications(filter.scopes), ",");
  // pgoutput messages: 'B' begin (its commit time at byte 9), 'O' origin
  // (the peer's own changes are not sent back), 'I' / 'U' changes.
  ASSIGN_OR_RETURN(
      store::Result r,
      tx.Exec(
          "WITH m AS (SELECT xid, data FROM pg_logical_slot_peek_binary_changes($1, NULL, "
          "$2::int, 'proto_version', '1', 'publication_names', $3)), "
          "own AS (SELECT DISTINCT xid FROM m WHERE get_byte(data, 0) = 79 AND "
          "position(convert_to($4, 'UTF8') IN data) > 0), "
          "c AS (SELECT xid FROM m WHERE get_byte(data, 0) IN (73, 85) AND xid NOT IN "
          "(SELECT xid FROM own)) "
          "SELECT (SELECT count(*) FROM c), (SELECT extract(epoch FROM clock_timestamp()) - "
          "(min(('x' || encode(substring(data FROM 10 FOR 8), 'hex'))::bit(64)::bigint) / "
          "1e6 + 946684800) FROM m WHERE get_byte(data, 0) = 66 AND xid IN (SELECT xid FROM c))",
          {SlotName(site, filter.peer), std::to_string(max_messages), names,
           OriginName(site, filter.peer)}));
  Lag lag;
  lag.changes = r.GetInt(0, 0);
  if (!r.IsNull(0, 1)) lag.seconds = std::max(0.0, std::stod(r.GetString(0, 1)));
  return lag;
}

absl::StatusOr<int64_t> DropLapsedSlots(store::Transaction& tx, const std::string& site,
                                        int64_t retention_seconds,
                                        const std::vector<std::string>& peers) {
  std::vector<std::string> slots;
  for (const auto& p : peers) slots.push_back(SlotName(site, p));
  ASSIGN_OR_RETURN(
      store::Result r,
      tx.Exec(
          "SELECT count(pg_drop_replication_slot(s.slot_name)) FROM pg_replication_slots s "
          "LEFT JOIN repl_outbound o ON $1 || lower(o.peer) = s.slot_name "
          "WHERE s.database = current_database() AND NOT s.active AND "
          "starts_with(s.slot_name, $1) AND (NOT s.slot_name = ANY($2::text[]) OR "
          "o.updated_at < now() - make_interval(secs => $3))",
          {SlotName(site, ""), store::TextArrayLiteral(slots), std::to_string(retention_seconds)}));
  return r.GetInt(0, 0);
}

WalReader::WalReader(const std::string& site, PeerFilter filter, const Catalog& catalog,
                     TypeMap types)
    : filter_(std::move(filter)),
      catalog_(catalog),
      types_(std::move(types)),
      slot_(SlotName(site, filter_.peer)),
      skip_origin_(OriginName(site, filter_.peer)) {}

WalReader::~WalReader() = default;

absl::StatusOr<std::unique_ptr<WalReader>> WalReader::Open(const std::string& conninfo,
                                                           const std::string& site,
                                                           const PeerFilter& filter,
                                                           const Catalog& catalog, TypeMap types) {
  std::unique_ptr<WalReader> r(new WalReader(site, filter, catalog, std::move(types)));
  r->conninfo_ = conninfo;
  ASSIGN_OR_RETURN(r->stream_, store::WalStream::Open(conninfo));
  ASSIGN_OR_RETURN(r->conn_, store::Connection::Open(conninfo));
  return r;
}

absl::Status WalReader::Reinitialize(
    const std::function<absl::Status(const std::string&)>& read_snapshot, WalPosition* end) {
  const std::string& slot = slot_;
  // A slot in use by an earlier session of this link (not yet gone) cannot
  // be dropped: pg_drop_replication_slot waits for it.
  RETURN_IF_ERROR(conn_
                      ->Exec("SELECT pg_drop_replication_slot(slot_name) FROM "
                             "pg_replication_slots WHERE slot_name = $1 AND database = "
                             "current_database()",
                             {slot})
                      .status());
  ASSIGN_OR_RETURN(store::CreatedSlot created, stream_->CreateSlot(slot, true));
  RETURN_IF_ERROR(read_snapshot(created.snapshot));
  // The snapshot holds every transaction committed before the consistent
  // point: the stream starts with a commit there (none of it seen yet), and
  // the slot's confirmed position is that point.
  *end = WalPosition{static_cast<int64_t>(created.consistent_point), 0};
  return absl::OkStatus();
}

absl::Status WalReader::Start(const WalPosition& after) {
  after_ = after;
  position_ = after;
  // The server sends the transactions whose commit starts at or after the
  // start: a transaction cut short comes again whole (what was applied of
  // it is skipped by position), a finished one does not.
  const int64_t from = after.ResumeLsn();
  return stream_->Start(slot_, static_cast<store::Lsn>(std::max<int64_t>(from, 0)),
                        Publications(filter_.scopes));
}

absl::Status WalReader::Confirm(const WalPosition& acked) {
  // A transaction acknowledged in part comes again after a reconnection:
  // the reader skips what was applied.
  if (acked.commit <= 0) return absl::OkStatus();
  return stream_->Confirm(static_cast<store::Lsn>(acked.ResumeLsn()));
}

absl::Status WalReader::KeepAlive() { return stream_->KeepAlive(); }

absl::StatusOr<std::optional<std::string>> WalReader::CurrentRow(const TableInfo& table,
                                                                 const store::WalEvent& e,
                                                                 int64_t hlc,
                                                                 const std::string& origin) {
  std::string sql = absl::StrCat("SELECT to_json(t)::text FROM ", store::QuoteIdent(table.name),
                                 " t WHERE t._hlc = $1 AND t._origin = $2");
  store::Params params = {std::to_string(hlc), origin};
  for (const std::string& k : table.key_columns) {
    const std::string v = StampText(*e.relation, e.new_tuple, k.c_str());
    params.push_back(v);
    absl::StrAppend(&sql, " AND t.", store::QuoteIdent(k), " = $", params.size());
  }
  ASSIGN_OR_RETURN(store::Result r, conn_->Exec(sql, params));
  if (r.empty()) return std::optional<std::string>();
  return std::optional<std::string>(r.GetString(0, 0));
}

absl::Status WalReader::AddChange(const store::WalEvent& e, WalBatch& batch, int64_t* bytes) {
  const store::WalRelation& rel = *e.relation;
  if (rel.schema != "public") return absl::OkStatus();
  v1::Change c;
  if (rel.name == "repl_tombstone") {
    // A delete (or a key moved away): the tombstone says which, and when.
    const TableInfo* table = catalog_.Find(StampText(rel, e.new_tuple, "tbl"));
    if (table == nullptr || std::find(filter_.scopes.begin(), filter_.scopes.end(), table->scope) ==
                                filter_.scopes.end()) {
      return absl::OkStatus();
    }
    c.set_table(table->name);
    c.set_op(v1::CHANGE_OP_DELETE);
    c.set_key(StampText(rel, e.new_tuple, "key"));
    int64_t hlc = 0;
    (void)absl::SimpleAtoi(StampText(rel, e.new_tuple, "hlc"), &hlc);
    c.set_hlc(hlc);
    c.set_origin_site(StampText(rel, e.new_tuple, "origin"));
  } else {
    const TableInfo* table = catalog_.Find(rel.name);
    if (table == nullptr) return absl::OkStatus();  // published, not replicated (yet)
    c.set_table(rel.name);
    c.set_op(v1::CHANGE_OP_UPSERT);
    int64_t hlc = 0;
    (void)absl::SimpleAtoi(StampText(rel, e.new_tuple, "_hlc"), &hlc);
    c.set_hlc(hlc);
    c.set_origin_site(StampText(rel, e.new_tuple, "_origin"));
    ASSIGN_OR_RETURN(std::string key, KeyJson(types_, rel, e.new_tuple, table->key_columns));
    c.set_key(std::move(key));
    bool complete = true;
    std::string row = RowJson(types_, rel, e.new_tuple, &complete);
    if (!complete) {
      // An update left a large value out: it is the current row's if the row
      // still has this version; otherwise a later change follows anyway.
      ASSIGN_OR_RETURN(std::optional<std::string> current,
                       CurrentRow(*table, e, c.hlc(), c.origin_site()));
      if (!current) return absl::OkStatus();
      row = std::move(*current);
    }
    c.set_row_json(std::move(row));
  }
  *bytes += static_cast<int64_t>(c.ByteSizeLong());
  if (batch.oldest_unix_ms == 0) batch.oldest_unix_ms = commit_unix_ms_;
  batch.changes.push_back(std::move(c));
  return absl::OkStatus();
}

absl::StatusOr<WalBatch> WalReader::Read(int max_changes, int64_t max_bytes, absl::Duration wait) {
  WalBatch batch;
  batch.end = position_;
  int64_t bytes = 0;
  absl::Duration next_wait = wait;
  batch.full = true;  // unless the stream runs dry first
  while (static_cast<int>(batch.changes.size()) < max_changes &&
         (batch.changes.empty() || bytes < max_bytes)) {
    // (Not ASSIGN_OR_RETURN: GCC 12 with the sanitizers then warns that the
    // moved-from optional's string may be used uninitialized.)
    absl::StatusOr<std::optional<store::WalMessage>> next = stream_->Next(next_wait);
    if (!next.ok()) return next.status();
    const std::optional<store::WalMessage>& m = *next;
    if (!m) {
      if (in_transaction_ && next_wait < kInTransactionWait) {
        next_wait = kInTransactionWait;  // the rest of it is on its way
        continue;
      }
      if (!in_transaction_ && stream_->server_wal_end() > 0) {
        // Caught up: everything before the server's position was sent.
        const WalPosition idle{static_cast<int64_t>(stream_->server_wal_end()) - 1,
                               kWholeTransaction};
        if (position_ < idle) position_ = idle;
        batch.end = position_;
      }
      batch.full = false;
      break;
    }
    next_wait = absl::ZeroDuration();
    if (skip_transaction_ && !m->data.empty() &&
        (m->data[0] == 'I' || m->data[0] == 'U' || m->data[0] == 'D')) {
      // A change of the peer's own, sent back by a walsender that cannot
      // leave it out (PostgreSQL 15's pgoutput has no origin filter): counted
      // for the position, not decoded. On a link where the peer writes as
      // much as this site, that is half of what the reader receives.
      ++position_.index;
      batch.end = position_;
      continue;
    }
    ASSIGN_OR_RETURN(store::WalEvent e, decoder_.Decode(m->data));
    switch (e.kind) {
      case store::WalEvent::kBegin:
        in_transaction_ = true;
        skip_transaction_ = false;
        position_ = WalPosition{static_cast<int64_t>(e.lsn), 0};
        commit_unix_ms_ = e.commit_unix_us / 1000;
        break;
      case store::WalEvent::kOrigin:
        skip_transaction_ = e.origin == skip_origin_;
        break;
      case store::WalEvent::kInsert:
      case store::WalEvent::kUpdate:
      case store::WalEvent::kDelete:
        ++position_.index;
        // Deletes travel as tombstones; changes sent before are not again.
        if (e.kind != store::WalEvent::kDelete && !skip_transaction_ && after_ < position_) {
          RETURN_IF_ERROR(AddChange(e, batch, &bytes));
        }
        batch.end = position_;
        break;
      case store::WalEvent::kCommit:
        in_transaction_ = false;
        position_.index = kWholeTransaction;
        batch.end = position_;
        break;
      default:
        break;  // relations (kept by the decoder), truncates, types
    }
  }
  return batch;
}

}  // namespace strata::replication
