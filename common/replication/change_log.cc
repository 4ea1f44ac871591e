#include "common/replication/change_log.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/json.h"
#include "common/base/status.h"

namespace strata::replication {
namespace {

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

absl::StatusOr<LogHead> ReadLogHead(store::Transaction& tx) {
  ASSIGN_OR_RETURN(
      store::Result r,
      tx.Exec("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint, "
              "s.pruned_through::text::bigint, (SELECT coalesce(max(id), 0) FROM repl_log), "
              "i.log_epoch FROM repl_state s, repl_identity i"));
  if (r.empty()) return absl::FailedPreconditionError("this database has no site identity yet");
  return LogHead{r.GetInt(0, 0), r.GetInt(0, 1), r.GetInt(0, 2), r.GetString(0, 3)};
}

absl::StatusOr<SnapshotInfo> ReadSnapshot(
    store::Transaction& tx, const PeerFilter& filter, int chunk_rows,
    const std::function<absl::Status(std::vector<v1::Change>&&)>& sink) {
  SnapshotInfo info;
  ASSIGN_OR_RETURN(store::Result tables,
                   tx.Exec("SELECT tbl, key_columns FROM repl_scope WHERE scope = ANY($1::text[]) "
                           "ORDER BY tbl",
                           {store::TextArrayLiteral(filter.scopes)}));
  const std::string origins = store::TextArrayLiteral(filter.origins);
  for (size_t t = 0; t < tables.size(); ++t) {
    const std::string table = tables.GetString(t, 0);
    info.tables.push_back(table);
    std::string cursor = absl::StrCat("repl_snapshot_", t);
    RETURN_IF_ERROR(
        tx.Exec(absl::StrCat("DECLARE ", cursor, " NO SCROLL CURSOR FOR SELECT ",
                             store::QuoteLiteral(table), ", 'U', repl_key(to_jsonb(x.*), ",
                             store::QuoteLiteral(tables.GetString(t, 1)),
                             "::text[]), to_json(x.*)::text, x._hlc, x._origin, 0 FROM ",
                             store::QuoteIdent(table), " x WHERE (x._origin = ANY(",
                             store::QuoteLiteral(origins),
                             "::text[])) = ", filter.origins_exclude ? "false" : "true"))
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

absl::StatusOr<int64_t> PruneLog(store::Transaction& tx, int64_t retention_seconds,
                                 const std::vector<std::string>& peers) {
  // Horizons: rows of transactions below `acked` every peer has; rows below
  // `expired` are all older than the retention window. Neither passes the
  // finished-transaction horizon.
  ASSIGN_OR_RETURN(
      store::Result r,
      tx.Exec("WITH h AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon) "
              "SELECT least(h.horizon, coalesce((SELECT min(CASE WHEN o.log_id = $2 THEN o.xid + 1 "
              "ELSE o.xid END) FROM repl_outbound o WHERE o.peer = ANY($1::text[])), h.horizon)), "
              "least(h.horizon, coalesce((SELECT min(xid)::text::bigint FROM repl_log WHERE "
              "logged_at >= now() - make_interval(secs => $3)), h.horizon)), "
              "(SELECT pruned_through::text::bigint FROM repl_state) FROM h",
              {store::TextArrayLiteral(peers), std::to_string(kWholeTransaction),
               std::to_string(retention_seconds)}));
  const int64_t target = std::max(r.GetInt(0, 0), r.GetInt(0, 1));
  const int64_t previous = r.GetInt(0, 2);
  RETURN_IF_ERROR(tx.Exec("DELETE FROM repl_tombstone WHERE deleted_at < now() - "
                          "make_interval(secs => $1)",
                          {std::to_string(retention_seconds)})
                      .status());
  if (target <= previous) return previous;
  RETURN_IF_ERROR(
      tx.Exec("DELETE FROM repl_log WHERE xid < $1::bigint::text::xid8", {std::to_string(target)})
          .status());
  RETURN_IF_ERROR(tx.Exec("UPDATE repl_state SET pruned_through = $1::bigint::text::xid8",
                          {std::to_string(target)})
                      .status());
  return target;
}

absl::StatusOr<std::vector<std::string>> Subtree(store::Transaction& tx, const std::string& code) {
  ASSIGN_OR_RETURN(store::Result r,
                   tx.ExecCached("WITH RECURSIVE t(code) AS (SELECT $1::text UNION "
                                 "SELECT s.code FROM sites s JOIN t ON s.parent = t.code) "
                                 "SELECT code FROM t",
                                 {code}));
  std::vector<std::string> out;
  for (size_t i = 0; i < r.size(); ++i) out.push_back(r.GetString(i, 0));
  return out;
}

}  // namespace strata::replication
