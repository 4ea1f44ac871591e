#pragma once

// Exponential backoff for reconnect and retry loops: each Next() waits longer
// (×2 up to `max`), Reset() after a success starts again from `initial`.
// With jitter, each wait is drawn from [0.5, 1.5) of the nominal one, so
// that a fleet that lost its server at the same moment does not come back
// in step. Not thread-safe: one loop owns one Backoff.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>

namespace strata {

class Backoff {
 public:
  using Duration = std::chrono::milliseconds;

  Backoff(Duration initial, Duration max, bool jitter = false)
      : initial_(initial), max_(std::max(max, initial)), next_(initial), jitter_(jitter) {}

  // The wait before the next attempt; the one after it doubles.
  Duration Next() {
    Duration nominal = next_;
    next_ = std::min(next_ * 2, max_);
    if (!jitter_ || nominal.count() < 2) return nominal;
    std::uniform_int_distribution<int64_t> d(nominal.count() / 2, nominal.count() * 3 / 2 - 1);
    return Duration(d(rng_));
  }

  // The wait Next() would return, without jitter and without advancing.
  Duration Peek() const { return next_; }

  void Reset() { next_ = initial_; }

  // A connection that stayed up for `lived` was a success worth resetting
  // for; one that dropped at once was not (else a peer that accepts and
  // drops would be hammered at `initial`).
  void ResetIfLived(std::chrono::steady_clock::duration lived,
                    std::chrono::steady_clock::duration enough = std::chrono::seconds(10)) {
    if (lived >= enough) Reset();
  }

 private:
  const Duration initial_, max_;
  Duration next_;
  const bool jitter_;
  std::minstd_rand rng_{std::random_device{}()};
};

}  // namespace strata
