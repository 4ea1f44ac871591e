#include "common/replication/applier.h"

#include <algorithm>
#include <set>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/config.h"
#include "common/base/json.h"
#include "common/base/status.h"

namespace strata::replication {
namespace {

using store::QuoteIdent;
using store::QuoteLiteral;

std::string KeyExpr(const std::vector<std::string>& keys, absl::string_view alias) {
  std::vector<std::string> parts;
  for (const auto& k : keys) parts.push_back(absl::StrCat(alias, ".", QuoteIdent(k)));
  return absl::StrCat("jsonb_build_array(", absl::StrJoin(parts, ", "), ")::text");
}

// The upsert of rows holding `present` of the table's columns (all of them,
// or what a sender on an older release has): columns a row lacks are left
// out of the INSERT (their defaults) and of the UPDATE (their values).
std::string UpsertSql(const TableInfo& t, const std::vector<std::string>& present,
                      bool check_tombstones) {
  const std::string table = QuoteIdent(t.name);
  std::vector<std::string> cols, i_cols, sets, key_cols, casts, arrays;
  for (const std::string& name : present) {
    cols.push_back(QuoteIdent(name));
    i_cols.push_back("i." + QuoteIdent(name));
    for (size_t c = 0; c < t.columns.size(); ++c) {
      if (t.columns[c].first == name) {
        casts.push_back(
            absl::StrCat("u.", QuoteIdent(name), "::", t.input_types[c], " AS ", QuoteIdent(name)));
      }
    }
    arrays.push_back(absl::StrCat("$", arrays.size() + 1, "::text[]"));
    bool is_key =
        std::find(t.key_columns.begin(), t.key_columns.end(), name) != t.key_columns.end();
    if (!is_key) sets.push_back(absl::StrCat(QuoteIdent(name), " = EXCLUDED.", QuoteIdent(name)));
  }
  for (const std::string& k : t.key_columns) key_cols.push_back(QuoteIdent(k));
  return absl::StrCat(
      "INSERT INTO ", table, " AS cur (", absl::StrJoin(cols, ", "), ") SELECT ",
      absl::StrJoin(i_cols, ", "), " FROM (SELECT ", absl::StrJoin(casts, ", "), " FROM unnest(",
      absl::StrJoin(arrays, ", "), ") AS u(", absl::StrJoin(cols, ", "), ")) i ",
      check_tombstones
          ? absl::StrCat("WHERE NOT EXISTS (SELECT 1 FROM repl_tombstone tb WHERE tb.tbl = ",
                         QuoteLiteral(t.name), " AND tb.key = ", KeyExpr(t.key_columns, "i"),
                         " AND (tb.hlc, tb.origin) >= (i._hlc, i._origin)) ")
          : std::string(),
      "ON CONFLICT (", absl::StrJoin(key_cols, ", "), ") DO UPDATE SET ", absl::StrJoin(sets, ", "),
      " WHERE (cur._hlc, cur._origin) < (EXCLUDED._hlc, EXCLUDED._origin)");
}

void BuildStatements(TableInfo& t, const std::vector<std::pair<std::string, std::string>>& columns,
                     std::vector<std::string> input_types) {
  t.columns = columns;
  t.input_types = std::move(input_types);
  const std::string table = QuoteIdent(t.name);
  const std::string lit = QuoteLiteral(t.name);
  std::vector<std::string> all, key_match;
  for (const auto& [name, type] : columns) all.push_back(name);
  for (size_t i = 0; i < t.key_columns.size(); ++i) {
    const std::string& k = t.key_columns[i];
    std::string type;
    for (const auto& [name, ty] : columns) {
      if (name == k) type = ty;
    }
    key_match.push_back(
        absl::StrCat("cur.", QuoteIdent(k), " = (i.key::jsonb ->> ", i, ")::", type));
  }
  t.upsert_sql = UpsertSql(t, all, true);
  t.upsert_no_tombstones_sql = UpsertSql(t, all, false);
  t.delete_sql = absl::StrCat(
      "WITH i AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(key text, hlc bigint, origin "
      "text)), tomb AS (INSERT INTO repl_tombstone AS tb (tbl, key, hlc, origin) SELECT ",
      lit,
      ", key, hlc, origin FROM i ON CONFLICT (tbl, key) DO UPDATE SET hlc = EXCLUDED.hlc, "
      "origin = EXCLUDED.origin, deleted_at = now() WHERE (tb.hlc, tb.origin) < (EXCLUDED.hlc, "
      "EXCLUDED.origin) RETURNING key), del AS (DELETE FROM ",
      table, " cur USING i WHERE ", absl::StrJoin(key_match, " AND "),
      " AND (cur._hlc, cur._origin) < (i.hlc, i.origin) RETURNING i.key) "
      "SELECT key FROM tomb UNION SELECT key FROM del");
  // Rows the snapshot did not hold are deleted with a tombstone (the clock
  // just above theirs), which carries the delete on to this site's peers.
  t.stale_delete_sql = absl::StrCat(
      "WITH gone AS (DELETE FROM ", table,
      " cur WHERE (cur._origin = ANY($1::text[])) = $2::boolean AND NOT EXISTS (SELECT 1 FROM "
      "repl_snap_keys s WHERE s.tbl = ",
      lit, " AND s.key = ", KeyExpr(t.key_columns, "cur"), ") RETURNING ",
      KeyExpr(t.key_columns, "cur"),
      " AS key, cur._hlc + 1 AS hlc, cur._origin AS origin), "
      "tomb AS (INSERT INTO repl_tombstone AS tb (tbl, key, hlc, origin) SELECT ",
      lit,
      ", key, hlc, origin FROM gone ON CONFLICT (tbl, key) DO UPDATE SET hlc = EXCLUDED.hlc, "
      "origin = EXCLUDED.origin, deleted_at = now() WHERE (tb.hlc, tb.origin) < (EXCLUDED.hlc, "
      "EXCLUDED.origin)) SELECT key FROM gone");
}

// What a change must look like whoever sent it.
// `names` (reused by the caller): the upsert row's top-level keys.
absl::Status ValidateShape(const v1::Change& c, const TableInfo* table, bool check_keys,
                           std::vector<std::string_view>* names = nullptr) {
  if (table == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown table \"", c.table(), "\""));
  }
  if (c.op() != v1::CHANGE_OP_UPSERT && c.op() != v1::CHANGE_OP_DELETE) {
    return absl::InvalidArgumentError(absl::StrCat("change to ", c.table(), " has no operation"));
  }
  if (c.key().empty() || c.key().front() != '[') {
    return absl::InvalidArgumentError(
        absl::StrCat("change to ", c.table(), " has a malformed key"));
  }
  if (c.hlc() <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("change to ", c.table(), " has no timestamp"));
  }
  if (!ValidateSiteCode(c.origin_site()).ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "change to ", c.table(), " has an invalid origin site \"", c.origin_site(), "\""));
  }
  if (c.op() == v1::CHANGE_OP_UPSERT) {
    RowStamps stamps;
    std::string row_key;
    if (!ParseRowObject(c.row_json(), &stamps, check_keys ? &table->key_columns : nullptr,
                        check_keys ? &row_key : nullptr, names)) {
      return absl::InvalidArgumentError(
          absl::StrCat("change to ", c.table(), " key ", c.key(), " has a malformed row"));
    }
    // The row is applied with its own stamps: they must be the change's.
    if (stamps.hlc != c.hlc() || stamps.origin != c.origin_site()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "change to ", c.table(), " key ", c.key(), " carries a row whose clock or origin (",
          stamps.hlc, ", ", stamps.origin, ") is not the change's"));
    }
    if (check_keys && row_key != c.key()) {
      return absl::InvalidArgumentError(absl::StrCat("change to ", c.table(), " key ", c.key(),
                                                     " carries a row that does not match its key"));
    }
  }
  return absl::OkStatus();
}

