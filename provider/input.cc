#include "provider/input.h"

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/inventory/report_check.h"

namespace strata::provider {

absl::Status CheckName(const std::string& what, const std::string& name) {
  if (name.empty() || name.size() > kMaxNameBytes || !inventory::IsCleanText(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": 1-", kMaxNameBytes, " bytes of UTF-8 text"));
  }
  if (name.front() == ' ' || name.back() == ' ') {
    return absl::InvalidArgumentError(absl::StrCat(what, ": no leading or trailing spaces"));
  }
  return absl::OkStatus();
}

absl::Status CheckNames(const std::string& what,
                        const google::protobuf::RepeatedPtrField<std::string>& names) {
  if (names.size() > kMaxListItems) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": at most ", kMaxListItems));
  }
  for (const auto& n : names) RETURN_IF_ERROR(CheckName(what, n));
  return absl::OkStatus();
}

absl::Status CheckText(const std::string& what, const std::string& text, size_t max) {
  if (text.size() > max || !inventory::IsCleanText(text)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": at most ", max, " bytes of text"));
  }
  return absl::OkStatus();
}

std::vector<std::string> ToVector(const google::protobuf::RepeatedPtrField<std::string>& v) {
  return {v.begin(), v.end()};
}

std::string Truncated(const std::string& s, size_t max) {
  if (s.size() <= max) return s;
  size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  return s.substr(0, end) + "...";
}

bool GlobMatch(const std::string& pattern, const std::string& text) {
  size_t p = 0, t = 0, star = std::string::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (p < pattern.size() && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (star != std::string::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

}  // namespace strata::provider
