#pragma once

// Hybrid logical clock: 48 bits of physical milliseconds, 16 bits of logical
// counter, packed in one int64 so that timestamps compare as integers. The
// same encoding is computed in SQL by the change-capture trigger
// (common/replication/migrations), which stamps every replicated row; this
// class serves code that reasons about those stamps. Thread-safe.

#include <atomic>
#include <cstdint>
#include <functional>

namespace strata {

// Milliseconds since the Unix epoch, from the system clock.
int64_t WallClockMs();

class HybridLogicalClock {
 public:
  using PhysicalClock = std::function<int64_t()>;  // milliseconds since the epoch
  HybridLogicalClock();
  explicit HybridLogicalClock(PhysicalClock physical);

  // A timestamp greater than every one this clock issued or observed.
  int64_t Now();
  // Merges a timestamp seen from another site, so later Now() values follow it.
  void Observe(int64_t remote);

  static int64_t Pack(int64_t physical_ms, int64_t logical) {
    return (physical_ms << 16) | logical;
  }
  static int64_t PhysicalMs(int64_t hlc) { return hlc >> 16; }
  static int64_t Logical(int64_t hlc) { return hlc & 0xFFFF; }

 private:
  PhysicalClock physical_;
  std::atomic<int64_t> last_{0};
};

}  // namespace strata
