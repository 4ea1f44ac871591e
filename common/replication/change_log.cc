#include "common/replication/change_log.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/json.h"
#include "common/base/status.h"

namespace strata::replication {
namespace {

// PostgreSQL text[] literal for a list of plain identifiers/codes.
std::string TextArray(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out.push_back(',');
    AppendJsonString(out, values[i]);  // a JSON string is a valid quoted array element here
  }
  out.push_back('}');
  return out;
}

v1::Change ChangeFromRow(const store::Result& r, size_t i, int first_col) {
  v1::Change c;
  c.set_table(r.GetString(i, first_col));
  c.set_op(r.Get(i, first_col + 1) == "D" ? v1::CHANGE_OP_DELETE : v1::CHANGE_OP_UPSERT);
  c.set_key(r.GetString(i, first_col + 2));
  if (!r.IsNull(i, first_col + 3)) c.set_row_json(r.GetString(i, first_col + 3));
  c.set_hlc(r.GetInt(i, first_col + 4));
  c.set_origin_site(r.GetString(i, first_col + 5));
  c.set_origin_seq(r.GetInt(i, first_col + 6));
  return c;
}

constexpr char kChangeColumns[] =
    "l.tbl, l.op, l.key, l.row_data::text, l.hlc, l.origin, coalesce(l.origin_seq, l.id)";

}  // namespace

std::vector<std::string> ScopesFor(bool peer_is_parent, v1::SiteType peer_type) {
  if (peer_is_parent) return {"global", "global_proxy", "site"};
  if (peer_type == v1::SITE_TYPE_SECONDARY) return {"global_proxy"};
  return {"global", "global_proxy"};
}

absl::StatusOr<LogBatch> ReadLog(store::Transaction& tx, const Position& after,
                                 const PeerFilter& filter, int max_changes, int* commits_hint) {
  LogBatch batch;
  batch.end = after;
  const std::string scopes = TextArray(filter.scopes);
  const std::string limit = std::to_string(max_changes + 1);

  if (after.log_id != kWholeCommit) {
    // The rest of a commit too large for one batch.
    ASSIGN_OR_RETURN(
        store::Result r,
        tx.Exec(absl::StrCat("SELECT l.id, ", kChangeColumns, ", extract(epoch FROM c.committed_at) * 1000 "
                             "FROM repl_commit c JOIN repl_log l ON l.xid = c.xid "
                             "WHERE c.lsn = $1 AND l.id > $2 AND l.scope = ANY($3::text[]) "
                             "AND l.received_from IS DISTINCT FROM $4 ORDER BY l.id LIMIT ",
                             limit),
                {std::to_string(after.lsn), std::to_string(after.log_id), scopes, filter.peer}));
    size_t n = std::min<size_t>(r.size(), max_changes);
    for (size_t i = 0; i < n; ++i) batch.changes.push_back(ChangeFromRow(r, i, 1));
    if (!r.empty()) batch.oldest_commit_unix_ms = static_cast<int64_t>(std::stod(r.GetString(0, 8)));
    batch.end = r.size() > n ? Position{after.lsn, r.GetInt(n - 1, 0)} : Position{after.lsn, kWholeCommit};
    return batch;
  }

  int commits = std::clamp(*commits_hint, 1, 4096);
  ASSIGN_OR_RETURN(
      store::Result r,
      tx.Exec(absl::StrCat(
                  "WITH c AS (SELECT lsn, xid, committed_at FROM repl_commit WHERE lsn > $1 "
                  "ORDER BY lsn LIMIT ", commits, ") "
                  "SELECT c.lsn, l.id, ", kChangeColumns, ", extract(epoch FROM c.committed_at) * 1000, "
                  "(SELECT max(lsn) FROM c) FROM c LEFT JOIN repl_log l ON l.xid = c.xid "
                  "AND l.scope = ANY($2::text[]) AND l.received_from IS DISTINCT FROM $3 "
                  "ORDER BY c.lsn, l.id LIMIT ", limit),
              {std::to_string(after.lsn), scopes, filter.peer}));
  if (r.empty()) return batch;
  const int64_t last_commit_read = r.GetInt(0, 10);
  batch.oldest_commit_unix_ms = static_cast<int64_t>(std::stod(r.GetString(0, 9)));
  const size_t n = std::min<size_t>(r.size(), max_changes);
  std::set<int64_t> commits_seen;
  for (size_t i = 0; i < n; ++i) {
    commits_seen.insert(r.GetInt(i, 0));
    if (r.IsNull(i, 1)) continue;  // a commit with nothing for this peer
    batch.changes.push_back(ChangeFromRow(r, i, 2));
  }
  if (r.size() > n) {
    // Cut after row n-1: the row after it says whether the cut falls inside a commit.
    const int64_t last_lsn = r.GetInt(n - 1, 0);
    if (r.GetInt(n, 0) == last_lsn && !r.IsNull(n - 1, 1)) {
      batch.end = Position{last_lsn, r.GetInt(n - 1, 1)};
    } else {
      batch.end = Position{last_lsn, kWholeCommit};
    }
    // Many rows per commit: look at fewer commits next time.
    *commits_hint = std::max<int>(1, static_cast<int>(commits_seen.size()));
  } else {
    batch.end = Position{last_commit_read, kWholeCommit};
    *commits_hint = std::min(4096, commits * 2);
  }
  return batch;
}

