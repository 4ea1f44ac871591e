#pragma once

#include "absl/status/status.h"
#include "common/store/database.h"

namespace strata::replication {

// Applies the replication machinery's migrations (repl_* tables, capture
// triggers, repl_enable()).
absl::Status ApplyReplicationMigrations(store::Connection& conn);

}  // namespace strata::replication
