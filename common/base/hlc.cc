#include "common/base/hlc.h"

#include <chrono>

namespace strata {

int64_t WallClockMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

HybridLogicalClock::HybridLogicalClock() : HybridLogicalClock(WallClockMs) {}

HybridLogicalClock::HybridLogicalClock(PhysicalClock physical) : physical_(std::move(physical)) {}

int64_t HybridLogicalClock::Now() {
  int64_t wall = Pack(physical_(), 0);
  int64_t prev = last_.load();
  int64_t next;
  do {
    next = wall > prev ? wall : prev + 1;
  } while (!last_.compare_exchange_weak(prev, next));
  return next;
}

void HybridLogicalClock::Observe(int64_t remote) {
  int64_t prev = last_.load();
  while (remote > prev && !last_.compare_exchange_weak(prev, remote)) {
  }
}

}  // namespace strata