// What this peer may send.
absl::Status ValidatePolicy(const v1::Change& c, const TableInfo& table,
                            const ApplyPolicy& policy) {
  if (std::find(policy.allowed_scopes.begin(), policy.allowed_scopes.end(), table.scope) ==
      policy.allowed_scopes.end()) {
    return absl::InvalidArgumentError(absl::StrCat("table ", c.table(), " (", table.scope,
                                                   " data) may not come from ", policy.peer));
  }
  if (!policy.allowed_origins.empty() &&
      std::find(policy.allowed_origins.begin(), policy.allowed_origins.end(), c.origin_site()) ==
          policy.allowed_origins.end()) {
    return absl::PermissionDeniedError(
        absl::StrCat(policy.peer, " may not send changes made at ", c.origin_site()));
  }
  return absl::OkStatus();
}

// Runs longer than this look whether their table has tombstones at all
// before the upsert, instead of looking up each row's.
constexpr size_t kTombstoneProbeRows = 64;

// Errors caused by the peer's data are InvalidArgument; losing the database
// stays Unavailable, a serialization failure stays Aborted.
absl::Status AsRejection(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kResourceExhausted:
      return s;
    default:
      return absl::InvalidArgumentError(absl::StrCat("batch rejected: ", s.message()));
  }
}

