#pragma once

#include "strata/v1/site_link.pb.h"

namespace strata::site {

// The whole of main() for strata-cas, strata-primary and strata-secondary:
//   strata-<type> [--config FILE] [flags]          run the site server
//   strata-<type> status [--config FILE] [flags]   print link health
// Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration,
// 3 refused by the parent (topology), 4 site server unreachable (status).
int SiteMain(v1::SiteType type, int argc, char** argv);

}  // namespace strata::site
