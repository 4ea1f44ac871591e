#pragma once

// Termination signals for the long-running binaries: SIGINT and SIGTERM go to
// one thread that asks the process to stop, instead of interrupting whichever
// thread they happen to hit.

#include <signal.h>

#include <functional>
#include <string>

#include "absl/status/status.h"

namespace strata {

// Blocks SIGINT and SIGTERM in the calling thread and every thread it starts
// later (call it early in main, before any thread exists) and ignores
// SIGPIPE. Returns the blocked set, for OnTerminationSignal.
sigset_t BlockTerminationSignals();

// Starts a detached thread that waits for one of `signals` and then calls
// `on_signal` with it, once.
void OnTerminationSignal(const sigset_t& signals, std::function<void(int)> on_signal);

// How a daemon's run ended: `started` is Start()'s status; `finished` is
// Wait()'s (OK when stopped by a signal).
struct ServeResult {
  absl::Status started;
  absl::Status finished;
};

}  // namespace strata
