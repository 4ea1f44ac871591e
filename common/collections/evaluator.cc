#include "common/collections/evaluator.h"

#include <openssl/sha.h>

#include <map>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/collections/query.h"

namespace strata::collections {
namespace {

using store::TextArrayLiteral;

struct Rule {
  std::string name, kind, query, device_id, ref;
};

struct Collection {
  std::string name;
  std::string limiting;  // empty: none
  bool all_devices = false;
  std::vector<Rule> rules;
  // Derived:
  std::string digest;
  std::string error;  // why it cannot be evaluated
  int level = -1;
  std::vector<std::string> Deps() const {
    std::vector<std::string> d;
    if (!limiting.empty()) d.push_back(limiting);
    for (const auto& r : rules) {
      if (r.kind == "include" || r.kind == "exclude") d.push_back(r.ref);
    }
    return d;
  }
};

std::string Sha256Hex(const std::string& s) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), md);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(md), SHA256_DIGEST_LENGTH));
}

// Every collection with its rules; levels assigned in dependency order
// (cycles and unknown references leave an error and level -1).
absl::StatusOr<std::map<std::string, Collection>> LoadDefinitions(store::Transaction& tx) {
  std::map<std::string, Collection> out;
  ASSIGN_OR_RETURN(store::Result cs,
                   tx.Exec("SELECT name, coalesce(limiting, ''), all_devices FROM collections"));
  for (size_t i = 0; i < cs.size(); ++i) {
    Collection c;
    c.name = cs.GetString(i, 0);
    c.limiting = cs.GetString(i, 1);
    c.all_devices = cs.GetBool(i, 2);
    out[c.name] = std::move(c);
  }
  ASSIGN_OR_RETURN(store::Result rs,
                   tx.Exec("SELECT collection, name, kind, coalesce(query, ''), "
                           "coalesce(device_id::text, ''), coalesce(ref, '') FROM "
                           "collection_rules ORDER BY collection, name"));
  for (size_t i = 0; i < rs.size(); ++i) {
    auto it = out.find(rs.GetString(i, 0));
    if (it == out.end()) continue;  // rules of a deleted collection (replication order)
    it->second.rules.push_back({rs.GetString(i, 1), rs.GetString(i, 2), rs.GetString(i, 3),
                                rs.GetString(i, 4), rs.GetString(i, 5)});
  }
  for (auto& [name, c] : out) {
    std::string def = absl::StrCat(c.limiting, "\x1f", c.all_devices ? "all" : "", "\x1e");
    for (const auto& r : c.rules) {
      absl::StrAppend(&def, r.name, "\x1f", r.kind, "\x1f", r.query, "\x1f", r.device_id, "\x1f",
                      r.ref, "\x1e");
      if (r.kind == "query") {
        auto q = CompileQuery(r.query);
        if (!q.ok() && c.error.empty()) {
          c.error = absl::StrCat("rule ", r.name, ": ", q.status().message());
        }
      }
    }
    c.digest = Sha256Hex(def);
    for (const auto& d : c.Deps()) {
      if (!out.count(d) && c.error.empty()) c.error = "references unknown collection " + d;
    }
  }
  // Levels: a collection comes after everything it depends on.
  bool progress = true;
  while (progress) {
    progress = false;
    for (auto& [name, c] : out) {
      if (c.level >= 0) continue;
      int level = 0;
      bool ready = true;
      for (const auto& d : c.Deps()) {
        auto it = out.find(d);
        if (it == out.end() || it->second.level < 0) {
          ready = false;
          break;
        }
        level = std::max(level, it->second.level + 1);
      }
      if (ready) {
        c.level = level;
        progress = true;
      }
    }
  }
  for (auto& [name, c] : out) {
    if (c.level < 0 && c.error.empty()) {
      c.error = "depends on a collection that cannot be evaluated (a reference cycle?)";
    }
  }
  return out;
}

// PostgreSQL takes at most 65,535 parameters per statement.
constexpr size_t kMaxStatementParams = 30000;

// Builds one statement that brings the membership of collections (of one
// level) up to date, for the devices in `filter` (all of the site's if none).
class Statement {
 public:
  Statement(const std::string& site, const std::vector<std::string>* filter) {
    site_ = P(site);
    if (filter) filter_ = P(TextArrayLiteral(*filter)) + "::uuid[]";
  }

