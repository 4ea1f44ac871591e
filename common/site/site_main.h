#pragma once

#include "common/site/site_profile.h"

namespace strata::site {

// The whole of main() for strata-cas, strata-primary and strata-secondary:
//   strata-<type> [--config FILE] [flags]          run the site server
//   strata-<type> status [--config FILE] [flags]   print link health
// Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration,
// 3 refused by the parent (topology), 4 site server unreachable (status).
// `profile` says what the site type adds to the shared core.
int SiteMain(SiteProfile profile, int argc, char** argv);

}  // namespace strata::site
