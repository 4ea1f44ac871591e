#include "common/base/signals.h"

#include "common/base/daemon.h"

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

ServeResult ServeUntilSignal(Daemon& daemon, const sigset_t& signals,
                             const std::string& component) {
  ServeResult r;
  r.started = daemon.Start();
  if (!r.started.ok()) {
    LogError(component + ".start_failed", {{"error", r.started}});
    return r;
  }
  OnTerminationSignal(signals, [&daemon, component](int sig) {
    LogInfo(component + ".signal", {{"signal", sig}});
    daemon.Shutdown();
  });
  r.finished = daemon.Wait();
  daemon.Shutdown();
  return r;
}

}  // namespace strata
