#pragma once

#include <string>
#include <string_view>

namespace strata {

// Appends `s` as a JSON string literal (quoted, escaped as PostgreSQL
// escapes it in to_json) to `out`.
void AppendJsonString(std::string& out, std::string_view s);

}  // namespace strata
