#include "common/base/status.h"

#include <catch2/catch.hpp>

namespace {

absl::StatusOr<int> Half(int v) {
  if (v % 2 != 0) return absl::InvalidArgumentError("odd");
  return v / 2;
}

absl::StatusOr<int> Quarter(int v) {
  ASSIGN_OR_RETURN(int h, Half(v));
  ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

absl::Status Check(int v) {
  RETURN_IF_ERROR(Quarter(v).status());
  return absl::OkStatus();
}

}  // namespace

TEST_CASE("ASSIGN_OR_RETURN passes values through and returns the first error") {
  REQUIRE(*Quarter(8) == 2);
  REQUIRE(Quarter(6).status().code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(Check(8).ok());
  REQUIRE(Check(3).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("Annotate keeps the code and prefixes the message") {
  auto s = strata::Annotate(absl::UnavailableError("connection refused"), "database p01");
  REQUIRE(s.code() == absl::StatusCode::kUnavailable);
  REQUIRE(s.message() == "database p01: connection refused");
  REQUIRE(strata::Annotate(absl::OkStatus(), "x").ok());
}