// 0 when a row's top-level keys (`names`) are exactly `table`'s columns in
// its order (what a sender of this release writes), else a hash of which
// of the table's columns the row carries (keys the table does not have are
// ignored, as json_populate_recordset ignores them, and do not count).
uint64_t RowShape(const TableInfo& table, const std::vector<std::string_view>& names) {
  if (names.size() == table.columns.size()) {
    bool all = true;
    for (size_t i = 0; i < names.size() && all; ++i) all = names[i] == table.columns[i].first;
    if (all) return 0;
  }
  uint64_t shape = 1;
  for (size_t c = 0; c < table.columns.size(); ++c) {
    if (std::find(names.begin(), names.end(), table.columns[c].first) != names.end()) {
      shape = shape * 1099511628211ULL + c + 1;
    }
  }
  return shape;
}

}  // namespace

bool ParseRowObject(std::string_view json, RowStamps* stamps,
                    const std::vector<std::string>* key_columns, std::string* key,
                    std::vector<std::string_view>* names, std::vector<std::string_view>* values) {
  const size_t n = json.size();
  size_t i = 0;
  std::vector<std::string_view> key_values(key_columns ? key_columns->size() : 0);
  auto ws = [&] {
    while (i < n && (json[i] == ' ' || json[i] == '\t' || json[i] == '\n' || json[i] == '\r')) ++i;
  };
  // A string at json[i]: its raw contents, and whether it has escapes.
  auto read_string = [&](std::string_view* raw, bool* escaped) {
    if (i >= n || json[i] != '"') return false;
    const size_t start = ++i;
    *escaped = false;
    while (i < n) {
      if (json[i] == '\\') {
        *escaped = true;
        i += 2;
      } else if (json[i] == '"') {
        *raw = json.substr(start, i - start);
        ++i;
        return true;
      } else {
        ++i;
      }
    }
    return false;
  };
  // Any one value; nested ones by bracket depth, strings skipped whole.
  auto skip_value = [&] {
    std::string_view raw;
    bool escaped;
    if (i >= n) return false;
    if (json[i] == '"') return read_string(&raw, &escaped);
    if (json[i] == '{' || json[i] == '[') {
      int depth = 0;
      while (i < n) {
        const char c = json[i];
        if (c == '"') {
          if (!read_string(&raw, &escaped)) return false;
          continue;
        }
        if (c == '{' || c == '[') ++depth;
        if ((c == '}' || c == ']') && --depth == 0) {
          ++i;
          return true;
        }
        ++i;
      }
      return false;
    }
    const size_t start = i;
    while (i < n && json[i] != ',' && json[i] != '}' && json[i] != ']' && json[i] != ' ' &&
           json[i] != '\t' && json[i] != '\n' && json[i] != '\r') {
      ++i;
    }
    return i > start;
  };
  bool seen_hlc = false, seen_origin = false;
  ws();
  if (i >= n || json[i] != '{') return false;
  ++i;
  ws();
  if (i < n && json[i] == '}') {
    ++i;
  } else {
    while (true) {
      ws();
      std::string_view key;
      bool escaped;
      if (!read_string(&key, &escaped) || escaped) return false;
      if (names != nullptr) names->push_back(key);
      ws();
      if (i >= n || json[i] != ':') return false;
      ++i;
      ws();
      const size_t value_start = i;
      if (key == "_hlc") {
        if (seen_hlc) return false;
        seen_hlc = true;
        const size_t start = i;
        if (i < n && json[i] == '-') ++i;
        while (i < n && json[i] >= '0' && json[i] <= '9') ++i;
        const std::string_view digits = json.substr(start, i - start);
        if (!absl::SimpleAtoi(absl::string_view(digits.data(), digits.size()), &stamps->hlc)) {
          return false;
        }
      } else if (key == "_origin") {
        if (seen_origin) return false;
        seen_origin = true;
        std::string_view raw;
        bool origin_escaped;
        if (!read_string(&raw, &origin_escaped) || origin_escaped) return false;
        stamps->origin.assign(raw);
      } else {
        const size_t start = i;
        if (!skip_value()) return false;
        if (key_columns != nullptr) {
          for (size_t k = 0; k < key_columns->size(); ++k) {
            if ((*key_columns)[k] == key) {
              if (!key_values[k].empty()) return false;  // repeated key column
              key_values[k] = json.substr(start, i - start);
            }
          }
        }
      }
      if (values != nullptr) values->push_back(json.substr(value_start, i - value_start));
      ws();
      if (i < n && json[i] == ',') {
        ++i;
        continue;
      }
      if (i < n && json[i] == '}') {
        ++i;
        break;
      }
      return false;
    }
  }
  ws();
  if (i != n || !seen_hlc || !seen_origin) return false;
  if (key != nullptr) {
    key->assign("[");
    for (size_t k = 0; k < key_values.size(); ++k) {
      if (key_values[k].empty()) {
        key->clear();
        return true;
      }
      if (k > 0) key->append(", ");
      key->append(key_values[k]);
    }
    key->push_back(']');
  }
  return true;
}

