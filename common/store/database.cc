#include "common/store/database.h"

#include <algorithm>
#include <deque>
#include <map>
#include <pqxx/pqxx>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/base/status.h"

namespace strata::store {

struct Result::Impl {
  pqxx::result result;
};

Result::Result() : impl_(std::make_shared<Impl>()) {}
Result::Result(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
size_t Result::size() const { return impl_->result.size(); }
int Result::columns() const { return static_cast<int>(impl_->result.columns()); }
std::string Result::ColumnName(int col) const { return impl_->result.column_name(col); }
bool Result::IsNull(size_t row, int col) const { return impl_->result[row][col].is_null(); }
std::string_view Result::Get(size_t row, int col) const {
  const auto& f = impl_->result[row][col];
  if (f.is_null()) return {};
  return std::string_view(f.c_str(), f.size());
}
int64_t Result::GetInt(size_t row, int col) const {
  int64_t v = 0;
  if (!IsNull(row, col)) {
    std::string_view s = Get(row, col);
    (void)absl::SimpleAtoi(absl::string_view(s.data(), s.size()), &v);
  }
  return v;
}
bool Result::GetBool(size_t row, int col) const { return Get(row, col) == "t"; }
size_t Result::affected_rows() const { return impl_->result.affected_rows(); }

absl::Status StatusFromSqlState(absl::string_view state, absl::string_view message) {
  std::string msg(message);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  if (state == "40001" || state == "40P01") return absl::AbortedError(msg);
  if (state == "23505") return absl::AlreadyExistsError(msg);
  if (absl::StartsWith(state, "23")) return absl::FailedPreconditionError(msg);
  if (absl::StartsWith(state, "22") || state == "P0001") return absl::InvalidArgumentError(msg);
  if (absl::StartsWith(state, "08") || absl::StartsWith(state, "57P")) {
    return absl::UnavailableError(msg);
  }
  if (state == "57014") return absl::CancelledError(msg);
  if (state == "42501") return absl::PermissionDeniedError(msg);
  if (absl::StartsWith(state, "53")) return absl::ResourceExhaustedError(msg);
  if (state == "55P03") return absl::AbortedError(msg);
  return absl::InternalError(absl::StrCat(msg, " (sqlstate ", state, ")"));
}

absl::Status StatusFromException(const std::exception& e) {
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr) {
    return absl::UnavailableError(absl::StrCat("database connection lost: ", e.what()));
  }
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) {
    return absl::UnavailableError(absl::StrCat("database commit outcome unknown: ", e.what()));
  }
  if (dynamic_cast<const pqxx::statement_completion_unknown*>(&e) != nullptr) {
    return absl::UnavailableError(absl::StrCat("database statement outcome unknown: ", e.what()));
  }
  // Serialization failures and deadlocks (libpqxx 6 does not derive them from sql_error).
  if (dynamic_cast<const pqxx::transaction_rollback*>(&e) != nullptr) {
    return absl::AbortedError(e.what());
  }
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) {
    return StatusFromSqlState(sql->sqlstate(), sql->what());
  }
  if (dynamic_cast<const pqxx::usage_error*>(&e) != nullptr) {
    return absl::InternalError(absl::StrCat("database usage error: ", e.what()));
  }
  return absl::InternalError(absl::StrCat("database error: ", e.what()));
}

namespace {

// Statements prepared on one connection (ExecCached), oldest first.
struct CachedStatements {
  std::map<std::string, std::string> by_sql;  // SQL -> name
  std::deque<std::string> order;              // SQL, oldest first
  std::vector<std::string> to_drop;           // names, dropped between transactions
  int next = 0;
};

class TransactionImpl final : public Transaction {
 public:
  TransactionImpl(pqxx::transaction_base& tx, CachedStatements& cache) : tx_(tx), cache_(cache) {}

