#pragma once

// Rows read from the WAL (store::PgOutputDecoder's text values) spelled as
// the replication protocol spells them: a row as PostgreSQL's to_json(row)
// writes it, a key as jsonb_build_array(key columns)::text — the spelling
// the trigger-based change log used, so peers, tombstones and the applier
// see the same keys whichever way a change was captured.

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "common/store/database.h"
#include "common/store/wal_stream.h"

namespace strata::replication {

// How to_json writes a value of each type (domains as their base type).
class TypeMap {
 public:
  enum class Kind { kString, kNumber, kBool, kJson, kDate, kTimestamp, kTimestampTz, kArray };
  // A default map knows the built-in types only (anything else is written
  // as a string); Load() reads every type of the database (pg_type), for
  // domains and arrays of other types.
  static absl::StatusOr<TypeMap> Load(store::Transaction& tx);

  Kind KindOf(uint32_t type) const;
  uint32_t ElementOf(uint32_t type) const;  // arrays

 private:
  struct Entry {
    Kind kind = Kind::kString;
    uint32_t element = 0;
  };
  std::unordered_map<uint32_t, Entry> types_;
};

// Appends the JSON of one value in PostgreSQL's text output (ISO dates, UTC).
void AppendValueJson(const TypeMap& types, uint32_t type, std::string_view text, std::string& out);

// The row as to_json(row) writes it. Columns whose value the WAL left out
// (unchanged TOAST values of an update) are not in it: `complete` says
// whether every column was.
std::string RowJson(const TypeMap& types, const store::WalRelation& relation,
                    const store::WalTuple& tuple, bool* complete);

// The key as jsonb_build_array(k1, k2, ...)::text writes it, from the
// columns `key_columns` of the tuple. InvalidArgument when one is missing
// or has no value.
absl::StatusOr<std::string> KeyJson(const TypeMap& types, const store::WalRelation& relation,
                                    const store::WalTuple& tuple,
                                    const std::vector<std::string>& key_columns);

}  // namespace strata::replication