absl::StatusOr<Catalog> Catalog::Load(store::Transaction& tx) {
  Catalog catalog;
  ASSIGN_OR_RETURN(store::Result scopes,
                   tx.Exec("SELECT tbl, scope, array_to_json(key_columns)::text FROM repl_scope"));
  for (size_t i = 0; i < scopes.size(); ++i) {
    TableInfo t;
    t.name = scopes.GetString(i, 0);
    t.scope = scopes.GetString(i, 1);
    ASSIGN_OR_RETURN(store::Result keys, tx.Exec("SELECT json_array_elements_text($1::json)",
                                                 {scopes.GetString(i, 2)}));
    for (size_t k = 0; k < keys.size(); ++k) t.key_columns.push_back(keys.GetString(k, 0));
    ASSIGN_OR_RETURN(store::Result cols,
                     tx.Exec("SELECT a.attname, format_type(a.atttypid, a.atttypmod), "
                             "format_type(a.atttypid, NULL), format_type(coalesce(nullif("
                             "ty.typbasetype, 0), a.atttypid), NULL) FROM pg_attribute a JOIN "
                             "pg_type ty ON ty.oid = a.atttypid WHERE a.attrelid = $1::regclass "
                             "AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' "
                             "ORDER BY a.attnum",
                             {QuoteIdent(t.name)}));
    std::vector<std::pair<std::string, std::string>> columns;
    std::vector<std::string> input_types;
    for (size_t c = 0; c < cols.size(); ++c) {
      columns.emplace_back(cols.GetString(c, 0), cols.GetString(c, 1));
      input_types.push_back(cols.GetString(c, 2));
      // A domain's values are spelled as its base type's.
      t.kinds.push_back(KindOfType(cols.GetString(c, 3)));
    }
    BuildStatements(t, columns, std::move(input_types));
    catalog.tables_.emplace(t.name, std::move(t));
  }
  return catalog;
}

