#include "common/base/log.h"

#include <catch2/catch.hpp>

TEST_CASE("a log line is the event followed by key=value fields") {
  auto line = strata::FormatLogLine(strata::LogLevel::kInfo, "link.attached",
                                    {{"peer", "P01"}, {"lag", int64_t{3}}, {"ok", true}});
  REQUIRE(line == "INFO link.attached peer=P01 lag=3 ok=true");
}

TEST_CASE("log values with spaces, quotes or = are quoted and escaped") {
  auto line = strata::FormatLogLine(strata::LogLevel::kError, "link.failed",
                                    {{"error", "no route \"x\""}, {"empty", ""}});
  REQUIRE(line == R"(ERROR link.failed error="no route \"x\"" empty="")");
}
