#include "common/base/usage.h"

#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "common/base/version.h"

namespace strata {

void SetBinaryUsage(const std::string& flag_dir, const std::string& message) {
  absl::FlagsUsageConfig usage;
  // And `init --force` (common/setup), which every binary has.
  usage.contains_help_flags = [flag_dir](absl::string_view file) {
    return absl::StrContains(file, flag_dir) || absl::StrContains(file, "common/setup/");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  usage.version_string = [] { return std::string("strata ") + kVersion + "\n"; };
  // Paths relative to the source tree, whatever the build directory.
  usage.normalize_filename = [](absl::string_view f) {
    for (const char* top : {"common/", "mp/", "agent/", "provider/", "bench/"}) {
      size_t pos = f.find(top);
      if (pos != absl::string_view::npos) return std::string(f.substr(pos));
    }
    return std::string(f);
  };
  absl::SetFlagsUsageConfig(usage);
  absl::SetProgramUsageMessage(message);
}

}  // namespace strata
