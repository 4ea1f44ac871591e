#pragma once

// When an agent dials its nudge channel again. A channel that was held and
// ended (the MP restarted, the link dropped) is redialled after a wait drawn
// uniformly from [0.5 s, `spread`): a fleet that lost its MP at one moment
// comes back spread over it, not as one handshake storm. A dial that fails
// backs off exponentially with jitter (1 s doubling to `max`). Not
// thread-safe: one loop owns one.

#include <chrono>
#include <random>

#include "common/base/backoff.h"

namespace strata::nudge {

class Reconnect {
 public:
  using Duration = std::chrono::milliseconds;

  explicit Reconnect(Duration spread = std::chrono::seconds(15),
                     Duration max = std::chrono::minutes(5))
      : spread_(spread), max_(max), backoff_(std::chrono::seconds(1), max, /*jitter=*/true) {}

  // The channel was welcomed: the next failure starts from the spread.
  void Welcomed() { held_ = true; }

  // The wait before dialling again.
  Duration Next() {
    if (held_) {
      held_ = false;
      backoff_.Reset();
      std::uniform_int_distribution<int64_t> d(500, std::max<int64_t>(501, spread_.count()));
      return Duration(d(rng_));
    }
    return backoff_.Next();
  }

  // Refused for good (revoked, blocked): the longest wait.
  Duration Refused() const { return max_; }

 private:
  const Duration spread_;
  const Duration max_;
  Backoff backoff_;
  bool held_ = false;
  std::minstd_rand rng_{std::random_device{}()};
};

}  // namespace strata::nudge