  absl::StatusOr<Result> ExecCached(const std::string& sql, const Params& params) override {
    try {
      auto it = cache_.by_sql.find(sql);
      std::string name;
      if (it == cache_.by_sql.end()) {
        name = absl::StrCat("strata_cached_", cache_.next++);
        tx_.conn().prepare(name, sql);
        cache_.by_sql[sql] = name;
        cache_.order.push_back(sql);
        if (cache_.order.size() > kMaxCachedStatements) {
          cache_.to_drop.push_back(cache_.by_sql[cache_.order.front()]);
          cache_.by_sql.erase(cache_.order.front());
          cache_.order.pop_front();
        }
      } else {
        name = it->second;
      }
      std::vector<const char*> raw;
      raw.reserve(params.size());
      for (const Param& p : params) raw.push_back(p ? p->c_str() : nullptr);
      auto impl = std::make_shared<Result::Impl>();
      impl->result = tx_.exec_prepared(name, pqxx::prepare::make_dynamic_params(raw));
      return Result(std::move(impl));
    } catch (const std::exception& e) {
      return StatusFromException(e);
    }
  }
  absl::StatusOr<Result> Exec(std::string_view sql, const Params& params) override {
    try {
      std::vector<const char*> raw;
      raw.reserve(params.size());
      for (const Param& p : params) raw.push_back(p ? p->c_str() : nullptr);
      auto impl = std::make_shared<Result::Impl>();
      // Without parameters, plain exec: it also runs multi-statement scripts (migrations).
      impl->result = params.empty() ? tx_.exec(std::string(sql))
                                    : tx_.exec_params(std::string(sql),
                                                      pqxx::prepare::make_dynamic_params(raw));
      return Result(std::move(impl));
    } catch (const std::exception& e) {
      return StatusFromException(e);
    }
  }

 private:
  pqxx::transaction_base& tx_;
  CachedStatements& cache_;
};

class Receiver final : public pqxx::notification_receiver {
 public:
  Receiver(pqxx::connection_base& c, const std::string& channel)
      : pqxx::notification_receiver(c, channel) {}
  void operator()(const std::string&, int) override {}
};

}  // namespace

struct Connection::Impl {
  std::unique_ptr<pqxx::connection> conn;
  std::vector<std::unique_ptr<Receiver>> receivers;
  CachedStatements cached;
};

Connection::Connection(std::string conninfo, std::unique_ptr<Impl> impl)
    : conninfo_(std::move(conninfo)), impl_(std::move(impl)) {}
Connection::~Connection() = default;

absl::StatusOr<std::unique_ptr<Connection>> Connection::Open(const std::string& conninfo) {
  try {
    auto impl = std::make_unique<Impl>();
    impl->conn = std::make_unique<pqxx::connection>(conninfo);
    return std::unique_ptr<Connection>(new Connection(conninfo, std::move(impl)));
  } catch (const std::exception& e) {
    std::string what = e.what();
    while (!what.empty() && what.back() == '\n') what.pop_back();
    return absl::UnavailableError(absl::StrCat("cannot connect to the database: ", what));
  }
}

bool Connection::IsOpen() const { return impl_->conn && impl_->conn->is_open(); }

absl::Status Connection::Transact(const std::function<absl::Status(Transaction&)>& fn,
                                  Isolation isolation, int max_attempts) {
  absl::Status status;
  for (int attempt = 1; attempt <= max_attempts; ++attempt) {
    try {
      // Cached statements evicted meanwhile go now, outside any transaction.
      for (const auto& name : impl_->cached.to_drop) impl_->conn->unprepare(name);
      impl_->cached.to_drop.clear();
      std::unique_ptr<pqxx::transaction_base> tx;
      switch (isolation) {
        case Isolation::kReadCommitted:
          tx = std::make_unique<pqxx::work>(*impl_->conn);
          break;
        case Isolation::kRepeatableRead:
          tx = std::make_unique<pqxx::transaction<pqxx::repeatable_read>>(*impl_->conn);
          break;
        case Isolation::kSerializable:
          tx = std::make_unique<pqxx::transaction<pqxx::serializable>>(*impl_->conn);
          break;
      }
      TransactionImpl t(*tx, impl_->cached);
      status = fn(t);
      if (status.ok()) {
        tx->commit();
        return absl::OkStatus();
      }
      tx->abort();
    } catch (const std::exception& e) {
      status = StatusFromException(e);
    }
    if (status.code() != absl::StatusCode::kAborted) return status;
  }
  return status;
}

