#include "common/collections/query.h"

#include <algorithm>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"
#include "common/collections/fields.h"
#include "common/collections/match.h"
#include "common/collections/query_ast.h"
#include "common/inventory/report_check.h"

namespace strata::collections {
namespace {

// --- lexer ---------------------------------------------------------------

struct Token {
  Tok kind;
  std::string text;  // identifier (lower-cased keywords kept as written), value, operator
  size_t pos;        // byte offset
};

class Query {
 public:
  explicit Query(std::string_view text) : text_(text) {}

  absl::Status Error(size_t pos, const std::string& what) const {
    // Characters, not bytes, so that the caret lines up under UTF-8 text.
    size_t chars = 0;
    for (size_t i = 0; i < pos && i < text_.size(); ++i) {
      if ((static_cast<unsigned char>(text_[i]) & 0xC0) != 0x80) ++chars;
    }
    return absl::InvalidArgumentError(absl::StrCat("query: character ", chars + 1, ": ", what));
  }

  absl::Status Lex(std::vector<Token>& out) const {
    size_t i = 0;
    const size_t n = text_.size();
    while (true) {
      while (i < n && absl::ascii_isspace(static_cast<unsigned char>(text_[i]))) ++i;
      if (i >= n) break;
      const char c = text_[i];
      const size_t start = i;
      if (absl::ascii_isalpha(static_cast<unsigned char>(c)) || c == '_') {
        while (i < n && (absl::ascii_isalnum(static_cast<unsigned char>(text_[i])) ||
                         text_[i] == '_' || text_[i] == '.')) {
          ++i;
        }
        out.push_back({Tok::kIdent, std::string(text_.substr(start, i - start)), start});
      } else if (absl::ascii_isdigit(static_cast<unsigned char>(c)) ||
                 (c == '-' && i + 1 < n &&
                  absl::ascii_isdigit(static_cast<unsigned char>(text_[i + 1])))) {
        ++i;
        bool dot = false;
        while (i < n && (absl::ascii_isdigit(static_cast<unsigned char>(text_[i])) ||
                         (text_[i] == '.' && !dot))) {
          dot = dot || text_[i] == '.';
          ++i;
        }
        if (i - start > 30) return Error(start, "number too long");
        out.push_back({Tok::kNumber, std::string(text_.substr(start, i - start)), start});
      } else if (c == '"') {
        std::string value;
        ++i;
        bool closed = false;
        while (i < n) {
          if (text_[i] == '\\') {
            if (i + 1 >= n || (text_[i + 1] != '"' && text_[i + 1] != '\\')) {
              return Error(i, "only \\\" and \\\\ are escapes in a string");
            }
            value.push_back(text_[i + 1]);
            i += 2;
          } else if (text_[i] == '"') {
            closed = true;
            ++i;
            break;
          } else {
            value.push_back(text_[i++]);
          }
        }
        if (!closed) return Error(start, "string not closed (a \" is missing)");
        if (value.size() > 1024) return Error(start, "string longer than 1024 bytes");
        out.push_back({Tok::kString, std::move(value), start});
      } else if (c == '(' || c == ')' || c == ',') {
        out.push_back({c == '('   ? Tok::kLParen
                       : c == ')' ? Tok::kRParen
                                  : Tok::kComma,
                       std::string(1, c), start});
        ++i;
      } else if (c == '=' || c == '<' || c == '>' || c == '!') {
        std::string op(1, c);
        if (i + 1 < n && (text_[i + 1] == '=' || (c == '<' && text_[i + 1] == '>'))) {
          op.push_back(text_[i + 1]);
        }
        if (op == "!") return Error(start, "unexpected '!' (did you mean != ?)");
        if (op == "==") return Error(start, "use = to compare, not ==");
        i += op.size();
        out.push_back({Tok::kOp, op == "<>" ? "!=" : op, start});
      } else if (c == '\'') {
        return Error(start, "strings are written in double quotes");
      } else {
        return Error(start, absl::StrCat("unexpected character '", std::string(1, c), "'"));
      }
    }
    out.push_back({Tok::kEnd, "", n});
    return absl::OkStatus();
  }

 private:
  std::string_view text_;
};

// --- parser --------------------------------------------------------------

bool IsKeyword(const Token& t, std::string_view word) {
  return t.kind == Tok::kIdent && absl::AsciiStrToLower(t.text) == word;
}

std::string Describe(const Token& t) {
  switch (t.kind) {
    case Tok::kEnd:
      return "the end of the query";
    case Tok::kString:
      return absl::StrCat("the string \"", t.text, "\"");
    default:
      return absl::StrCat("'", t.text, "'");
  }
}

class Parser {
 public:
  // `live`: the live classes may be asked (a live query on clients).
  Parser(const Query& q, std::vector<Token> tokens, bool live)
      : q_(q), toks_(std::move(tokens)), live_(live) {}

