#pragma once

// Is an application installed on this machine? Its deployment type's
// detection rules (strata/v1/deployment.proto) checked against the real
// machine: files (existence, hash, version), dpkg or rpm packages (at or
// above a version: dpkg's own comparison for dpkg), and scripts (installed
// when they exit 0 and print something). And an application's requirements:
// the query language over the device's own inventory.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/collections/query.h"
#include "strata/v1/client.pb.h"
#include "strata/v1/deployment.pb.h"

namespace strata::agent {

struct DetectContext {
  std::string dpkg_dir = "/var/lib/dpkg";  // dpkg's database (--admindir)
  std::string rpm_command = "rpm";         // "none": no rpm on this machine
  std::string work_dir;                    // for detection scripts' files
  std::vector<std::string> env;            // "NAME=value" for detection scripts
};

// True when the rules hold (all, or any for "or"). Errors: a rule that
// could not be checked (a script that could not start, dpkg-query missing);
// a package that is not installed is false, not an error.
absl::StatusOr<bool> Detect(const v1::Detection& detection, const DetectContext& ctx);

// The facts the query language evaluates on a client, from its inventory.
collections::DeviceFacts FactsOf(const v1::InventoryReport& inventory, const std::string& site);

}  // namespace strata::agent