  std::string P(const std::string& v) {
    params_.emplace_back(v);
    return absl::StrCat("$", params_.size());
  }

  // `limiting_all`: the limiting collection holds every device of the site
  // (All Systems), so membership of it needs no lookup.
  // ResourceExhausted (nothing added) when the statement would pass
  // kMaxStatementParams: run it and add the collection to a new one.
  absl::Status AddWant(const Collection& c, bool limiting_all) {
    const size_t params_before = params_.size();
    absl::Status s = AddWantUnchecked(c, limiting_all);
    if (s.ok() && params_.size() > kMaxStatementParams) {
      params_.resize(params_before);
      wants_.pop_back();
      names_.pop_back();
      return wants_.empty() ? absl::InvalidArgumentError(absl::StrCat(
                                  "its rules have more values than one statement can take (",
                                  kMaxStatementParams, ")"))
                            : absl::ResourceExhaustedError("statement full");
    }
    if (!s.ok()) params_.resize(params_before);
    return s;
  }

  size_t size() const { return wants_.size(); }
  const std::vector<std::string>& names() const { return names_; }
  bool empty() const { return wants_.empty(); }

  // Applies the difference; returns (removed, added). `cached`: the
  // statement is prepared and its generic plan kept (incremental evaluation
  // runs the same statement for device after device; planning two hundred
  // subqueries costs far more than running them for a few devices).
  absl::StatusOr<std::pair<int64_t, int64_t>> Run(store::Transaction& tx, bool cached) {
    const std::string names = P(TextArrayLiteral(names_));
    // One hashed full join of what should be and what is: per-row
    // anti-joins against a CTE go quadratic once a collection has many
    // members, and two EXCEPTs read both sets twice.
    std::string sql = absl::StrCat(
        "WITH want AS (", absl::StrJoin(wants_, " UNION ALL "),
        "), cur AS (SELECT m.collection, m.device_id FROM collection_members m WHERE "
        "m.collection = ANY(",
        names, "::text[]) AND m.site_code = ", site_,
        filter_.empty() ? "" : absl::StrCat(" AND m.device_id = ANY(", filter_, ")"),
        "), diff AS MATERIALIZED (SELECT coalesce(w.collection, c.collection) AS collection, "
        "coalesce(w.id, c.device_id) AS device_id, w.id IS NULL AS gone FROM want w FULL JOIN "
        "cur c ON c.collection = w.collection AND c.device_id = w.id WHERE w.id IS NULL OR "
        "c.device_id IS NULL), gone AS (DELETE FROM collection_members m USING diff g WHERE "
        "g.gone AND m.collection = g.collection AND m.device_id = g.device_id RETURNING 1), "
        "added AS (INSERT INTO collection_members (collection, device_id, site_code) SELECT "
        "a.collection, a.device_id, ",
        site_,
        " FROM diff a WHERE NOT a.gone ON CONFLICT (collection, device_id) DO NOTHING RETURNING "
        "1) SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM added)");
    store::Result r;
    if (cached) {
      RETURN_IF_ERROR(tx.Exec("SET LOCAL plan_cache_mode = force_generic_plan").status());
      ASSIGN_OR_RETURN(r, tx.ExecCached(sql, params_));
    } else {
      ASSIGN_OR_RETURN(r, tx.Exec(sql, params_));
    }
    return std::make_pair(r.GetInt(0, 0), r.GetInt(0, 1));
  }