absl::StatusOr<LogHead> ReadLogHead(store::Transaction& tx) {
  ASSIGN_OR_RETURN(store::Result r,
                   tx.Exec("SELECT c.lsn, c.pruned_through, i.log_epoch FROM repl_counter c, "
                           "repl_identity i"));
  if (r.empty()) return absl::FailedPreconditionError("this database has no site identity yet");
  return LogHead{r.GetInt(0, 0), r.GetInt(0, 1), r.GetString(0, 2)};
}

bool NeedsSnapshot(const LogHead& head, const std::string& peer_epoch, const Position& applied) {
  if (peer_epoch != head.epoch) return true;
  // Every commit after `applied` must still be in the log.
  int64_t first_needed = applied.log_id == kWholeCommit ? applied.lsn + 1 : applied.lsn;
  return first_needed <= head.pruned_through || applied.lsn > head.lsn;
}

absl::StatusOr<SnapshotInfo> ReadSnapshot(
    store::Transaction& tx, const PeerFilter& filter, int chunk_rows,
    const std::function<absl::Status(std::vector<v1::Change>&&)>& sink) {
  SnapshotInfo info;
  ASSIGN_OR_RETURN(LogHead head, ReadLogHead(tx));
  info.end = Position{head.lsn, kWholeCommit};
  ASSIGN_OR_RETURN(store::Result tables,
                   tx.Exec("SELECT tbl, key_columns FROM repl_scope WHERE scope = ANY($1::text[]) "
                           "ORDER BY tbl",
                           {TextArray(filter.scopes)}));
  const std::string origins = TextArray(filter.origins);
  for (size_t t = 0; t < tables.size(); ++t) {
    const std::string table = tables.GetString(t, 0);
    info.tables.push_back(table);
    std::string cursor = absl::StrCat("repl_snapshot_", t);
    RETURN_IF_ERROR(
        tx.Exec(absl::StrCat("DECLARE ", cursor, " NO SCROLL CURSOR FOR SELECT ",
                             store::QuoteLiteral(table), ", 'U', repl_key(to_jsonb(x), ",
                             store::QuoteLiteral(tables.GetString(t, 1)),
                             "::text[]), to_jsonb(x)::text, x._hlc, x._origin, 0 FROM ",
                             store::QuoteIdent(table), " x WHERE (x._origin = ANY(",
                             store::QuoteLiteral(origins), "::text[])) = ",
                             filter.origins_exclude ? "false" : "true"))
            .status());
    while (true) {
      ASSIGN_OR_RETURN(store::Result rows,
                       tx.Exec(absl::StrCat("FETCH ", chunk_rows, " FROM ", cursor)));
      if (rows.empty()) break;
      std::vector<v1::Change> chunk;
      chunk.reserve(rows.size());
      for (size_t i = 0; i < rows.size(); ++i) chunk.push_back(ChangeFromRow(rows, i, 0));
      RETURN_IF_ERROR(sink(std::move(chunk)));
    }
    RETURN_IF_ERROR(tx.Exec(absl::StrCat("CLOSE ", cursor)).status());
  }
  return info;
}

