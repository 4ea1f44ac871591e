#include "common/replication/wal_reader.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
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

std::string SlotName(const std::string& peer) {
  return absl::StrCat("strata_", absl::AsciiStrToLower(peer));
}
std::string OriginName(const std::string& peer) {
  return absl::StrCat("strata_", absl::AsciiStrToLower(peer));
}
std::string PublicationName(const std::string& scope) { return absl::StrCat("strata_", scope); }

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

WalReader::WalReader(PeerFilter filter, const Catalog& catalog, TypeMap types)
    : filter_(std::move(filter)),
      catalog_(catalog),
      types_(std::move(types)),
      skip_origin_(OriginName(filter_.peer)) {}

WalReader::~WalReader() = default;

absl::StatusOr<std::unique_ptr<WalReader>> WalReader::Open(const std::string& conninfo,
                                                           const PeerFilter& filter,
                                                           const Catalog& catalog, TypeMap types) {
  std::unique_ptr<WalReader> r(new WalReader(filter, catalog, std::move(types)));
  r->conninfo_ = conninfo;
  ASSIGN_OR_RETURN(r->stream_, store::WalStream::Open(conninfo));
  ASSIGN_OR_RETURN(r->conn_, store::Connection::Open(conninfo));
  return r;
}

absl::Status WalReader::Reinitialize(
    const std::function<absl::Status(const std::string&)>& read_snapshot, WalPosition* end) {
  const std::string slot = SlotName(filter_.peer);
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
  // point; a commit starting exactly there comes again (harmless).
  *end = WalPosition{static_cast<int64_t>(created.consistent_point) - 1, kWholeTransaction};
  return absl::OkStatus();
}

absl::Status WalReader::Start(const WalPosition& after) {
  std::vector<std::string> publications;
  for (const auto& scope : filter_.scopes) publications.push_back(PublicationName(scope));
  publications.push_back(kTombstonePublication);
  after_ = after;
  position_ = after;
  // The server sends the transactions whose commit starts at or after the
  // start: a transaction cut short comes again whole (what was applied of
  // it is skipped by position), a finished one does not.
  const int64_t from = after.index == kWholeTransaction ? after.commit + 1 : after.commit;
  return stream_->Start(SlotName(filter_.peer), static_cast<store::Lsn>(std::max<int64_t>(from, 0)),
                        publications);
}

absl::Status WalReader::Confirm(const WalPosition& acked) {
  // Restarting at a commit's position sends that transaction again: the
  // reader skips what was applied.
  if (acked.commit <= 0) return absl::OkStatus();
  return stream_->Confirm(static_cast<store::Lsn>(acked.commit));
}

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
  while (static_cast<int>(batch.changes.size()) < max_changes &&
         (batch.changes.empty() || bytes < max_bytes)) {
    ASSIGN_OR_RETURN(std::optional<store::WalMessage> m, stream_->Next(next_wait));
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
      break;
    }
    next_wait = absl::ZeroDuration();
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
