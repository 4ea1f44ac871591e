#include "common/base/json.h"

#include <catch2/catch.hpp>

TEST_CASE("json strings escape quotes, backslashes and control characters") {
  std::string out;
  strata::AppendJsonString(out, "a\"b\\c\nd\x01");
  REQUIRE(out == R"("a\"b\\c\nd\u0001")");
}
