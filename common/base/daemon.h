#pragma once

// The main() of a Strata daemon configured by one text-format protobuf file
// (strata-mp, strata-provider): flags, configuration, then the server until
// a signal. Exit codes: 0 ok, 1 failure, 2 bad usage or configuration.
// Call SetBinaryUsage() first.

#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/status/statusor.h"
#include "common/base/log.h"
#include "common/base/signals.h"

namespace strata {

template <typename Server, typename Config>
int RunDaemon(const std::string& program, const std::string& component, int argc, char** argv,
              const std::function<bool()>& verbose,
              const std::function<absl::StatusOr<Config>()>& load,
              const std::function<absl::Status(const Config&)>& validate) {
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
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
  Server server(*config);
  ServeResult r = ServeUntilSignal(server, signals, component);
  absl::Status s = r.started.ok() ? r.finished : r.started;
  if (!s.ok()) std::cerr << program << ": " << s.message() << "\n";
  return s.ok() ? 0 : 1;
}

}  // namespace strata
