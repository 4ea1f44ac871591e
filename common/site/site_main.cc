#include "common/site/site_main.h"
#include "common/base/usage.h"

#include <cstdio>
#include <fstream>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/base/config.h"
#include "common/base/log.h"
#include "common/base/signals.h"
#include "common/site/site_server.h"
#include "common/site/site_status.h"
#include "common/site/topology.h"

ABSL_FLAG(std::string, config, "",
          "Site server configuration: a text-format SiteServerConfig file");
ABSL_FLAG(std::string, site_code, "", "Three-character site code (overrides the config)");
ABSL_FLAG(std::string, database, "", "PostgreSQL connection string (overrides the config)");
ABSL_FLAG(std::string, listen, "", "Listen address host:port or unix:/path (overrides the config)");
ABSL_FLAG(std::string, parent, "", "Parent site server address (overrides the config)");
ABSL_FLAG(std::string, tls_ca, "", "PEM file of the hierarchy root CA (overrides the config)");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate of this site server (overrides the config)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of this site server (overrides the config)");
ABSL_FLAG(std::string, issuing_ca_cert, "",
          "PEM certificate of this site's issuing CA, which signs client certificates "
          "(overrides the config)");
ABSL_FLAG(std::string, issuing_ca_key, "",
          "PEM key of this site's issuing CA (overrides the config)");
ABSL_FLAG(std::string, address_file, "", "Write the bound address here (overrides the config)");
ABSL_FLAG(std::string, address, "", "status: the site server to ask (default: from the config)");
ABSL_FLAG(bool, verbose, false, "Log debug events too");

namespace strata::site {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
constexpr int kExitRefused = 3;
constexpr int kExitUnavailable = 4;

absl::StatusOr<v1::SiteServerConfig> LoadConfig() {
  v1::SiteServerConfig config;
  if (!absl::GetFlag(FLAGS_config).empty()) {
    absl::Status s = LoadTextProtoFile(absl::GetFlag(FLAGS_config), &config);
    if (!s.ok()) return s;
  }
  if (absl::Status s = OverrideStringFields(
          &config, {{"site_code", absl::GetFlag(FLAGS_site_code)},
                    {"database", absl::GetFlag(FLAGS_database)},
                    {"listen_address", absl::GetFlag(FLAGS_listen)},
                    {"parent_address", absl::GetFlag(FLAGS_parent)},
                    {"tls.ca_file", absl::GetFlag(FLAGS_tls_ca)},
                    {"tls.cert_file", absl::GetFlag(FLAGS_tls_cert)},
                    {"tls.key_file", absl::GetFlag(FLAGS_tls_key)},
                    {"issuing_ca.cert_file", absl::GetFlag(FLAGS_issuing_ca_cert)},
                    {"issuing_ca.key_file", absl::GetFlag(FLAGS_issuing_ca_key)},
                    {"address_file", absl::GetFlag(FLAGS_address_file)}});
      !s.ok()) {
    return s;
  }
  return config;
}

int RunStatus(const v1::SiteServerConfig& config) {
  std::string address = absl::GetFlag(FLAGS_address);
  if (address.empty() && !config.address_file().empty()) {
    std::ifstream in(config.address_file());
    std::getline(in, address);
  }
  if (address.empty()) address = config.listen_address();
  if (address.empty()) {
    std::cerr << "status: no address: give --address, or --config with listen_address\n";
    return kExitUsage;
  }
  if (absl::StartsWith(address, "0.0.0.0:")) address = "localhost:" + address.substr(8);
  auto status = QueryStatus(address, config.tls());
  if (!status.ok()) {
    std::cerr << "status: " << address << ": " << status.status().message() << "\n";
    return status.status().code() == absl::StatusCode::kUnavailable ||
                   status.status().code() == absl::StatusCode::kDeadlineExceeded
               ? kExitUnavailable
               : kExitFailure;
  }
  std::cout << FormatStatus(*status);
  return kExitOk;
}

}  // namespace

int SiteMain(SiteProfile profile, int argc, char** argv) {
  const v1::SiteType type = profile.type;
  const std::string binary = absl::StrCat("strata-", SiteTypeName(type));
  SetBinaryUsage(
      "common/site/",
      absl::StrCat(
          "Strata ", SiteTypeLongName(type), " server.\n\nUsage:\n  ", binary,
          " --config FILE [flags]          run the site server\n  ", binary,
          " status --config FILE [flags]   print the health of this site's replication links\n\n"
          "The config file is a text-format strata.v1.SiteServerConfig (see "
          "proto/strata/v1/config.proto\nand deploy/examples/). Exit codes: 0 ok, 1 failure, 2 bad "
          "usage or configuration,\n3 refused by the parent site, 4 site server unreachable."));
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_verbose)) SetLogLevel(LogLevel::kDebug);
  bool status_command = false;
  for (size_t i = 1; i < positional.size(); ++i) {
    if (std::string_view(positional[i]) == "status") {
      status_command = true;
    } else {
      std::cerr << binary << ": unknown command \"" << positional[i]
                << "\" (commands: status; see --help)\n";
      return kExitUsage;
    }
  }
  auto config = LoadConfig();
  if (!config.ok()) {
    std::cerr << binary << ": " << config.status().message() << "\n";
    return kExitUsage;
  }
  if (status_command) return RunStatus(*config);
  if (absl::Status s = ValidateSiteConfig(type, *config); !s.ok()) {
    std::cerr << binary << ": configuration: " << s.message() << "\n";
    return kExitUsage;
  }

  // Signals go to one thread that asks the server to stop.
  const sigset_t signals = BlockTerminationSignals();

  SiteServer server(std::move(profile), *config);
  ServeResult r = ServeUntilSignal(server, signals, "site");
  if (!r.started.ok()) {
    return r.started.code() == absl::StatusCode::kInvalidArgument ||
                   r.started.code() == absl::StatusCode::kFailedPrecondition
               ? kExitUsage
               : kExitFailure;
  }
  if (!r.finished.ok()) {
    LogError("site.exit", {{"error", r.finished}});
    return kExitRefused;
  }
  return kExitOk;
}

}  // namespace strata::site