absl::StatusOr<Lag> ComputeLag(store::Transaction& tx, const Position& acked,
                               const PeerFilter& filter) {
  ASSIGN_OR_RETURN(
      store::Result r,
      tx.Exec("SELECT count(*), extract(epoch FROM clock_timestamp() - min(c.committed_at)) "
              "FROM repl_commit c JOIN repl_log l ON l.xid = c.xid "
              "WHERE (c.lsn > $1 OR (c.lsn = $1 AND l.id > $2)) AND l.scope = ANY($3::text[]) "
              "AND l.received_from IS DISTINCT FROM $4",
              {std::to_string(acked.lsn), std::to_string(acked.log_id),
               TextArray(filter.scopes), filter.peer}));
  Lag lag;
  lag.changes = r.GetInt(0, 0);
  if (!r.IsNull(0, 1)) lag.seconds = std::stod(r.GetString(0, 1));
  return lag;
}

absl::StatusOr<int64_t> PruneLog(store::Transaction& tx, int64_t retention_seconds,
                                 const std::vector<std::string>& peers) {
  // The lowest whole commit every peer has acknowledged. A peer with no row
  // has acknowledged nothing this log still holds: it gets a snapshot.
  ASSIGN_OR_RETURN(
      store::Result r,
      tx.Exec("SELECT coalesce(min(CASE WHEN o.log_id = $2 THEN o.lsn ELSE o.lsn - 1 END), "
              "(SELECT lsn FROM repl_counter)) FROM repl_outbound o WHERE o.peer = ANY($1::text[])",
              {TextArray(peers), std::to_string(kWholeCommit)}));
  int64_t acked_by_all = r.GetInt(0, 0);
  ASSIGN_OR_RETURN(
      store::Result old,
      tx.Exec("SELECT coalesce(max(lsn), 0) FROM repl_commit WHERE committed_at < now() - "
              "make_interval(secs => $1)",
              {std::to_string(retention_seconds)}));
  int64_t target = std::max(acked_by_all, old.GetInt(0, 0));
  ASSIGN_OR_RETURN(store::Result head, tx.Exec("SELECT pruned_through FROM repl_counter"));
  if (target <= head.GetInt(0, 0)) return head.GetInt(0, 0);
  RETURN_IF_ERROR(tx.Exec("DELETE FROM repl_log l USING repl_commit c WHERE c.xid = l.xid AND "
                          "c.lsn <= $1",
                          {std::to_string(target)})
                      .status());
  RETURN_IF_ERROR(
      tx.Exec("DELETE FROM repl_commit WHERE lsn <= $1", {std::to_string(target)}).status());
  RETURN_IF_ERROR(tx.Exec("DELETE FROM repl_tombstone WHERE deleted_at < now() - "
                          "make_interval(secs => $1)",
                          {std::to_string(retention_seconds)})
                      .status());
  RETURN_IF_ERROR(tx.Exec("UPDATE repl_counter SET pruned_through = greatest(pruned_through, $1)",
                          {std::to_string(target)})
                      .status());
  return target;
}

absl::StatusOr<std::vector<std::string>> Subtree(store::Transaction& tx, const std::string& code) {
  ASSIGN_OR_RETURN(store::Result r,
                   tx.Exec("WITH RECURSIVE t(code) AS (SELECT $1::text UNION "
                           "SELECT s.code FROM sites s JOIN t ON s.parent = t.code) "
                           "SELECT code FROM t",
                           {code}));
  std::vector<std::string> out;
  for (size_t i = 0; i < r.size(); ++i) out.push_back(r.GetString(i, 0));
  return out;
}

}  // namespace strata::replication