const TableInfo* Catalog::Find(const std::string& table) const {
  auto it = tables_.find(table);
  return it == tables_.end() ? nullptr : &it->second;
}

absl::Status BeginApply(store::Transaction& tx) {
  return tx.Exec("SELECT set_config('strata.applying', 'on', true)").status();
}

absl::StatusOr<PreparedBatch> PrepareChanges(
    const Catalog& catalog, const google::protobuf::RepeatedPtrField<v1::Change>& changes,
    int max_changes) {
  PreparedBatch batch;
  batch.received = changes.size();
  if (changes.size() > max_changes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch rejected: ", changes.size(), " changes, more than the limit of ", max_changes));
  }
  // Each upsert row's shape: which columns it carries. A sender's rows
  // normally carry all of this site's columns (shape 0); rows written
  // before a release added a column (replayed after the sender's upgrade,
  // or from a site not upgraded yet) lack it, and rows of both kinds can
  // follow each other in one batch.
  std::vector<uint64_t> shapes(changes.size(), 0);
  std::vector<std::string_view> names, values;
  for (int i = 0; i < changes.size(); ++i) {
    const v1::Change& c = changes[i];
    const TableInfo* table = catalog.Find(c.table());
    names.clear();
    absl::Status s = ValidateShape(c, table, /*check_keys=*/true, &names);
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat("batch rejected: ", s.message()));
    if (c.op() == v1::CHANGE_OP_UPSERT) shapes[i] = RowShape(*table, names);
  }
  // Runs of consecutive changes to one table with one operation and row
  // shape, each applied with one statement; within a run the last change of
  // a key wins (the log is in commit order, and runs apply in order).
  int begin = 0;
  while (begin < changes.size()) {
    int end = begin;
    while (end < changes.size() && changes[end].table() == changes[begin].table() &&
           changes[end].op() == changes[begin].op() && shapes[end] == shapes[begin]) {
      ++end;
    }
    PreparedRun run;
    run.table = catalog.Find(changes[begin].table());
    run.is_delete = changes[begin].op() == v1::CHANGE_OP_DELETE;
    for (int i = begin; i < end; ++i) run.by_key[changes[i].key()] = &changes[i];
    for (int i = begin; i < end; ++i) {
      if (run.by_key[changes[i].key()] == &changes[i]) run.changes.push_back(&changes[i]);
    }
    if (run.is_delete) {
      std::string json = "[";
      for (size_t i = 0; i < run.changes.size(); ++i) {
        const v1::Change& c = *run.changes[i];
        if (i) json.push_back(',');
        json.append("{\"key\":");
        AppendJsonString(json, c.key());
        absl::StrAppend(&json, ",\"hlc\":", c.hlc(), ",\"origin\":");
        AppendJsonString(json, c.origin_site());
        json.push_back('}');
      }
      json.push_back(']');
      run.params.emplace_back(std::move(json));
    } else {
      // The columns the run's rows carry, in the table's order: all of
      // them (shape 0), or those its first row names (the rows of a run
      // share their shape; key columns are among them: ValidateShape
      // checked each row's key). Each row's values go into its columns'
      // arrays; the rows carry their own _hlc and _origin, checked against
      // their changes in ValidateShape.
      std::vector<size_t> present;  // indexes into run.table->columns
      names.clear();
      values.clear();
      RowStamps stamps;
      ParseRowObject(run.changes.front()->row_json(), &stamps, nullptr, nullptr, &names);
      for (size_t c = 0; c < run.table->columns.size(); ++c) {
        if (std::find(names.begin(), names.end(), run.table->columns[c].first) != names.end()) {
          present.push_back(c);
        }
      }
      std::vector<ColumnArray> arrays(present.size());
      for (const v1::Change* c : run.changes) {
        names.clear();
        values.clear();
        ParseRowObject(c->row_json(), &stamps, nullptr, nullptr, &names, &values);
        for (size_t p = 0; p < present.size(); ++p) {
          const auto& [column, type] = run.table->columns[present[p]];
          // A row of this release names the columns in the table's order.
          size_t at = present[p] < names.size() && names[present[p]] == column
                          ? present[p]
                          : std::find(names.begin(), names.end(), column) - names.begin();
          if (at >= names.size() || !arrays[p].Append(values[at], run.table->kinds[present[p]])) {
            return absl::InvalidArgumentError(
                absl::StrCat("batch rejected: change to ", c->table(), " key ", c->key(),
                             " has a column ", column, " that is not a ", type, " value"));
          }
        }
      }
      for (ColumnArray& a : arrays) run.params.emplace_back(std::move(a).Finish());
      if (shapes[begin] != 0) {
        std::vector<std::string> present_names;
        for (size_t c : present) present_names.push_back(run.table->columns[c].first);
        run.partial_upsert_sql = UpsertSql(*run.table, present_names, /*check_tombstones=*/true);
        run.partial_upsert_no_tombstones_sql = UpsertSql(*run.table, present_names, false);
      }
    }
    batch.runs.push_back(std::move(run));
    begin = end;
  }
  return batch;
}