  absl::StatusOr<NodePtr> Parse() {
    auto n = Or(0);
    if (!n.ok()) return n.status();
    if (Peek().kind != Tok::kEnd) {
      return q_.Error(Peek().pos,
                      absl::StrCat("expected 'and', 'or' or the end, found ", Describe(Peek())));
    }
    return n;
  }

 private:
  const Token& Peek() const { return toks_[i_]; }
  const Token& Next() { return toks_[i_++]; }

  absl::StatusOr<NodePtr> Or(int depth) {
    if (depth > kMaxDepth) return q_.Error(Peek().pos, "expression nested too deeply");
    auto left = And(depth);
    if (!left.ok()) return left.status();
    if (!IsKeyword(Peek(), "or")) return left;
    auto n = std::make_unique<Node>();
    n->kind = Node::kOr;
    n->kids.push_back(std::move(*left));
    while (IsKeyword(Peek(), "or")) {
      Next();
      auto right = And(depth);
      if (!right.ok()) return right.status();
      n->kids.push_back(std::move(*right));
    }
    return n;
  }

  absl::StatusOr<NodePtr> And(int depth) {
    auto left = Not(depth);
    if (!left.ok()) return left.status();
    if (!IsKeyword(Peek(), "and")) return left;
    auto n = std::make_unique<Node>();
    n->kind = Node::kAnd;
    n->kids.push_back(std::move(*left));
    while (IsKeyword(Peek(), "and")) {
      Next();
      auto right = Not(depth);
      if (!right.ok()) return right.status();
      n->kids.push_back(std::move(*right));
    }
    return n;
  }

  absl::StatusOr<NodePtr> Not(int depth) {
    if (depth > kMaxDepth) return q_.Error(Peek().pos, "expression nested too deeply");
    if (IsKeyword(Peek(), "not")) {
      Next();
      auto kid = Not(depth + 1);
      if (!kid.ok()) return kid.status();
      auto n = std::make_unique<Node>();
      n->kind = Node::kNot;
      n->kids.push_back(std::move(*kid));
      return n;
    }
    if (Peek().kind == Tok::kLParen) {
      Next();
      auto inner = Or(depth + 1);
      if (!inner.ok()) return inner.status();
      if (Peek().kind != Tok::kRParen) {
        return q_.Error(Peek().pos, absl::StrCat("expected ')', found ", Describe(Peek())));
      }
      Next();
      return inner;
    }
    return Comparison();
  }

  absl::StatusOr<NodePtr> Comparison() {
    const Token& f = Next();
    if (f.kind != Tok::kIdent || IsKeyword(f, "and") || IsKeyword(f, "or") || IsKeyword(f, "in") ||
        IsKeyword(f, "like")) {
      return q_.Error(f.pos, absl::StrCat("expected a field such as os.name, found ", Describe(f)));
    }
    auto n = std::make_unique<Node>();
    n->kind = Node::kCmp;
    RETURN_IF_ERROR(ResolveField(f, *n));
    if (++comparisons_ > kMaxComparisons) {
      return q_.Error(f.pos, absl::StrCat("more than ", kMaxComparisons, " comparisons"));
    }
    const Token& op = Next();
    const Type type = n->attr->type;
    if (IsKeyword(op, "in")) {
      n->op = "in";
      if (Next().kind != Tok::kLParen) return q_.Error(op.pos, "expected '(' after in");
      while (true) {
        ASSIGN_OR_RETURN(Value v, TypedValue(*n));
        n->values.push_back(std::move(v));
        if (static_cast<int>(n->values.size()) > kMaxInValues) {
          return q_.Error(n->values.back().pos,
                          absl::StrCat("more than ", kMaxInValues, " values in one list"));
        }
        const Token& sep = Next();
        if (sep.kind == Tok::kRParen) break;
        if (sep.kind != Tok::kComma) {
          return q_.Error(sep.pos, absl::StrCat("expected ',' or ')', found ", Describe(sep)));
        }
      }
      return n;
    }
    if (IsKeyword(op, "like")) {
      if (type != Type::kText && type != Type::kVersion) {
        return q_.Error(op.pos, absl::StrCat("like needs a text field; ", FieldName(*n), " is a ",
                                             TypeName(type)));
      }
      n->op = "like";
      ASSIGN_OR_RETURN(Value v, TypedValue(*n));
      // PostgreSQL refuses a pattern ending in its escape character at run
      // time; refuse it here, where the admin sees where.
      size_t trailing = 0;
      while (trailing < v.text.size() && v.text[v.text.size() - 1 - trailing] == '\\') ++trailing;
      if (trailing % 2 == 1) {
        return q_.Error(v.pos, "a like pattern cannot end with a lone \\ (write \\\\ for one)");
      }
      n->values.push_back(std::move(v));
      return n;
    } else if (op.kind == Tok::kOp) {
      n->op = op.text;
      if (type == Type::kBool && n->op != "=" && n->op != "!=") {
        return q_.Error(op.pos, absl::StrCat(FieldName(*n), " is a boolean: only = and != apply"));
      }
    } else {
      return q_.Error(op.pos, absl::StrCat("expected a comparison (=, !=, <, <=, >, >=, in, like) "
                                           "after ",
                                           FieldName(*n), ", found ", Describe(op)));
    }
    ASSIGN_OR_RETURN(Value v, TypedValue(*n));
    n->values.push_back(std::move(v));
    return n;
  }

