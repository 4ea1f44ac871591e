#pragma once

// What a content library should hold, read from the site's database: the
// newest complete version of each package (all packages for a site server,
// the packages distributed to it or its groups for a distribution point),
// a version's manifest, and an admin's request to validate now.

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/store/database.h"
#include "strata/v1/content.pb.h"

namespace strata::site {

struct VersionKey {
  std::string package;
  int64_t version = 0;
  // The version row's clock (_hlc): a package deleted and made again under
  // the same name restarts at version 1, with other files. Not part of the
  // ordering.
  int64_t stamp = 0;
  bool operator<(const VersionKey& o) const {
    return package < o.package || (package == o.package && version < o.version);
  }
  bool operator==(const VersionKey& o) const {
    return package == o.package && version == o.version;
  }
};

// Newest versions whose file rows have all arrived (a link's batch may end
// inside the transaction that wrote them). `dp` empty: every package; else
// those distributed to that DP or one of its groups.
absl::StatusOr<std::vector<VersionKey>> NewestVersions(store::Connection& conn,
                                                       const std::string& dp);

absl::StatusOr<v1::ContentManifest> ReadManifest(store::Connection& conn, const VersionKey& key);

// The content link an admin set for `target` (a site code or a DP's name),
// if any (stratactl set content-link).
struct LinkLimits {
  int64_t max_bytes_per_second = 0;
  std::string hours;
};
absl::StatusOr<std::optional<LinkLimits>> ContentLinkOf(store::Connection& conn,
                                                        const std::string& target);

// When an admin last asked `location` ('site' or a DP's name) at `site` to
// validate, in Unix ms (0: never).
absl::StatusOr<int64_t> ValidationRequestedMs(store::Connection& conn, const std::string& site,
                                              const std::string& location);

}  // namespace strata::site
