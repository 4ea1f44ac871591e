#pragma once

// SQL fragments the provider's listings and reports share.

#include <string>

#include "absl/strings/str_cat.h"

namespace strata::provider {

// An RFC 3339 UTC timestamp of a timestamptz column, "" for NULL.
inline std::string Ts(const std::string& column) {
  return absl::StrCat("coalesce(to_char(", column,
                      " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '')");
}

// A name pattern ("*ssl*") as an ILIKE pattern, with %, _ and \ taken literally.
inline std::string NamePattern(const std::string& filter) {
  std::string out;
  for (char c : filter) {
    if (c == '*') {
      out.push_back('%');
    } else {
      if (c == '%' || c == '_' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace strata::provider