  static std::string FieldName(const Node& n) {
    return absl::StrCat(n.cls->name, ".", n.attr->name);
  }

  absl::Status ResolveField(const Token& f, Node& n) {
    const std::string name = absl::AsciiStrToLower(f.text);
    const size_t dot = name.find('.');
    if (dot == std::string::npos) {
      return q_.Error(f.pos, absl::StrCat("'", f.text,
                                          "' is not a field: fields are class.attribute, e.g. "
                                          "os.name (classes: ",
                                          ClassList(), ")"));
    }
    const std::string cls = name.substr(0, dot), attr = name.substr(dot + 1);
    for (const Class& c : Classes()) {
      if (cls != c.name) continue;
      if (c.live && !live_)
        return q_.Error(f.pos, absl::StrCat(c.name,
                                            " is read live on clients: ask it with stratactl "
                                            "query, not in a collection or a requirement"));
      for (const Attr& a : c.attrs) {
        if (attr == a.name) {
          n.cls = &c;
          n.attr = &a;
          return absl::OkStatus();
        }
      }
      std::vector<std::string> names;
      for (const Attr& a : c.attrs) names.push_back(a.name);
      return q_.Error(f.pos + dot + 1, absl::StrCat("unknown field ", f.text, " (", c.name,
                                                    " has: ", absl::StrJoin(names, ", "), ")"));
    }
    return q_.Error(f.pos, absl::StrCat("unknown class '", f.text.substr(0, dot),
                                        "' (classes: ", ClassList(), ")"));
  }

  std::string ClassList() const {
    std::vector<std::string> names;
    for (const Class& c : Classes())
      if (live_ || !c.live) names.push_back(c.name);
    return absl::StrJoin(names, ", ");
  }

  absl::StatusOr<Value> TypedValue(const Node& n) {
    const Token& t = Next();
    if (++values_ > kMaxValues) {
      return q_.Error(t.pos, absl::StrCat("more than ", kMaxValues, " values in one query"));
    }
    const Type type = n.attr->type;
    const bool is_bool = IsKeyword(t, "true") || IsKeyword(t, "false");
    auto mismatch = [&](const char* what) {
      return q_.Error(t.pos, absl::StrCat(FieldName(n), " is a ", TypeName(type), "; ", Describe(t),
                                          " is ", what));
    };
    switch (t.kind) {
      case Tok::kString:
        if (type == Type::kNumber) return mismatch("a string (write the number without quotes)");
        if (type == Type::kBool) return mismatch("a string (write true or false)");
        return Value{t.text, t.kind, t.pos};
      case Tok::kNumber:
        if (type == Type::kBool) return mismatch("a number");
        if (type != Type::kNumber) return mismatch("a number (put text in double quotes)");
        return Value{t.text, t.kind, t.pos};
      case Tok::kIdent:
        if (is_bool) {
          if (type != Type::kBool) return mismatch("a boolean");
          return Value{absl::AsciiStrToLower(t.text), t.kind, t.pos};
        }
        return q_.Error(t.pos, absl::StrCat("expected a value after ", FieldName(n), ", found ",
                                            Describe(t), " (put text in double quotes)"));
      default:
        return q_.Error(
            t.pos, absl::StrCat("expected a value after ", FieldName(n), ", found ", Describe(t)));
    }
  }

  const Query& q_;
  std::vector<Token> toks_;
  size_t i_ = 0;
  int comparisons_ = 0;
  int values_ = 0;
  bool live_;
};

// --- SQL -----------------------------------------------------------------

class Emitter {
 public:
  explicit Emitter(int first_param) : first_(first_param) {}

