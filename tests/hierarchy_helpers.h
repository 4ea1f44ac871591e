#pragma once

// What the hierarchy tests share: a whole hierarchy as real processes (CAS,
// two primaries, a secondary under P01) and helpers over global_settings.

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "tests/fixture/site_fixture.h"

namespace strata::testing {

struct Hierarchy {
  TempDir dir;
  std::unique_ptr<SiteProcess> cas, p01, p02, s01;

  explicit Hierarchy(SiteOptions cas_options = {}, bool with_p02 = true);
};

// "SELECT count(*) FROM global_settings WHERE <where>".
std::string CountOf(const std::string& where);

// Writes settings prefix0 .. prefix<rows-1> at the database, one per
// transaction, pausing every ten. Meant for a worker thread: it reports
// instead of asserting (Catch2 assertions are for the test's own thread).
absl::Status WriteSettings(const std::string& conninfo, const std::string& prefix, int rows,
                           std::chrono::milliseconds pause);

// Records every write applied to global_settings at `db` (test_writes):
// a redelivered change that applies nothing records nothing, so each name
// appears once when each change was applied once.
void RecordWrites(const TestDatabase& db);

// "applies/names" of the recorded writes whose name is LIKE `pattern`.
std::string WritesOf(const TestDatabase& db, const std::string& pattern);

}  // namespace strata::testing
