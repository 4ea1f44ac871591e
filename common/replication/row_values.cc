#include "common/replication/row_values.h"

#include <cstdint>

namespace strata::replication {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

void SkipSpace(std::string_view s, size_t* i) {
  while (*i < s.size() && IsSpace(s[*i])) ++*i;
}

bool Hex4(std::string_view s, size_t i, uint32_t* v) {
  if (i + 4 > s.size()) return false;
  *v = 0;
  for (size_t k = i; k < i + 4; ++k) {
    const char c = s[k];
    uint32_t d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else {
      return false;
    }
    *v = *v * 16 + d;
  }
  return true;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// `text` as a quoted array element: "..." with " and \ escaped.
void AppendQuoted(std::string_view text, std::string* out) {
  out->push_back('"');
  for (char c : text) {
    if (c == '"' || c == '\\') out->push_back('\\');
    out->push_back(c);
  }
  out->push_back('"');
}

// Past one JSON value at s[*i] (strings, numbers, literals, nested objects
// and arrays); structure only.
bool SkipValue(std::string_view s, size_t* i) {
  const size_t n = s.size();
  if (*i >= n) return false;
  if (s[*i] == '"') {
    for (++*i; *i < n; ++*i) {
      if (s[*i] == '\\') {
        ++*i;
      } else if (s[*i] == '"') {
        ++*i;
        return true;
      }
    }
    return false;
  }
  if (s[*i] == '{' || s[*i] == '[') {
    int depth = 0;
    while (*i < n) {
      const char c = s[*i];
      if (c == '"') {
        if (!SkipValue(s, i)) return false;
        continue;
      }
      if (c == '{' || c == '[') ++depth;
      if ((c == '}' || c == ']') && --depth == 0) {
        ++*i;
        return true;
      }
      ++*i;
    }
    return false;
  }
  const size_t start = *i;
  while (*i < n && s[*i] != ',' && s[*i] != '}' && s[*i] != ']' && !IsSpace(s[*i])) ++*i;
  return *i > start;
}

// One JSON array at s[*i] into `out` as an array literal.
bool AppendArray(std::string_view s, size_t* i, bool json_elements, std::string* out) {
  if (*i >= s.size() || s[*i] != '[') return false;
  ++*i;
  out->push_back('{');
  SkipSpace(s, i);
  if (*i < s.size() && s[*i] == ']') {
    ++*i;
    out->push_back('}');
    return true;
  }
  std::string text;
  while (true) {
    SkipSpace(s, i);
    if (*i >= s.size()) return false;
    if (s[*i] == '[') {
      if (!AppendArray(s, i, json_elements, out)) return false;
    } else {
      const size_t start = *i;
      if (!SkipValue(s, i)) return false;
      const std::string_view v = s.substr(start, *i - start);
      if (v == "null") {
        out->append("NULL");
      } else if (!json_elements && v.front() == '"') {
        text.clear();
        if (!UnescapeJsonString(v, &text)) return false;
        AppendQuoted(text, out);
      } else {
        AppendQuoted(v, out);
      }
    }
    SkipSpace(s, i);
    if (*i < s.size() && s[*i] == ',') {
      ++*i;
      out->push_back(',');
      continue;
    }
    if (*i < s.size() && s[*i] == ']') {
      ++*i;
      out->push_back('}');
      return true;
    }
    return false;
  }
}

}  // namespace

ColumnKind KindOfType(std::string_view type) {
  if (type.size() > 2 && type.substr(type.size() - 2) == "[]") {
    std::string_view element = type.substr(0, type.size() - 2);
    return element == "json" || element == "jsonb" ? ColumnKind::kJsonArray : ColumnKind::kArray;
  }
  return type == "json" || type == "jsonb" ? ColumnKind::kJson : ColumnKind::kScalar;
}

bool UnescapeJsonString(std::string_view raw, std::string* out) {
  if (raw.size() < 2 || raw.front() != '"' || raw.back() != '"') return false;
  const std::string_view s = raw.substr(1, raw.size() - 2);
  out->reserve(out->size() + s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (static_cast<unsigned char>(c) < 0x20 || c == '"') return false;  // not valid JSON
    if (c != '\\') {
      out->push_back(c);
      continue;
    }
    if (++i >= s.size()) return false;
    switch (s[i]) {
      case '"':
        out->push_back('"');
        break;
      case '\\':
        out->push_back('\\');
        break;
      case '/':
        out->push_back('/');
        break;
      case 'b':
        out->push_back('\b');
        break;
      case 'f':
        out->push_back('\f');
        break;
      case 'n':
        out->push_back('\n');
        break;
      case 'r':
        out->push_back('\r');
        break;
      case 't':
        out->push_back('\t');
        break;
      case 'u': {
        uint32_t cp;
        if (!Hex4(s, i + 1, &cp)) return false;
        i += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) {  // a high surrogate needs its low one
          uint32_t low;
          if (i + 2 >= s.size() || s[i + 1] != '\\' || s[i + 2] != 'u' || !Hex4(s, i + 3, &low) ||
              low < 0xDC00 || low > 0xDFFF) {
            return false;
          }
          i += 6;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        } else if ((cp >= 0xDC00 && cp <= 0xDFFF) || cp == 0) {
          return false;  // a lone low surrogate; text cannot hold NUL
        }
        AppendUtf8(cp, out);
        break;
      }
      default:
        return false;
    }
  }
  return true;
}

bool JsonArrayToLiteral(std::string_view raw, bool json_elements, std::string* out) {
  size_t i = 0;
  SkipSpace(raw, &i);
  if (!AppendArray(raw, &i, json_elements, out)) return false;
  SkipSpace(raw, &i);
  return i == raw.size();
}

bool ColumnArray::Append(std::string_view raw, ColumnKind kind) {
  const size_t mark = literal_.size();
  if (!first_) literal_.push_back(',');
  bool ok = true;
  if (raw == "null") {
    literal_.append("NULL");
  } else if (kind == ColumnKind::kJson) {
    AppendQuoted(raw, &literal_);
  } else if (!raw.empty() && raw.front() == '"') {
    std::string text;
    ok = UnescapeJsonString(raw, &text);
    if (ok) AppendQuoted(text, &literal_);
  } else if (!raw.empty() && raw.front() == '[' &&
             (kind == ColumnKind::kArray || kind == ColumnKind::kJsonArray)) {
    std::string array;
    ok = JsonArrayToLiteral(raw, kind == ColumnKind::kJsonArray, &array);
    if (ok) AppendQuoted(array, &literal_);
  } else {
    AppendQuoted(raw, &literal_);
  }
  if (!ok) {
    literal_.resize(mark);
    return false;
  }
  first_ = false;
  return true;
}

std::string ColumnArray::Finish() && {
  literal_.push_back('}');
  return std::move(literal_);
}

}  // namespace strata::replication