  std::string Emit(const Node& n) {
    switch (n.kind) {
      case Node::kCmp:
        return Group({&n});
      case Node::kNot:
        return absl::StrCat("NOT (", Emit(*n.kids[0]), ")");
      case Node::kOr: {
        std::vector<std::string> parts;
        for (const auto& k : n.kids) parts.push_back(absl::StrCat("(", Emit(*k), ")"));
        return absl::StrJoin(parts, " OR ");
      }
      case Node::kAnd: {
        // Comparisons on one class under this "and" share one row of it.
        std::vector<std::string> parts;
        std::vector<const Node*> others;
        const ClassGroups groups = SplitAnd(n, &others);
        for (const Node* k : others) parts.push_back(absl::StrCat("(", Emit(*k), ")"));
        for (const auto& [cls, cmps] : groups) parts.push_back(Group(cmps));
        return absl::StrJoin(parts, " AND ");
      }
    }
    return "false";
  }

  std::vector<std::string> TakeParams() { return std::move(params_); }

 private:
  std::string Group(const std::vector<const Node*>& cmps) {
    const Class* cls = cmps[0]->cls;
    const std::string alias = cls->table ? absl::StrCat("x", ++aliases_) : "d";
    std::vector<std::string> atoms;
    for (const Node* c : cmps) atoms.push_back(Atom(*c, alias));
    if (!cls->table) return absl::StrJoin(atoms, " AND ");
    return absl::StrCat("EXISTS (SELECT 1 FROM ", cls->table, " ", alias, " WHERE ", alias,
                        ".device_id = d.id AND ", absl::StrJoin(atoms, " AND "), ")");
  }

  std::string Param(const Value& v, Type type) {
    params_.push_back(v.text);
    std::string p = absl::StrCat("$", first_ + params_.size() - 1);
    switch (type) {
      case Type::kNumber:
        return p + "::numeric";
      case Type::kBool:
        return p + "::boolean";
      default:
        return p + "::text";
    }
  }

  std::string Atom(const Node& c, const std::string& alias) {
    std::string col = c.attr->column;
    col.replace(col.find('%'), 1, alias);
    const Type type = c.attr->type;
    if (c.op == "like") return absl::StrCat(col, " ILIKE ", Param(c.values[0], Type::kText));
    if (c.op == "in") {
      std::vector<std::string> ps;
      for (const auto& v : c.values) ps.push_back(Param(v, type));
      return absl::StrCat(col, " IN (", absl::StrJoin(ps, ", "), ")");
    }
    const std::string op = c.op == "!=" ? "<>" : c.op;
    if (type == Type::kVersion && op != "=" && op != "<>") {
      return absl::StrCat("strata_version_key(", col, ") ", op, " strata_version_key(",
                          Param(c.values[0], type), ")");
    }
    return absl::StrCat(col, " ", op, " ", Param(c.values[0], type));
  }

  int first_;
  int aliases_ = 0;
  std::vector<std::string> params_;
};

}  // namespace

absl::StatusOr<NodePtr> ParseQuery(std::string_view text, bool live) {
  if (text.size() > kMaxQueryBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("query: longer than ", kMaxQueryBytes, " bytes"));
  }
  if (!inventory::IsCleanText(text)) {
    return absl::InvalidArgumentError("query: not valid UTF-8 text (or has a NUL byte)");
  }
  Query q(text);
  std::vector<Token> tokens;
  RETURN_IF_ERROR(q.Lex(tokens));
  if (tokens.size() == 1) return absl::InvalidArgumentError("query: empty");
  Parser parser(q, std::move(tokens), live);
  return parser.Parse();
}

// The children of an "and": its comparisons grouped by class (each group
// holds for one row of its class), and the rest into `others`.
ClassGroups SplitAnd(const Node& n, std::vector<const Node*>* others) {
  ClassGroups groups;
  for (const auto& k : n.kids) {
    if (k->kind != Node::kCmp) {
      others->push_back(k.get());
      continue;
    }
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](const auto& g) { return g.first == k->cls; });
    if (it == groups.end()) {
      groups.push_back({k->cls, {k.get()}});
    } else {
      it->second.push_back(k.get());
    }
  }
  return groups;
}

absl::StatusOr<CompiledQuery> CompileQuery(std::string_view text, int first_param) {
  ASSIGN_OR_RETURN(NodePtr root, ParseQuery(text));
  Emitter emitter(first_param);
  CompiledQuery out;
  out.sql = emitter.Emit(*root);
  out.params = emitter.TakeParams();
  return out;
}

int CompareVersions(std::string_view a, std::string_view b) {
  return VersionKey(a).compare(VersionKey(b));
}

const std::vector<FieldInfo>& Fields() {
  static const auto* fields = [] {
    auto* v = new std::vector<FieldInfo>;
    for (const Class& c : Classes()) {
      for (const Attr& a : c.attrs)
        v->push_back({absl::StrCat(c.name, ".", a.name), TypeName(a.type), c.live});
    }
    return v;
  }();
  return *fields;
}

}  // namespace strata::collections
