#pragma once

// How the query language compares text where there is no database (the
// agent): versions as strata_version_key orders them, and ILIKE patterns.

#include <string>
#include <string_view>

namespace strata::collections {

// The key strata_version_key (migration 0003) gives: numeric runs by value,
// so that "3.0.9" < "3.0.11" as keys compare.
std::string VersionKey(std::string_view v);

// ILIKE: % any run, _ one character, a backslash makes the next literal;
// case-insensitive (ASCII).
bool Like(std::string_view s, std::string_view p);

}  // namespace strata::collections