 private:
  absl::Status AddWantUnchecked(const Collection& c, bool limiting_all) {
    std::string sql = absl::StrCat("SELECT ", P(c.name),
                                   "::text AS collection, d.id FROM devices d"
                                   " WHERE d.site_code = ",
                                   site_);
    if (!filter_.empty()) absl::StrAppend(&sql, " AND d.id = ANY(", filter_, ")");
    if (!c.limiting.empty() && !limiting_all) {
      absl::StrAppend(&sql, " AND EXISTS (SELECT 1 FROM collection_members l WHERE l.collection = ",
                      P(c.limiting), " AND l.device_id = d.id)");
    }
    std::vector<std::string> any, direct, include, exclude;
    for (const auto& r : c.rules) {
      if (r.kind == "query") {
        ASSIGN_OR_RETURN(CompiledQuery q,
                         CompileQuery(r.query, static_cast<int>(params_.size()) + 1));
        for (auto& p : q.params) params_.emplace_back(std::move(p));
        any.push_back(absl::StrCat("(", q.sql, ")"));
      } else if (r.kind == "direct") {
        direct.push_back(r.device_id);
      } else if (r.kind == "include") {
        include.push_back(r.ref);
      } else if (r.kind == "exclude") {
        exclude.push_back(r.ref);
      }
    }
    if (!direct.empty()) {
      any.push_back(absl::StrCat("d.id = ANY(", P(TextArrayLiteral(direct)), "::uuid[])"));
    }
    if (!include.empty()) {
      any.push_back(
          absl::StrCat("EXISTS (SELECT 1 FROM collection_members i WHERE i.collection = ANY(",
                       P(TextArrayLiteral(include)), "::text[]) AND i.device_id = d.id)"));
    }
    if (c.all_devices) any = {"true"};
    absl::StrAppend(&sql, " AND (", any.empty() ? "false" : absl::StrJoin(any, " OR "), ")");
    if (!exclude.empty()) {
      absl::StrAppend(
          &sql, " AND NOT EXISTS (SELECT 1 FROM collection_members e WHERE e.collection = ANY(",
          P(TextArrayLiteral(exclude)), "::text[]) AND e.device_id = d.id)");
    }
    wants_.push_back(std::move(sql));
    names_.push_back(c.name);
    return absl::OkStatus();
  }

  store::Params params_;
  std::string site_, filter_;
  std::vector<std::string> wants_, names_;
};

bool LimitingAll(const std::map<std::string, Collection>& defs, const Collection& c) {
  auto it = defs.find(c.limiting);
  return it != defs.end() && it->second.all_devices;
}

absl::Status RecordError(store::Connection& conn, const Collection& c) {
  return conn
      .Exec(
          "INSERT INTO collection_eval (collection, definition, evaluated_at, error) VALUES ($1, "
          "$2, now(), $3) ON CONFLICT (collection) DO UPDATE SET definition = "
          "EXCLUDED.definition, evaluated_at = now(), error = EXCLUDED.error",
          {c.name, c.digest, c.error})
      .status();
}

}  // namespace

