#include "common/base/signals.h"

#include <pthread.h>

#include <thread>

namespace strata {

sigset_t BlockTerminationSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return signals;
}

void OnTerminationSignal(const sigset_t& signals, std::function<void(int)> on_signal) {
  std::thread([signals, on_signal = std::move(on_signal)] {
    int sig = 0;
    sigwait(&signals, &sig);
    on_signal(sig);
  }).detach();
}

}  // namespace strata
