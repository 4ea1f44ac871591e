#pragma once

// A primary's collection evaluation (a job of its site profile): definitions
// that changed (here or replicated in) at once, devices whose data changed
// as they come (incremental), every collection on the full schedule
// (collection_full_eval_seconds, default a day); after each pass, which
// custom client settings reach which device.

#include "common/site/site_profile.h"

namespace strata::primary {

inline constexpr int64_t kDefaultCollectionFullEvalSeconds = 86400;

site::SiteJob CollectionLoop();

}  // namespace strata::primary