absl::StatusOr<EvalStats> Evaluator::EvaluateChanged(store::Connection& conn, bool all) {
  EvalStats stats;
  std::map<std::string, Collection> defs;
  std::map<std::string, std::string> evaluated;  // collection -> digest + error
  std::map<std::string, int64_t> counted;        // collection -> members, when it went well
  RETURN_IF_ERROR(conn.Transact([&](store::Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(defs, LoadDefinitions(tx));
    ASSIGN_OR_RETURN(store::Result e,
                     tx.Exec("SELECT collection, definition || coalesce(error, ''), members, "
                             "error IS NULL FROM collection_eval"));
    for (size_t i = 0; i < e.size(); ++i) {
      evaluated[e.GetString(i, 0)] = e.GetString(i, 1);
      if (e.GetBool(i, 3)) counted[e.GetString(i, 0)] = e.GetInt(i, 2);
    }
    // Collections deleted since (evaluated or not): their members go.
    ASSIGN_OR_RETURN(store::Result gone,
                     tx.Exec("WITH gone AS (DELETE FROM collection_members m WHERE m.site_code "
                             "= $1 AND NOT EXISTS (SELECT 1 FROM collections c WHERE c.name = "
                             "m.collection) RETURNING m.collection) SELECT DISTINCT collection "
                             "FROM gone",
                             {site_}));
    for (size_t i = 0; i < gone.size(); ++i) {
      LogInfo("collection.removed", {{"collection", gone.GetString(i, 0)}});
    }
    return tx
        .Exec(
            "DELETE FROM collection_eval e WHERE NOT EXISTS (SELECT 1 FROM collections c "
            "WHERE c.name = e.collection)")
        .status();
  }));

  std::vector<Collection*> order;
  for (auto& [name, c] : defs) order.push_back(&c);
  std::stable_sort(order.begin(), order.end(),
                   [](const Collection* a, const Collection* b) { return a->level < b->level; });
  std::set<std::string> redone, failed;
  for (Collection* c : order) {
    bool due = all;
    auto it = evaluated.find(c->name);
    if (it == evaluated.end() || it->second != c->digest + c->error) due = true;
    for (const auto& d : c->Deps()) due = due || redone.count(d);
    if (!due) continue;
    for (const auto& d : c->Deps()) {
      if (failed.count(d) && c->error.empty()) {
        c->error = absl::StrCat("depends on ", d, ", which could not be evaluated");
      }
    }
    int64_t members = 0;
    absl::Status s = c->error.empty() ? absl::OkStatus() : absl::FailedPreconditionError(c->error);
    if (s.ok()) {
      s = conn.Transact([&](store::Transaction& tx) -> absl::Status {
        Statement st(site_, nullptr);
        RETURN_IF_ERROR(st.AddWant(*c, LimitingAll(defs, *c)));
        ASSIGN_OR_RETURN(auto diff, st.Run(tx, false));
        auto before = counted.find(c->name);
        if (before != counted.end()) {
          members = before->second + diff.second - diff.first;
        } else {
          ASSIGN_OR_RETURN(store::Result n,
                           tx.Exec("SELECT count(*) FROM collection_members WHERE collection = "
                                   "$1 AND site_code = $2",
                                   {c->name, site_}));
          members = n.GetInt(0, 0);
        }
        RETURN_IF_ERROR(
            tx.Exec("INSERT INTO collection_eval (collection, definition, evaluated_at, members, "
                    "error) VALUES ($1, $2, now(), $3, NULL) ON CONFLICT (collection) DO UPDATE "
                    "SET definition = EXCLUDED.definition, evaluated_at = now(), members = "
                    "EXCLUDED.members, error = NULL",
                    {c->name, c->digest, absl::StrCat(members)})
                .status());
        stats.removed += diff.first;
        stats.added += diff.second;
        return absl::OkStatus();
      });
    }
    if (absl::IsUnavailable(s)) return s;  // the database went away: try again later
    if (!s.ok()) {
      // This collection alone: it keeps the members it had, the rest go on.
      if (c->error.empty()) c->error = std::string(s.message());
      ++stats.failed;
      failed.insert(c->name);
      if (it == evaluated.end() || it->second != c->digest + c->error) {
        LogWarning("collection.not_evaluated", {{"collection", c->name}, {"error", c->error}});
      }
      RETURN_IF_ERROR(RecordError(conn, *c));
      continue;
    }
    redone.insert(c->name);
    ++stats.collections;
    LogDebug("collection.evaluated", {{"collection", c->name}, {"members", members}});
  }
  return stats;
}

absl::StatusOr<std::string> Evaluator::DefinitionsVersion(store::Connection& conn) {
  ASSIGN_OR_RETURN(store::Result r,
                   conn.Exec("SELECT (SELECT count(*) || ':' || coalesce(sum(_hlc), 0) FROM "
                             "collections) || '/' || (SELECT count(*) || ':' || "
                             "coalesce(sum(_hlc), 0) FROM collection_rules)"));
  return r.GetString(0, 0);
}

