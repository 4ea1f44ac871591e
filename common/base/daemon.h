#pragma once

// What every Strata server process is (site servers, management points,
// providers): a Daemon, started once, waited on, shut down from any thread;
// and the main() of one configured by a text-format protobuf file.

#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/status/statusor.h"
#include "common/base/log.h"
#include "common/base/signals.h"

namespace strata {

class Daemon {
 public:
  virtual ~Daemon() = default;
  // Once: checks what it needs, starts serving and its loops.
  virtual absl::Status Start() = 0;
  // Blocks until Shutdown(), or a fatal error (returned; then call Shutdown()).
  virtual absl::Status Wait() = 0;
  // Stops everything in reverse order of start. Thread-safe; a second call
  // waits until the first is done.
  virtual void Shutdown() = 0;
  // The address clients can dial (valid after Start()).
  virtual const std::string& bound_address() const = 0;
};

// Runs a daemon the way every Strata binary does: Start(); on SIGINT or
// SIGTERM, Shutdown(); Wait(); Shutdown() (after a fatal error). Logs
// `<component>.start_failed` and `<component>.signal`. `signals` comes from
// BlockTerminationSignals(), called before any thread started.
ServeResult ServeUntilSignal(Daemon& daemon, const sigset_t& signals, const std::string& component);

// The main() of a daemon configured by one file (strata-mp, strata-provider):
// flags, configuration (`load`, then `validate`), then `make`'s daemon until
// a signal. Exit codes: 0 ok, 1 failure, 2 bad usage or configuration.
// Call SetBinaryUsage() first. `command`, if given, sees the positional
// arguments first and runs a command instead of the daemon when it returns
// an exit code (`init` and `check`, common/setup/setup.h).
template <typename Config>
int RunDaemon(const std::string& program, const std::string& component, int argc, char** argv,
              const std::function<bool()>& verbose,
              const std::function<absl::StatusOr<Config>()>& load,
              const std::function<absl::Status(const Config&)>& validate,
              const std::function<std::unique_ptr<Daemon>(const Config&)>& make,
              const std::function<std::optional<int>(const std::vector<char*>&)>& command = {}) {
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (command) {
    if (std::optional<int> code = command({rest.begin() + 1, rest.end()})) return *code;
  }
  if (rest.size() > 1) {
    std::cerr << program << ": unexpected argument \"" << rest[1] << "\" (see --help)\n";
    return 2;
  }
  if (verbose()) SetLogLevel(LogLevel::kDebug);
  absl::StatusOr<Config> config = load();
  if (!config.ok()) {
    std::cerr << program << ": " << config.status().message() << "\n";
    return 2;
  }
  if (absl::Status s = validate(*config); !s.ok()) {
    std::cerr << program << ": configuration: " << s.message() << "\n";
    return 2;
  }
  const sigset_t signals = BlockTerminationSignals();
  std::unique_ptr<Daemon> daemon = make(*config);
  ServeResult r = ServeUntilSignal(*daemon, signals, component);
  absl::Status s = r.started.ok() ? r.finished : r.started;
  if (!s.ok()) std::cerr << program << ": " << s.message() << "\n";
  return s.ok() ? 0 : 1;
}

}  // namespace strata
