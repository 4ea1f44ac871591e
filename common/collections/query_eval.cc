#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/collections/match.h"
#include "common/collections/query.h"
#include "common/collections/query_ast.h"

// The query language evaluated over a device's own facts, without a
// database (the agent's requirements, live queries).

namespace strata::collections {
namespace {

// --- evaluation over a device's own facts -----------------------------------

template <typename T>
bool Ordered(const T& a, const std::string& op, const T& b) {
  if (op == "=") return a == b;
  if (op == "!=" || op == "<>") return a != b;
  if (op == "<") return a < b;
  if (op == "<=") return a <= b;
  if (op == ">") return a > b;
  if (op == ">=") return a >= b;
  return false;
}

class Evaluator {
 public:
  explicit Evaluator(const DeviceFacts& facts) : facts_(facts) {}
  // As if `cls` had the one row `row`.
  Evaluator(const DeviceFacts& facts, const std::string& cls, const FactRow& row)
      : facts_(facts), only_class_(&cls), only_row_(&row) {}

  bool Eval(const Node& n) const {
    switch (n.kind) {
      case Node::kCmp:
        return Group({&n});
      case Node::kNot:
        return !Eval(*n.kids[0]);
      case Node::kOr:
        for (const auto& k : n.kids)
          if (Eval(*k)) return true;
        return false;
      case Node::kAnd: {
        // As the SQL: comparisons on one class under this "and" share a row.
        std::vector<const Node*> others;
        for (const auto& g : SplitAnd(n, &others))
          if (!Group(g.second)) return false;
        for (const Node* k : others)
          if (!Eval(*k)) return false;
        return true;
      }
    }
    return false;
  }

 private:
  bool Group(const std::vector<const Node*>& cmps) const {
    if (only_class_ != nullptr && *only_class_ == cmps[0]->cls->name) {
      for (const Node* c : cmps)
        if (!Holds(*c, *only_row_)) return false;
      return true;
    }
    auto it = facts_.find(cmps[0]->cls->name);
    if (it == facts_.end()) return false;
    for (const auto& row : it->second) {
      bool all = true;
      for (const Node* c : cmps) all = all && Holds(*c, row);
      if (all) return true;
    }
    return false;
  }

  static bool Holds(const Node& c, const std::map<std::string, std::string>& row) {
    auto f = row.find(c.attr->name);
    if (f == row.end()) return false;  // SQL NULL: no comparison holds
    const std::string& have = f->second;
    if (c.op == "like") return Like(have, c.values[0].text);
    if (c.op == "in") {
      for (const auto& v : c.values)
        if (Compare(c.attr->type, have, "=", v.text)) return true;
      return false;
    }
    return Compare(c.attr->type, have, c.op, c.values[0].text);
  }

  static bool Compare(Type type, const std::string& have, const std::string& op,
                      const std::string& want) {
    switch (type) {
      case Type::kNumber: {
        double a = 0, b = 0;
        if (!absl::SimpleAtod(have, &a) || !absl::SimpleAtod(want, &b)) return false;
        return Ordered(a, op, b);
      }
      case Type::kBool:
        return Ordered(absl::AsciiStrToLower(have) == "true", op,
                       absl::AsciiStrToLower(want) == "true");
      case Type::kVersion:
        if (op != "=" && op != "!=" && op != "<>")
          return Ordered(VersionKey(have), op, VersionKey(want));
        return Ordered(have, op, want);
      case Type::kText:
        return Ordered(have, op, want);
    }
    return false;
  }

