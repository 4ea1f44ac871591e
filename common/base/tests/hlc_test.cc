#include "common/base/hlc.h"

#include <catch2/catch.hpp>

using strata::HybridLogicalClock;

TEST_CASE("hlc is strictly increasing while the wall clock stands still") {
  int64_t wall = 1'000'000;
  HybridLogicalClock clock([&] { return wall; });
  int64_t a = clock.Now();
  int64_t b = clock.Now();
  int64_t c = clock.Now();
  REQUIRE(a < b);
  REQUIRE(b < c);
  REQUIRE(HybridLogicalClock::PhysicalMs(c) == wall);
  REQUIRE(HybridLogicalClock::Logical(c) == 2);
}

TEST_CASE("hlc follows the wall clock when it moves ahead") {
  int64_t wall = 5'000;
  HybridLogicalClock clock([&] { return wall; });
  clock.Now();
  wall = 6'000;
  REQUIRE(clock.Now() == HybridLogicalClock::Pack(6'000, 0));
}

TEST_CASE("hlc stays ahead of a remote timestamp from a clock that runs fast") {
  int64_t wall = 1'000;
  HybridLogicalClock clock([&] { return wall; });
  int64_t remote = HybridLogicalClock::Pack(90'000, 7);
  clock.Observe(remote);
  int64_t next = clock.Now();
  REQUIRE(next > remote);
  // Observing an older timestamp changes nothing.
  clock.Observe(HybridLogicalClock::Pack(10, 0));
  REQUIRE(clock.Now() > next);
}