absl::StatusOr<Result> Connection::Exec(std::string_view sql, const Params& params) {
  absl::StatusOr<Result> out;
  absl::Status s = Transact([&](Transaction& tx) {
    out = tx.Exec(sql, params);
    return out.status();
  });
  if (!s.ok()) return s;
  return out;
}

absl::Status Connection::Listen(const std::string& channel) {
  try {
    impl_->receivers.push_back(std::make_unique<Receiver>(*impl_->conn, channel));
    impl_->conn->get_notifs();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return StatusFromException(e);
  }
}

absl::StatusOr<int> Connection::AwaitNotification(int timeout_ms) {
  try {
    int n = impl_->conn->get_notifs();
    if (n > 0) return n;
    return impl_->conn->await_notification(timeout_ms / 1000, (timeout_ms % 1000) * 1000);
  } catch (const std::exception& e) {
    return StatusFromException(e);
  }
}

std::string QuoteIdent(std::string_view ident) {
  std::string out = "\"";
  for (char c : ident) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

std::string QuoteLiteral(std::string_view literal) {
  std::string out = "'";
  for (char c : literal) {
    if (c == '\'') out.push_back('\'');
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

std::string TextArrayLiteral(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out.push_back(',');
    out.push_back('"');
    for (char c : values[i]) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

std::vector<std::string> ParseTextArray(const std::string& literal) {
  std::vector<std::string> out;
  if (literal.size() < 2) return out;
  std::string cur;
  bool quoted = false, in_item = false;
  for (size_t i = 1; i + 1 < literal.size(); ++i) {
    char c = literal[i];
    if (quoted) {
      if (c == '\\' && i + 2 < literal.size()) {
        cur.push_back(literal[++i]);
      } else if (c == '"') {
        quoted = false;
      } else {
        cur.push_back(c);
      }
    } else if (c == '"') {
      quoted = in_item = true;
    } else if (c == ',') {
      out.push_back(cur);
      cur.clear();
      in_item = false;
    } else {
      cur.push_back(c);
      in_item = true;
    }
  }
  if (in_item || !cur.empty() || literal.size() > 2) out.push_back(cur);
  return out;
}

absl::Status ApplyMigrations(Connection& conn, absl::string_view component,
                             const EmbeddedFile* files, int count) {
  std::vector<const EmbeddedFile*> ordered;
  for (int i = 0; i < count; ++i) ordered.push_back(&files[i]);
  std::sort(ordered.begin(), ordered.end(), [](const EmbeddedFile* a, const EmbeddedFile* b) {
    return std::string_view(a->name) < std::string_view(b->name);
  });
  for (const EmbeddedFile* f : ordered) {
    int version = 0;
    absl::string_view name(f->name);
    if (name.size() < 5 || !absl::SimpleAtoi(name.substr(0, 4), &version)) {
      return absl::InternalError(absl::StrCat("migration ", name, " is not named NNNN_name.sql"));
    }
    bool applied = false;
    absl::Status s = conn.Transact([&](Transaction& tx) -> absl::Status {
      // Serializes concurrent starts against one database.
      auto r = tx.Exec("SELECT pg_advisory_xact_lock(7250001)");
      if (!r.ok()) return r.status();
      r = tx.Exec(
          "CREATE TABLE IF NOT EXISTS schema_migrations (component text NOT NULL, version int "
          "NOT NULL, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY "
          "KEY (component, version))");
      if (!r.ok()) return r.status();
      r = tx.Exec("SELECT 1 FROM schema_migrations WHERE component = $1 AND version = $2",
                  {std::string(component), std::to_string(version)});
      if (!r.ok()) return r.status();
      if (!r->empty()) return absl::OkStatus();
      r = tx.Exec(f->content);
      if (!r.ok()) return Annotate(r.status(), absl::StrCat("migration ", component, "/", name));
      r = tx.Exec("INSERT INTO schema_migrations (component, version, name) VALUES ($1, $2, $3)",
                  {std::string(component), std::to_string(version), std::string(name)});
      if (!r.ok()) return r.status();
      applied = true;
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    if (applied) LogInfo("store.migrated", {{"component", component}, {"migration", name}});
  }
  return absl::OkStatus();
}

}  // namespace strata::store