  const DeviceFacts& facts_;
  const std::string* only_class_ = nullptr;
  const FactRow* only_row_ = nullptr;
};

}  // namespace

absl::StatusOr<bool> EvaluateQuery(std::string_view text, const DeviceFacts& facts) {
  ASSIGN_OR_RETURN(NodePtr root, ParseQuery(text));
  return Evaluator(facts).Eval(*root);
}

namespace {

// Every comparison of the tree, depth first.
void Comparisons(const Node& n, std::vector<const Node*>* out) {
  if (n.kind == Node::kCmp) out->push_back(&n);
  for (const auto& k : n.kids) Comparisons(*k, out);
}

struct Column {
  const Class* cls;
  const Attr* attr;
};

absl::StatusOr<std::vector<Column>> ResolveSelect(const std::vector<std::string>& select) {
  if (select.empty() || static_cast<int>(select.size()) > kMaxSelect)
    return absl::InvalidArgumentError(
        absl::StrCat("select: 1 to ", kMaxSelect, " columns, not ", select.size()));
  std::vector<Column> out;
  for (const std::string& field : select) {
    const std::string name = absl::AsciiStrToLower(field);
    const size_t dot = name.find('.');
    const Class* cls = nullptr;
    for (const Class& c : Classes())
      if (dot != std::string::npos && name.substr(0, dot) == c.name) cls = &c;
    const Attr* attr = nullptr;
    if (cls != nullptr)
      for (const Attr& a : cls->attrs)
        if (name.substr(dot + 1) == a.name) attr = &a;
    if (attr == nullptr)
      return absl::InvalidArgumentError(absl::StrCat(
          "select: unknown field \"", field, "\" (fields are class.attribute, e.g. os.name)"));
    out.push_back({cls, attr});
  }
  return out;
}

}  // namespace

absl::StatusOr<LiveQuerySpec> CheckLiveQuery(std::string_view text,
                                             const std::vector<std::string>& select) {
  ASSIGN_OR_RETURN(NodePtr root, ParseQuery(text, /*live=*/true));
  ASSIGN_OR_RETURN(std::vector<Column> columns, ResolveSelect(select));
  LiveQuerySpec spec;
  for (const Column& c : columns) {
    spec.classes.insert(c.cls->name);
    if (c.cls->single || spec.multi == c.cls->name) continue;
    if (!spec.multi.empty())
      return absl::InvalidArgumentError(
          absl::StrCat("select: fields of ", spec.multi, " and of ", c.cls->name,
                       " (each has many rows per device): select from one of them"));
    spec.multi = c.cls->name;
  }
  std::vector<const Node*> cmps;
  Comparisons(*root, &cmps);
  for (const Node* c : cmps) {
    spec.classes.insert(c->cls->name);
    if (std::string(c->cls->name) == "file" && std::string(c->attr->name) == "path" &&
        (c->op == "=" || c->op == "in"))
      for (const auto& v : c->values) spec.file_paths.push_back(v.text);
  }
  if (spec.classes.count("file") && spec.file_paths.empty())
    return absl::InvalidArgumentError(
        "file: say which files: file.path = \"/etc/passwd\" (or file.path in (...))");
  return spec;
}

absl::StatusOr<std::vector<std::vector<std::string>>> SelectRows(
    std::string_view text, const std::vector<std::string>& select, const DeviceFacts& facts,
    size_t max_rows, bool* truncated) {
  ASSIGN_OR_RETURN(LiveQuerySpec spec, CheckLiveQuery(text, select));
  ASSIGN_OR_RETURN(NodePtr root, ParseQuery(text, /*live=*/true));
  ASSIGN_OR_RETURN(std::vector<Column> columns, ResolveSelect(select));
  *truncated = false;
  std::vector<std::vector<std::string>> rows;
  auto value = [&](const Column& c, const FactRow* many) {
    const FactRow* row = many;
    if (c.cls->single || many == nullptr) {
      auto it = facts.find(c.cls->name);
      row = it == facts.end() || it->second.empty() ? nullptr : &it->second[0];
    }
    if (row == nullptr) return std::string();
    auto v = row->find(c.attr->name);
    return v == row->end() ? std::string() : v->second;
  };
  auto add = [&](const FactRow* many) {
    if (rows.size() >= max_rows) {
      *truncated = true;
      return false;
    }
    std::vector<std::string> row;
    for (const Column& c : columns) row.push_back(value(c, many));
    rows.push_back(std::move(row));
    return true;
  };
  if (spec.multi.empty()) {
    if (Evaluator(facts).Eval(*root)) add(nullptr);
    return rows;
  }
  auto it = facts.find(spec.multi);
  if (it == facts.end()) return rows;
  for (const FactRow& r : it->second)
    if (Evaluator(facts, spec.multi, r).Eval(*root) && !add(&r)) break;
  return rows;
}

}  // namespace strata::collections
