#pragma once

// Help and --version for a Strata binary (Abseil flags).

#include <string>

namespace strata {

// --help lists the flags defined in source files whose path contains
// `flag_dir` (e.g. "mp/"), after `message`; --version prints the version.
void SetBinaryUsage(const std::string& flag_dir, const std::string& message);

}  // namespace strata
