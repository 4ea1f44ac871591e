#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "common/base/config.h"
#include "common/base/daemon.h"
#include "common/base/log.h"
#include "common/base/signals.h"
#include "common/base/usage.h"
#include "common/base/version.h"
#include "provider/provider_server.h"

ABSL_FLAG(std::string, config, "", "Provider configuration: a text-format ProviderConfig file");
ABSL_FLAG(std::string, database, "", "libpq connection string of the site's database (overrides)");
ABSL_FLAG(std::string, listen, "", "Listen address, host:port or unix:/path (overrides)");
ABSL_FLAG(std::string, tls_ca, "", "PEM file of the hierarchy root CA (overrides)");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate of this provider (overrides)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of this provider (overrides)");
ABSL_FLAG(std::string, address_file, "", "Write the bound address here (overrides)");
ABSL_FLAG(std::string, bootstrap_admin, "",
          "If the hierarchy has no administrator yet, make this certificate CN (OU=admin) a "
          "Full Administrator (overrides)");
ABSL_FLAG(std::string, site, "",
          "Address of the site server, for live replication link state (overrides)");
ABSL_FLAG(std::string, asset_key_file, "",
          "The hierarchy's key for runbook assets, 64 hex digits (overrides)");
ABSL_FLAG(bool, verbose, false, "Log debug events too");

namespace strata::provider {
namespace {

absl::StatusOr<v1::ProviderConfig> LoadConfig() {
  v1::ProviderConfig c;
  if (!absl::GetFlag(FLAGS_config).empty()) {
    if (absl::Status s = LoadTextProtoFile(absl::GetFlag(FLAGS_config), &c); !s.ok()) return s;
  }
  if (absl::Status s =
          OverrideStringFields(&c, {{"database", absl::GetFlag(FLAGS_database)},
                                    {"listen_address", absl::GetFlag(FLAGS_listen)},
                                    {"tls.ca_file", absl::GetFlag(FLAGS_tls_ca)},
                                    {"tls.cert_file", absl::GetFlag(FLAGS_tls_cert)},
                                    {"tls.key_file", absl::GetFlag(FLAGS_tls_key)},
                                    {"address_file", absl::GetFlag(FLAGS_address_file)},
                                    {"site_address", absl::GetFlag(FLAGS_site)},
                                    {"asset_key_file", absl::GetFlag(FLAGS_asset_key_file)},
                                    {"bootstrap_admin", absl::GetFlag(FLAGS_bootstrap_admin)}});
      !s.ok()) {
    return s;
  }
  return c;
}

}  // namespace

int ProviderMain(int argc, char** argv) {
  SetBinaryUsage(
      "provider/",
      "Strata provider: the admin API (gRPC, mutual TLS) of a CAS or primary site, used by\n"
      "stratactl. Authorizes every call by role, scope and collection; audits every change.\n\n"
      "Usage:\n  strata-provider --config FILE [flags]\n\nThe config file is a text-format "
      "strata.v1.ProviderConfig (see proto/strata/v1/config.proto and\n"
      "deploy/examples/provider.conf). Exit codes: 0 ok, 1 failure, 2 bad usage or "
      "configuration.");
  return RunDaemon<v1::ProviderConfig>(
      "strata-provider", "provider", argc, argv, [] { return absl::GetFlag(FLAGS_verbose); },
      LoadConfig, ValidateProviderConfig,
      [](const v1::ProviderConfig& c) -> std::unique_ptr<Daemon> {
        return std::make_unique<ProviderServer>(c);
      });
}

}  // namespace strata::provider

int main(int argc, char** argv) { return strata::provider::ProviderMain(argc, argv); }