absl::StatusOr<EvalStats> Evaluator::EvaluateDevices(store::Transaction& tx,
                                                     const std::vector<std::string>& device_ids) {
  EvalStats stats;
  if (device_ids.empty()) return stats;
  ASSIGN_OR_RETURN(auto defs, LoadDefinitions(tx));
  // A collection the last full evaluation found broken (for this very
  // definition) waits for the definition to change, instead of failing on
  // every device.
  ASSIGN_OR_RETURN(store::Result broken, tx.Exec("SELECT collection, definition FROM "
                                                 "collection_eval WHERE error IS NOT NULL"));
  for (size_t i = 0; i < broken.size(); ++i) {
    auto it = defs.find(broken.GetString(i, 0));
    if (it != defs.end() && it->second.digest == broken.GetString(i, 1) &&
        it->second.error.empty()) {
      it->second.error = "failed its last full evaluation";
    }
  }
  std::map<int, std::vector<const Collection*>> levels;
  for (const auto& [name, c] : defs) {
    if (c.error.empty()) {
      levels[c.level].push_back(&c);
    } else {
      ++stats.failed;
    }
  }
  // Runs one statement under a savepoint; if it fails, its collections one
  // by one, so that one broken collection does not hold up the others.
  auto run = [&](Statement& st, const std::vector<const Collection*>& group) -> absl::Status {
    RETURN_IF_ERROR(tx.Exec("SAVEPOINT collections").status());
    auto diff = st.Run(tx, true);
    if (diff.ok()) {
      stats.removed += diff->first;
      stats.added += diff->second;
      stats.collections += st.size();
      return tx.Exec("RELEASE SAVEPOINT collections").status();
    }
    if (absl::IsUnavailable(diff.status())) return diff.status();
    RETURN_IF_ERROR(tx.Exec("ROLLBACK TO SAVEPOINT collections").status());
    for (const Collection* c : group) {
      if (std::find(st.names().begin(), st.names().end(), c->name) == st.names().end()) continue;
      Statement one(site_, &device_ids);
      absl::Status s = one.AddWant(*c, LimitingAll(defs, *c));
      if (s.ok()) {
        RETURN_IF_ERROR(tx.Exec("SAVEPOINT collection").status());
        auto d = one.Run(tx, true);
        if (absl::IsUnavailable(d.status())) return d.status();
        if (d.ok()) {
          stats.removed += d->first;
          stats.added += d->second;
          ++stats.collections;
          RETURN_IF_ERROR(tx.Exec("RELEASE SAVEPOINT collection").status());
          continue;
        }
        s = d.status();
        RETURN_IF_ERROR(tx.Exec("ROLLBACK TO SAVEPOINT collection").status());
      }
      ++stats.failed;  // recorded by the next full evaluation
      LogDebug("collection.incremental_failed", {{"collection", c->name}, {"error", s}});
    }
    return tx.Exec("RELEASE SAVEPOINT collections").status();
  };
  for (const auto& [level, group] : levels) {
    auto st = std::make_unique<Statement>(site_, &device_ids);
    for (const Collection* c : group) {
      absl::Status s = st->AddWant(*c, LimitingAll(defs, *c));
      if (absl::IsResourceExhausted(s)) {
        RETURN_IF_ERROR(run(*st, group));
        st = std::make_unique<Statement>(site_, &device_ids);
        s = st->AddWant(*c, LimitingAll(defs, *c));
      }
      if (!s.ok()) {
        ++stats.failed;
        LogDebug("collection.incremental_failed", {{"collection", c->name}, {"error", s}});
      }
    }
    if (!st->empty()) RETURN_IF_ERROR(run(*st, group));
  }
  stats.devices = device_ids.size();
  return stats;
}

absl::StatusOr<EvalStats> Evaluator::EvaluateDirty(store::Connection& conn, int max_devices) {
  EvalStats stats;
  RETURN_IF_ERROR(conn.Transact([&](store::Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(
        store::Result r,
        tx.Exec("DELETE FROM collection_dirty WHERE device_id IN (SELECT device_id FROM "
                "collection_dirty ORDER BY since LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING "
                "device_id::text",
                {absl::StrCat(max_devices)}));
    std::vector<std::string> ids;
    for (size_t i = 0; i < r.size(); ++i) ids.push_back(r.GetString(i, 0));
    ASSIGN_OR_RETURN(stats, EvaluateDevices(tx, ids));
    return absl::OkStatus();
  }));
  return stats;
}

absl::Status CheckRule(store::Transaction& tx, const std::string& collection,
                       const std::string& kind, const std::string& query_or_ref) {
  if (kind == "query") return CompileQuery(query_or_ref).status();
  if (kind != "include" && kind != "exclude" && kind != "limiting") return absl::OkStatus();
  ASSIGN_OR_RETURN(auto defs, LoadDefinitions(tx));
  if (!defs.count(query_or_ref)) {
    return absl::NotFoundError(absl::StrCat("no collection named \"", query_or_ref, "\""));
  }
  if (query_or_ref == collection) {
    return absl::InvalidArgumentError(
        absl::StrCat("collection \"", collection, "\" cannot ", kind, " itself"));
  }
  // Would `collection` -> `ref` close a cycle? Only if ref reaches collection.
  std::set<std::string> seen;
  std::vector<std::string> todo{query_or_ref};
  while (!todo.empty()) {
    std::string n = todo.back();
    todo.pop_back();
    if (n == collection) {
      return absl::InvalidArgumentError(
          absl::StrCat("collection \"", collection, "\" cannot ", kind, " \"", query_or_ref,
                       "\": that collection already depends on it (a cycle)"));
    }
    if (!seen.insert(n).second) continue;
    auto it = defs.find(n);
    if (it == defs.end()) continue;
    for (const auto& d : it->second.Deps()) todo.push_back(d);
  }
  return absl::OkStatus();
}

}  // namespace strata::collections
