#include "mp/register_limit.h"

#include <catch2/catch.hpp>

#include "absl/strings/match.h"

using strata::mp::RegisterLimit;
using strata::mp::SourceOf;

TEST_CASE("registrations are limited per source and in total, with a retry hint") {
  RegisterLimit limit(/*per_source_per_minute=*/3, /*total_per_minute=*/5);
  const absl::Time t0 = absl::FromUnixSeconds(1000000);
  for (int i = 0; i < 3; ++i) REQUIRE(limit.TakeAt("10.0.0.1", t0).ok());
  absl::Status s = limit.TakeAt("10.0.0.1", t0);
  CHECK(s.code() == absl::StatusCode::kResourceExhausted);
  CHECK(absl::StrContains(s.message(), "from 10.0.0.1"));
  CHECK(absl::StrContains(s.message(), "retry in 20 s"));  // one token per 20 s
  // Another source still gets in, up to the total.
  REQUIRE(limit.TakeAt("10.0.0.2", t0).ok());
  REQUIRE(limit.TakeAt("10.0.0.2", t0).ok());
  s = limit.TakeAt("10.0.0.3", t0);
  CHECK(s.code() == absl::StatusCode::kResourceExhausted);
  CHECK(absl::StrContains(s.message(), "at most 5 registrations a minute"));
  // A refused source spent nothing: 20 s later it has one token again.
  CHECK(limit.TakeAt("10.0.0.1", t0 + absl::Seconds(19)).code() ==
        absl::StatusCode::kResourceExhausted);
  CHECK(limit.TakeAt("10.0.0.1", t0 + absl::Seconds(20)).ok());
}

TEST_CASE("a negative rate means no limit of that kind") {
  RegisterLimit limit(-1, -1);
  const absl::Time t0 = absl::FromUnixSeconds(1000000);
  for (int i = 0; i < 10000; ++i) REQUIRE(limit.TakeAt("local", t0).ok());
}

TEST_CASE("the source of a gRPC peer is its address without the port") {
  CHECK(SourceOf("ipv4:10.1.2.3:5555") == "10.1.2.3");
  CHECK(SourceOf("ipv6:[fe80::1]:443") == "fe80::1");
  CHECK(SourceOf("unix:/run/strata/mp.sock") == "local");
}
