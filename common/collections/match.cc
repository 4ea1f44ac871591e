#include "common/collections/match.h"

#include "absl/strings/ascii.h"

namespace strata::collections {

std::string VersionKey(std::string_view v) {
  std::string out;
  size_t i = 0;
  while (i < v.size()) {
    const bool digits = absl::ascii_isdigit(static_cast<unsigned char>(v[i]));
    size_t j = i;
    while (j < v.size() && absl::ascii_isdigit(static_cast<unsigned char>(v[j])) == digits) ++j;
    std::string_view run = v.substr(i, j - i);
    if (digits) {
      while (run.size() > 1 && run[0] == '0') run.remove_prefix(1);
      if (run == "0") run = "";
      if (run.size() < 20) out.append(20 - run.size(), '0');
    }
    out.append(run);
    i = j;
  }
  return out;
}

// Greedy with one backtrack point (the last %): linear in practice, at
// worst |s| x |p|, whatever the pattern.
bool Like(std::string_view s, std::string_view p) {
  size_t i = 0, j = 0;
  size_t star = std::string_view::npos, mark = 0;
  auto lower = [](char c) { return absl::ascii_tolower(static_cast<unsigned char>(c)); };
  while (i < s.size()) {
    if (j < p.size() && p[j] == '%') {
      star = j++;
      mark = i;
      continue;
    }
    if (j < p.size()) {
      const bool escaped = p[j] == '\\' && j + 1 < p.size();
      const char want = escaped ? p[j + 1] : p[j];
      if ((!escaped && want == '_') || lower(want) == lower(s[i])) {
        j += escaped ? 2 : 1;
        ++i;
        continue;
      }
    }
    if (star == std::string_view::npos) return false;
    j = star + 1;  // the last % takes one more character
    i = ++mark;
  }
  while (j < p.size() && p[j] == '%') ++j;
  return j == p.size();
}

}  // namespace strata::collections
