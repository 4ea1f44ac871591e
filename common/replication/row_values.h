#pragma once

// A batch's rows, which travel as JSON objects (to_json's spelling), turned
// into one PostgreSQL text array per column for the apply statement
// (`unnest($1::text[], ...)`, each column cast to its type): PostgreSQL then
// parses each value once with its type's input function, instead of the
// whole batch as JSON first (json_populate_recordset), which was half the
// apply's cost. The conversion is json_populate_recordset's: JSON null is
// NULL, a string its unescaped text, a json or jsonb column the value's JSON,
// an array column the JSON array as an array literal, anything else its
// JSON text.

#include <string>
#include <string_view>

namespace strata::replication {

// How a column's JSON value becomes its text.
enum class ColumnKind {
  kScalar,     // strings unescaped, others as written
  kJson,       // json, jsonb: the JSON itself
  kArray,      // T[] of a scalar T: an array literal
  kJsonArray,  // json[], jsonb[]: an array literal of JSON texts
};

// From format_type()'s spelling of the column's type.
ColumnKind KindOfType(std::string_view type);

// One column's values, as a text[] literal: {"v1",NULL,...}.
class ColumnArray {
 public:
  ColumnArray() { literal_.push_back('{'); }
  // Appends the value whose JSON is `raw` (one whole JSON value, as a row
  // object holds it). False when it cannot be a value of this kind (a
  // malformed string or array, a \u0000): nothing is appended then.
  bool Append(std::string_view raw, ColumnKind kind);
  // The literal; the array must not be appended to afterwards.
  std::string Finish() &&;

 private:
  std::string literal_;
  bool first_ = true;
};

// The unescaped contents of the JSON string `raw` (with its quotes) into
// `out`; false if it is not one or holds \u0000, which text cannot.
bool UnescapeJsonString(std::string_view raw, std::string* out);

// The JSON array `raw` as a PostgreSQL array literal ({...}, nested arrays
// as nested braces) into `out`; elements are quoted, JSON strings unescaped
// unless `json_elements`.
bool JsonArrayToLiteral(std::string_view raw, bool json_elements, std::string* out);

}  // namespace strata::replication