absl::StatusOr<ApplyStats> ApplyPrepared(store::Transaction& tx, const ApplyPolicy& policy,
                                         const PreparedBatch& batch, bool snapshot_keys) {
  ApplyStats stats;
  stats.received = batch.received;
  if (batch.received > policy.max_changes) {
    return absl::InvalidArgumentError(absl::StrCat("batch rejected: ", batch.received,
                                                   " changes, more than the limit of ",
                                                   policy.max_changes));
  }
  for (const PreparedRun& run : batch.runs) {
    for (const v1::Change* c : run.changes) {
      absl::Status s = ValidatePolicy(*c, *run.table, policy);
      if (!s.ok()) return absl::Status(s.code(), absl::StrCat("batch rejected: ", s.message()));
    }
  }
  for (const PreparedRun& run : batch.runs) {
    const TableInfo& table = *run.table;
    const std::string* sql = &table.delete_sql;
    if (!run.is_delete) {
      const bool partial = !run.partial_upsert_sql.empty();
      sql = partial ? &run.partial_upsert_sql : &table.upsert_sql;
      if (run.changes.size() > kTombstoneProbeRows) {
        // The upsert looks up each row's tombstone; most tables have none,
        // and for a long run one look saves the lookups.
        auto any = tx.ExecCached("SELECT EXISTS (SELECT 1 FROM repl_tombstone WHERE tbl = $1)",
                                 {table.name});
        if (!any.ok()) return AsRejection(any.status());
        if (!any->GetBool(0, 0)) {
          sql = partial ? &run.partial_upsert_no_tombstones_sql : &table.upsert_no_tombstones_sql;
        }
      }
    }
    // Prepared once per connection: a small batch would otherwise spend
    // more on planning than on applying.
    auto result = tx.ExecCached(*sql, run.params);
    if (!result.ok()) return AsRejection(result.status());
    if (!run.is_delete) {
      // Rows were checked against their changes' keys and stamps in
      // PrepareChanges.
      stats.applied += static_cast<int64_t>(result->affected_rows());
    }
    // A delete returns the keys it applied: each must be a change's.
    for (size_t i = 0; i < result->size(); ++i) {
      if (run.by_key.find(result->Get(i, 0)) == run.by_key.end()) {
        return absl::InvalidArgumentError(absl::StrCat("batch rejected: a row of ", table.name,
                                                       " does not match its change's key ",
                                                       std::string(result->Get(i, 0))));
      }
      ++stats.applied;
    }
    if (snapshot_keys) {
      std::string keys = "[";
      for (size_t i = 0; i < run.changes.size(); ++i) {
        if (i) keys.push_back(',');
        AppendJsonString(keys, run.changes[i]->key());
      }
      keys.push_back(']');
      auto r = tx.Exec(
          "INSERT INTO repl_snap_keys SELECT $1, jsonb_array_elements_text($2::jsonb) ON "
          "CONFLICT DO NOTHING",
          {table.name, keys});
      if (!r.ok()) return AsRejection(r.status());
    }
  }
  return stats;
}

