#pragma once

// Starting a runbook job (migration 0017): what the provider's StartRunbook
// and a site's runbook schedules share. The job carries its own copy of the
// runbook's published version and goes to its worker group's site.

#include <string>

#include "absl/status/statusor.h"
#include "common/store/database.h"

namespace strata::collections {

struct RunbookJobRequest {
  std::string runbook;
  int version = 0;             // the published version (its row is copied)
  std::string arguments_json;  // strata.v1.ScriptArgument list, every parameter resolved
  std::string group;           // the worker group
  std::string site;            // the group's site
  std::string created_by;
  std::string schedule;  // "" : an administrator started it
};

// Inserts the job; its id. NotFound when the version is gone.
absl::StatusOr<std::string> InsertRunbookJob(store::Transaction& tx, const RunbookJobRequest& r);

}  // namespace strata::collections
