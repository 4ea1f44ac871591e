#pragma once

// Checks of what administrators send, shared by the resources: names,
// lists of names, free text; each failure an InvalidArgument naming the
// field.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "google/protobuf/repeated_field.h"

namespace strata::provider {

inline constexpr size_t kMaxNameBytes = 256;
inline constexpr size_t kMaxCommentBytes = 1024;
inline constexpr int kMaxListItems = 64;  // roles, scopes, collections of one object

// 1-256 bytes of clean UTF-8, no leading or trailing space.
absl::Status CheckName(const std::string& what, const std::string& name);
// At most kMaxListItems names, each a CheckName.
absl::Status CheckNames(const std::string& what,
                        const google::protobuf::RepeatedPtrField<std::string>& names);
// At most `max` bytes of clean UTF-8 (a comment, a description).
absl::Status CheckText(const std::string& what, const std::string& text,
                       size_t max = kMaxCommentBytes);

std::vector<std::string> ToVector(const google::protobuf::RepeatedPtrField<std::string>& v);

// At most `max` bytes of `s`, cut at a character boundary (UTF-8), "..."
// marking the cut.
std::string Truncated(const std::string& s, size_t max);

// `text` matches `pattern`, where * stands for any run of characters.
bool GlobMatch(const std::string& pattern, const std::string& text);

}  // namespace strata::provider
