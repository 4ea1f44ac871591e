#pragma once

// PostgreSQL access. The only place that talks to libpqxx: its exceptions
// become absl::Status here (connection lost = Unavailable, serialization
// failure or deadlock = Aborted, unique violation = AlreadyExists, bad data =
// InvalidArgument, other constraint violations = FailedPrecondition).
//
// A Connection is used by one thread at a time.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/embedded_file.h"

namespace strata::store {

using Param = std::optional<std::string>;  // nullopt = SQL NULL
using Params = std::vector<Param>;

// Rows of a query result; values are text (PostgreSQL's text format).
// Cheap to copy: rows are shared.
class Result {
 public:
  Result();
  size_t size() const;
  bool empty() const { return size() == 0; }
  int columns() const;
  std::string ColumnName(int col) const;
  bool IsNull(size_t row, int col) const;
  std::string_view Get(size_t row, int col) const;  // "" for NULL
  std::string GetString(size_t row, int col) const { return std::string(Get(row, col)); }
  int64_t GetInt(size_t row, int col) const;  // 0 for NULL
  bool GetBool(size_t row, int col) const;
  size_t affected_rows() const;

  struct Impl;
  explicit Result(std::shared_ptr<const Impl> impl);

 private:
  std::shared_ptr<const Impl> impl_;
};

class Transaction {
 public:
  virtual ~Transaction() = default;
  virtual absl::StatusOr<Result> Exec(std::string_view sql, const Params& params = {}) = 0;
  // Like Exec, for a statement run many times whose planning costs more than
  // running it: prepared once per connection (named by its text) and its
  // plan cached by PostgreSQL. A connection keeps at most
  // kMaxCachedStatements; the oldest is dropped before the next transaction.
  virtual absl::StatusOr<Result> ExecCached(const std::string& sql, const Params& params) = 0;
};

inline constexpr size_t kMaxCachedStatements = 64;

enum class Isolation { kReadCommitted, kRepeatableRead, kSerializable };

class Connection {
 public:
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const std::string& conninfo);
  ~Connection();

  // Runs `fn` in one transaction and commits when it returns OK; rolls back
  // otherwise. An Aborted outcome (serialization failure, deadlock) is retried
  // up to `max_attempts` times. Exceptions never escape.
  absl::Status Transact(const std::function<absl::Status(Transaction&)>& fn,
                        Isolation isolation = Isolation::kReadCommitted, int max_attempts = 3);
  // One statement in its own transaction.
  absl::StatusOr<Result> Exec(std::string_view sql, const Params& params = {});

  // LISTEN on `channel`; AwaitNotification() waits up to `timeout_ms` and
  // returns how many notifications arrived (on any listened channel).
  absl::Status Listen(const std::string& channel);
  absl::StatusOr<int> AwaitNotification(int timeout_ms);

  bool IsOpen() const;
  const std::string& conninfo() const { return conninfo_; }

 private:
  struct Impl;
  Connection(std::string conninfo, std::unique_ptr<Impl> impl);
  std::string conninfo_;
  std::unique_ptr<Impl> impl_;
};
using ConnectionPtr = std::unique_ptr<Connection>;

// Maps a libpqxx / standard exception to a status (see the header comment).
absl::Status StatusFromException(const std::exception& e);
absl::Status StatusFromSqlState(absl::string_view sqlstate, absl::string_view message);

// Applies the numbered migrations (files named NNNN_name.sql, in order) of
// `component` that this database has not seen, each in its own transaction,
// under an advisory lock so concurrent starts do not race. Idempotent.
absl::Status ApplyMigrations(Connection& conn, absl::string_view component,
                             const EmbeddedFile* files, int count);

// Quotes an identifier for SQL ("my table" -> "\"my table\"").
std::string QuoteIdent(std::string_view ident);
// Quotes a literal ('it''s').
std::string QuoteLiteral(std::string_view literal);
// A text[] literal of `values`, for a parameter cast with ::text[].
std::string TextArrayLiteral(const std::vector<std::string>& values);
// The elements of a one-dimensional text[] value as PostgreSQL prints it
// (`SELECT arr::text`: {a,"b c","d\"e"}); the inverse of TextArrayLiteral.
std::vector<std::string> ParseTextArray(const std::string& literal);

}  // namespace strata::store
