#include "common/replication/wal_rows.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/json.h"
#include "common/base/status.h"

namespace strata::replication {
namespace {

using Kind = TypeMap::Kind;

Kind BuiltinKind(uint32_t oid) {
  switch (oid) {
    case 16:  // bool
      return Kind::kBool;
    case 20:    // int8
    case 21:    // int2
    case 23:    // int4
    case 700:   // float4
    case 701:   // float8
    case 1700:  // numeric
      return Kind::kNumber;
    case 114:   // json
    case 3802:  // jsonb
      return Kind::kJson;
    case 1082:
      return Kind::kDate;
    case 1114:
      return Kind::kTimestamp;
    case 1184:
      return Kind::kTimestampTz;
    default:
      return Kind::kString;
  }
}

// "2026-11-30 09:14:12.386+00" -> "2026-11-30T09:14:12.386+00:00" (to_json's
// ISO 8601); infinities and BC dates as they are.
void AppendDateTime(std::string_view text, bool zone, std::string& out) {
  out.push_back('"');
  const size_t space = text.find(' ');
  if (space == std::string_view::npos || text.find(" BC") != std::string_view::npos) {
    out.append(text);
  } else {
    out.append(text.substr(0, space));
    out.push_back('T');
    std::string_view rest = text.substr(space + 1);
    out.append(rest);
    if (zone) {
      // The offset: the last sign; "+HH" gains ":00".
      const size_t sign = rest.find_last_of("+-");
      if (sign != std::string_view::npos && rest.size() - sign == 3) out.append(":00");
    }
  }
  out.push_back('"');
}

// PostgreSQL's array output: {a,"b c",NULL,{nested}} (possibly after
// "[lo:hi]=" bounds). Appends the JSON array; false if malformed.
bool AppendArray(const TypeMap& types, uint32_t element, std::string_view text, size_t& pos,
                 std::string& out) {
  if (pos >= text.size() || text[pos] != '{') return false;
  ++pos;
  out.push_back('[');
  bool first = true;
  while (pos < text.size() && text[pos] != '}') {
    if (!first) {
      if (text[pos] != ',') return false;
      ++pos;
    }
    if (!first) out.push_back(',');
    first = false;
    if (pos < text.size() && text[pos] == '{') {
      if (!AppendArray(types, element, text, pos, out)) return false;
      continue;
    }
    std::string item;
    bool quoted = false;
    if (pos < text.size() && text[pos] == '"') {
      quoted = true;
      ++pos;
      while (pos < text.size() && text[pos] != '"') {
        if (text[pos] == '\\' && pos + 1 < text.size()) ++pos;
        item.push_back(text[pos++]);
      }
      if (pos >= text.size()) return false;
      ++pos;
    } else {
      while (pos < text.size() && text[pos] != ',' && text[pos] != '}') item.push_back(text[pos++]);
    }
    if (!quoted && item == "NULL") {
      out.append("null");
    } else {
      AppendValueJson(types, element, item, out);
    }
  }
  if (pos >= text.size()) return false;
  ++pos;
  out.push_back(']');
  return true;
}

}  // namespace

absl::StatusOr<TypeMap> TypeMap::Load(store::Transaction& tx) {
  // Domains resolve to their base type (to_json does the same).
  ASSIGN_OR_RETURN(store::Result r,
                   tx.Exec("WITH RECURSIVE base(oid, base) AS ("
                           "  SELECT oid, oid FROM pg_type WHERE typtype <> 'd' "
                           "  UNION ALL SELECT t.oid, b.base FROM pg_type t JOIN base b "
                           "    ON t.typbasetype = b.oid WHERE t.typtype = 'd') "
                           "SELECT b.oid, b.base, t.typcategory, t.typelem "
                           "FROM base b JOIN pg_type t ON t.oid = b.base"));
  TypeMap map;
  for (size_t i = 0; i < r.size(); ++i) {
    Entry e;
    const uint32_t base = static_cast<uint32_t>(r.GetInt(i, 1));
    if (r.Get(i, 2) == "A") {
      e.kind = Kind::kArray;
      e.element = static_cast<uint32_t>(r.GetInt(i, 3));
    } else {
      e.kind = BuiltinKind(base);
    }
    map.types_[static_cast<uint32_t>(r.GetInt(i, 0))] = e;
  }
  return map;
}

Kind TypeMap::KindOf(uint32_t type) const {
  auto it = types_.find(type);
  if (it != types_.end()) return it->second.kind;
  return BuiltinKind(type);
}

uint32_t TypeMap::ElementOf(uint32_t type) const {
  auto it = types_.find(type);
  if (it != types_.end()) return it->second.element;
  switch (type) {  // the arrays of the built-in kinds, when no catalog was loaded
    case 1000:
      return 16;
    case 1005:
      return 21;
    case 1007:
      return 23;
    case 1016:
      return 20;
    case 1021:
      return 700;
    case 1022:
      return 701;
    case 1231:
      return 1700;
    case 1009:
      return 25;
    case 1015:
      return 1043;
    case 2951:
      return 2950;
    case 1182:
      return 1082;
    case 1115:
      return 1114;
    case 1185:
      return 1184;
    case 199:
      return 114;
    case 3807:
      return 3802;
    default:
      return 0;
  }
}

void AppendValueJson(const TypeMap& types, uint32_t type, std::string_view text, std::string& out) {
  Kind kind = types.KindOf(type);
  if (kind == Kind::kString && types.ElementOf(type) != 0) kind = Kind::kArray;
  switch (kind) {
    case Kind::kBool:
      out.append(text == "t" ? "true" : "false");
      return;
    case Kind::kNumber:
      // NaN and the infinities are not JSON numbers: to_json quotes them.
      if (text == "NaN" || text == "Infinity" || text == "-Infinity") break;
      out.append(text);
      return;
    case Kind::kJson:
      out.append(text);
      return;
    case Kind::kDate:
    case Kind::kTimestamp:
    case Kind::kTimestampTz:
      AppendDateTime(text, kind == Kind::kTimestampTz, out);
      return;
    case Kind::kArray: {
      size_t pos = 0;
      if (!text.empty() && text[0] == '[') {  // explicit bounds: "[0:1]={...}"
        const size_t eq = text.find('=');
        pos = eq == std::string_view::npos ? text.size() : eq + 1;
      }
      const size_t mark = out.size();
      if (AppendArray(types, types.ElementOf(type), text, pos, out) && pos == text.size()) return;
      out.resize(mark);
      break;  // not an array literal after all: as a string
    }
    case Kind::kString:
      break;
  }
  AppendJsonString(out, text);
}

std::string RowJson(const TypeMap& types, const store::WalRelation& relation,
                    const store::WalTuple& tuple, bool* complete) {
  std::string out = "{";
  *complete = true;
  bool first = true;
  for (size_t i = 0; i < relation.columns.size() && i < tuple.size(); ++i) {
    const store::WalValue& v = tuple[i];
    if (v.kind == store::WalValue::kUnchangedToast) {
      *complete = false;
      continue;
    }
    if (!first) out.push_back(',');
    first = false;
    AppendJsonString(out, relation.columns[i].name);
    out.push_back(':');
    if (v.kind == store::WalValue::kNull) {
      out.append("null");
    } else {
      AppendValueJson(types, relation.columns[i].type, v.text, out);
    }
  }
  out.push_back('}');
  return out;
}

absl::StatusOr<std::string> KeyJson(const TypeMap& types, const store::WalRelation& relation,
                                    const store::WalTuple& tuple,
                                    const std::vector<std::string>& key_columns) {
  std::string out = "[";
  for (size_t k = 0; k < key_columns.size(); ++k) {
    size_t i = 0;
    while (i < relation.columns.size() && relation.columns[i].name != key_columns[k]) ++i;
    if (i >= relation.columns.size() || i >= tuple.size() ||
        tuple[i].kind != store::WalValue::kText) {
      return absl::InvalidArgumentError(
          absl::StrCat("a change of ", relation.name, " without its key column ", key_columns[k]));
    }
    if (k > 0) out.append(", ");
    AppendValueJson(types, relation.columns[i].type, tuple[i].text, out);
  }
  out.push_back(']');
  return out;
}

}  // namespace strata::replication
