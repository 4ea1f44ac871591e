#pragma once

// The parsed query language (query.h), shared by its SQL (query.cc) and its
// evaluation over a device's facts (query_eval.cc). Internal to
// common/collections.

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/collections/fields.h"

namespace strata::collections {

enum class Tok { kIdent, kString, kNumber, kOp, kLParen, kRParen, kComma, kEnd };

struct Value {
  std::string text;
  Tok kind;  // kString, kNumber, kIdent (true / false)
  size_t pos;
};

struct Node {
  enum Kind { kAnd, kOr, kNot, kCmp } kind;
  std::vector<std::unique_ptr<Node>> kids;
  // kCmp:
  const Class* cls = nullptr;
  const Attr* attr = nullptr;
  std::string op;  // = != < <= > >= in like
  std::vector<Value> values;
};
using NodePtr = std::unique_ptr<Node>;

// Parses `text`; `live`: the live classes may be asked (a live query).
absl::StatusOr<NodePtr> ParseQuery(std::string_view text, bool live = false);

// The children of an "and": its comparisons grouped by class (each group
// holds for one row of its class), and the rest into `others`.
using ClassGroups = std::vector<std::pair<const Class*, std::vector<const Node*>>>;
ClassGroups SplitAnd(const Node& n, std::vector<const Node*>* others);

}  // namespace strata::collections
