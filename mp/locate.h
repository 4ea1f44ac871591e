#pragma once

// Service location: which site and management points serve an agent, from
// its IP addresses and the boundaries in the site bundle. A boundary is an
// IPv4/IPv6 subnet ("10.1.0.0/16") or range ("10.1.0.10-10.1.0.200"); the
// smallest matching boundary wins; its group's assigned site is the answer.
// No match: the MP's own site (the site default). Distribution points: the
// boundary group's, in the order it names them, then the assigned site's
// (online ones first).

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "strata/v1/client.pb.h"

namespace strata::mp {

v1::ServiceLocation Locate(const v1::SiteBundle& bundle, const std::vector<std::string>& ips,
                           const std::string& own_address);

}  // namespace strata::mp
