#pragma once

// The collection query language: a small boolean language over device
// inventory, compiled into a parameterized SQL predicate (never spliced).
//
//   os.name = "Debian GNU/Linux" and memory.total_mb >= 4096
//     and software.name = "openssl" and software.version < "3.0.11"
//
// Grammar (keywords are case-insensitive):
//   query      := or
//   or         := and ("or" and)*
//   and        := not ("and" not)*
//   not        := "not" not | "(" query ")" | comparison
//   comparison := field op value | field "in" "(" value ("," value)* ")"
//                 | field "like" string
//   field      := class "." attribute            (see Fields())
//   op         := "=" | "!=" | "<>" | "<" | "<=" | ">" | ">="
//   value      := "string" (with \" and \\) | number | true | false
//
// Semantics an admin relies on:
//  * Comparisons on one multi-valued class (software, disk, network,
//    processor) joined by "and" must hold for the same row: `software.name =
//    "openssl" and software.version < "3"` is "has openssl older than 3".
//  * `not` negates what follows: `not software.name = "telnet"` is "has no
//    telnet package".
//  * version fields compare as versions (numeric runs by value: "3.0.9" <
//    "3.0.11"); `like` is case-insensitive with % and _ wildcards, and a
//    backslash makes the next character literal (so a pattern cannot end
//    with a lone backslash).
//
// Every error is InvalidArgument and names the character it points at:
//   "query: character 8: unknown field os.nmae (os has: name, version, ...)"

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace strata::collections {

// Bounds on what a peer may send.
constexpr size_t kMaxQueryBytes = 4096;
constexpr int kMaxComparisons = 64;
constexpr int kMaxDepth = 32;
constexpr int kMaxInValues = 256;
constexpr int kMaxValues = 1024;  // literals in one query (they become parameters)

struct CompiledQuery {
  // A predicate over `d` (a row of devices); parameters $first.. in order.
  std::string sql;
  std::vector<std::string> params;
};

// Compiles `text`; its parameters are numbered from `first_param`.
absl::StatusOr<CompiledQuery> CompileQuery(std::string_view text, int first_param = 1);

// A device's own inventory, where there is no database (the agent evaluates
// an application's requirements with it): for each class ("os",
// "software"), its rows; each row maps an attribute name ("total_mb") to its
// value as text (booleans "true" / "false"). A class with no row, or an
// attribute absent from a row, matches no comparison (as SQL's NULL).
using FactRow = std::map<std::string, std::string>;
using DeviceFacts = std::map<std::string, std::vector<FactRow>>;

// `text` evaluated over `facts` with the semantics CompileQuery's SQL has
// (one row per class under "and", versions by numeric runs, like).
absl::StatusOr<bool> EvaluateQuery(std::string_view text, const DeviceFacts& facts);

// --- live queries ------------------------------------------------------
//
// A live query asks the language on each client, over its live state: the
// inventory classes read now, and the live classes (process, socket, user,
// service, file, os_update), with the columns to return ("select"). Live
// classes are refused in collections and requirements (CompileQuery,
// EvaluateQuery).

inline constexpr int kMaxSelect = 16;

struct LiveQuerySpec {
  std::set<std::string> classes;        // every class it reads (query and select)
  std::vector<std::string> file_paths;  // the paths file.path is compared with (= or in)
  std::string multi;                    // the many-rowed class of select ("": one row per device)
};

// InvalidArgument naming what is wrong: the query (as CompileQuery says),
// a select that is empty, over 16 columns or names an unknown field, fields
// of two many-rowed classes, file without file.path = "..." (or in).
absl::StatusOr<LiveQuerySpec> CheckLiveQuery(std::string_view text,
                                             const std::vector<std::string>& select);

// The rows of `select` where `text` holds over `facts`: none when the
// device does not match; else one per row of the select's many-rowed class
// for which the query holds with that row standing for its class (a
// software row that is "openssl"), or one row. At most `max_rows`
// (`*truncated` then).
absl::StatusOr<std::vector<std::vector<std::string>>> SelectRows(
    std::string_view text, const std::vector<std::string>& select, const DeviceFacts& facts,
    size_t max_rows, bool* truncated);

// Versions compared as the language compares them (numeric runs by value:
// "3.0.9" < "3.0.11"): negative, 0 or positive.
int CompareVersions(std::string_view a, std::string_view b);

// One field of the language, for help texts and documentation.
struct FieldInfo {
  std::string name;   // "software.version"
  std::string type;   // "text", "version", "number", "boolean"
  bool live = false;  // read on the client by a live query only
};
const std::vector<FieldInfo>& Fields();

}  // namespace strata::collections