absl::StatusOr<ApplyStats> ApplyChanges(
    store::Transaction& tx, const Catalog& catalog, const ApplyPolicy& policy,
    const google::protobuf::RepeatedPtrField<v1::Change>& changes, bool snapshot_keys) {
  ASSIGN_OR_RETURN(PreparedBatch batch, PrepareChanges(catalog, changes, policy.max_changes));
  return ApplyPrepared(tx, policy, batch, snapshot_keys);
}

absl::Status StartSnapshot(store::Transaction& tx) {
  RETURN_IF_ERROR(tx.Exec("CREATE TEMP TABLE IF NOT EXISTS repl_snap_keys (tbl text, key text, "
                          "PRIMARY KEY (tbl, key)) ON COMMIT DELETE ROWS")
                      .status());
  return tx.Exec("DELETE FROM repl_snap_keys").status();
}

absl::StatusOr<int64_t> FinishSnapshot(store::Transaction& tx, const Catalog& catalog,
                                       const ApplyPolicy& policy,
                                       const std::vector<std::string>& tables,
                                       const std::vector<std::string>& origins,
                                       bool origins_exclude) {
  int64_t deleted = 0;
  for (const std::string& name : tables) {
    const TableInfo* table = catalog.Find(name);
    if (table == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("snapshot names unknown table \"", name, "\""));
    }
    if (std::find(policy.allowed_scopes.begin(), policy.allowed_scopes.end(), table->scope) ==
        policy.allowed_scopes.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("snapshot names table ", name, " (", table->scope,
                       " data), which may not come from ", policy.peer));
    }
    ASSIGN_OR_RETURN(store::Result gone,
                     tx.Exec(table->stale_delete_sql, {store::TextArrayLiteral(origins),
                                                       origins_exclude ? "false" : "true"}));
    deleted += gone.size();
  }
  return deleted;
}

absl::StatusOr<std::optional<Inbound>> LockInbound(store::Transaction& tx,
                                                   const std::string& peer) {
  ASSIGN_OR_RETURN(
      store::Result r,
      tx.ExecCached("SELECT epoch, xid, log_id FROM repl_inbound WHERE peer = $1 FOR UPDATE",
                    {peer}));
  if (r.empty()) return std::optional<Inbound>();
  return std::optional<Inbound>(
      Inbound{r.GetString(0, 0), Position{r.GetInt(0, 1), r.GetInt(0, 2)}});
}

absl::StatusOr<bool> AdvanceInbound(store::Transaction& tx, const std::string& peer,
                                    const Inbound& inbound) {
  ASSIGN_OR_RETURN(
      store::Result r,
      tx.ExecCached("UPDATE repl_inbound SET xid = $3, log_id = $4, updated_at = now() "
                    "WHERE peer = $1 AND epoch = $2 AND (xid, log_id) < ($3::bigint, "
                    "$4::bigint)",
                    {peer, inbound.epoch, std::to_string(inbound.position.xid),
                     std::to_string(inbound.position.log_id)}));
  return r.affected_rows() == 1;
}

absl::Status StoreInbound(store::Transaction& tx, const std::string& peer, const Inbound& inbound) {
  return tx
      .Exec(
          "INSERT INTO repl_inbound (peer, epoch, xid, log_id) VALUES ($1, $2, $3, $4) ON "
          "CONFLICT (peer) DO UPDATE SET epoch = EXCLUDED.epoch, xid = EXCLUDED.xid, log_id "
          "= EXCLUDED.log_id, updated_at = now()",
          {peer, inbound.epoch, std::to_string(inbound.position.xid),
           std::to_string(inbound.position.log_id)})
      .status();
}

}  // namespace strata::replication
