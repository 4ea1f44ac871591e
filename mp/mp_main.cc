#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/config.h"
#include "common/base/log.h"
#include "common/base/signals.h"
#include "mp/mp_server.h"

ABSL_FLAG(std::string, config, "", "Management point configuration: a text-format MpConfig file");
ABSL_FLAG(std::string, name, "", "MP name = its certificate's CN, e.g. P01.mp1 (overrides)");
ABSL_FLAG(std::string, site, "", "Address of the site server it serves (overrides)");
ABSL_FLAG(std::string, listen, "",
          "Listen address for agents, host:port or unix:/path (overrides)");
ABSL_FLAG(std::string, public_address, "", "Address agents are told to use (overrides)");
ABSL_FLAG(std::string, spool_dir, "", "Directory of the durable spool (overrides)");
ABSL_FLAG(std::string, tls_ca, "", "PEM file of the hierarchy root CA (overrides)");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate of this MP, OU=mp (overrides)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of this MP (overrides)");
ABSL_FLAG(std::string, address_file, "", "Write the bound address here (overrides)");
ABSL_FLAG(bool, verbose, false, "Log debug events too");

namespace strata::mp {
namespace {

absl::StatusOr<v1::MpConfig> LoadConfig() {
  v1::MpConfig c;
  if (!absl::GetFlag(FLAGS_config).empty()) {
    if (absl::Status s = LoadTextProtoFile(absl::GetFlag(FLAGS_config), &c); !s.ok()) return s;
  }
  auto set = [](const std::string& v, auto setter) {
    if (!v.empty()) setter(v);
  };
  set(absl::GetFlag(FLAGS_name), [&](const std::string& v) { c.set_name(v); });
  set(absl::GetFlag(FLAGS_site), [&](const std::string& v) { c.set_site_address(v); });
  set(absl::GetFlag(FLAGS_listen), [&](const std::string& v) { c.set_listen_address(v); });
  set(absl::GetFlag(FLAGS_public_address), [&](const std::string& v) { c.set_public_address(v); });
  set(absl::GetFlag(FLAGS_spool_dir), [&](const std::string& v) { c.set_spool_dir(v); });
  set(absl::GetFlag(FLAGS_tls_ca), [&](const std::string& v) { c.mutable_tls()->set_ca_file(v); });
  set(absl::GetFlag(FLAGS_tls_cert),
      [&](const std::string& v) { c.mutable_tls()->set_cert_file(v); });
  set(absl::GetFlag(FLAGS_tls_key),
      [&](const std::string& v) { c.mutable_tls()->set_key_file(v); });
  set(absl::GetFlag(FLAGS_address_file), [&](const std::string& v) { c.set_address_file(v); });
  return c;
}

}  // namespace

int MpMain(int argc, char** argv) {
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view f) { return absl::StrContains(f, "mp/"); };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  usage.version_string = [] { return std::string("strata ") + kVersion + "\n"; };
  absl::SetFlagsUsageConfig(usage);
  absl::SetProgramUsageMessage(
      "Strata management point: the contact of agents (registration, service location, "
      "policy,\nintake of inventory and state, push notifications).\n\nUsage:\n  strata-mp "
      "--config FILE [flags]\n\nThe config file is a text-format strata.v1.MpConfig (see "
      "proto/strata/v1/config.proto and\ndeploy/examples/mp.conf). Exit codes: 0 ok, 1 failure, "
      "2 bad usage or configuration.");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::cerr << "strata-mp: unexpected argument \"" << rest[1] << "\" (see --help)\n";
    return 2;
  }
  if (absl::GetFlag(FLAGS_verbose)) SetLogLevel(LogLevel::kDebug);
  auto config = LoadConfig();
  if (!config.ok()) {
    std::cerr << "strata-mp: " << config.status().message() << "\n";
    return 2;
  }
  if (absl::Status s = ValidateMpConfig(*config); !s.ok()) {
    std::cerr << "strata-mp: configuration: " << s.message() << "\n";
    return 2;
  }
  const sigset_t signals = BlockTerminationSignals();
  MpServer server(*config);
  if (absl::Status s = server.Start(); !s.ok()) {
    LogError("mp.start_failed", {{"error", s}});
    std::cerr << "strata-mp: " << s.message() << "\n";
    return 1;
  }
  OnTerminationSignal(signals, [&server](int sig) {
    LogInfo("mp.signal", {{"signal", sig}});
    server.Shutdown();
  });
  absl::Status s = server.Wait();
  server.Shutdown();  // after a fatal error (a signal has stopped it already)
  if (!s.ok()) std::cerr << "strata-mp: " << s.message() << "\n";
  return s.ok() ? 0 : 1;
}

}  // namespace strata::mp

int main(int argc, char** argv) { return strata::mp::MpMain(argc, argv); }
