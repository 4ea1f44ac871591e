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
#include "common/setup/setup.h"
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

// `init` and `check` (common/setup/setup.h).
setup::RoleSetup<v1::ProviderConfig> ProviderSetup() {
  setup::RoleSetup<v1::ProviderConfig> role;
  role.group = "strata-provider";
  role.title =
      "strata-provider: provider configuration (text-format strata.v1.ProviderConfig,\n"
      "proto/strata/v1/config.proto). Check it with: strata-provider check --config FILE";
  role.defaults = [](v1::ProviderConfig& c) {
    if (c.listen_address().empty()) c.set_listen_address("0.0.0.0:7443");
    // Its certificate and key come from --tls_cert/--tls_key: nothing here names the site.
    setup::DefaultTls(c.mutable_tls(), "");
  };
  role.docs = {
      {"database",
       "The site server's database (a CAS or primary site; never a secondary): libpq\n"
       "connection string.",
       ""},
      {"listen_address",
       "Where stratactl and other admin tools reach it: host:port, or unix:/path.", ""},
      {"site_address", "The site server, for live replication link state (stratactl get links).",
       "\"p01.example.net:7250\""},
      {"address_file", "If set, the bound address is written here.", ""},
      {"metrics",
       "Prometheus scrape endpoint (GET /metrics): a loopback address serves a scraper on\n"
       "this host; any other needs credentials_file (one line user:password).",
       "{ listen_address: \"127.0.0.1:9280\" }"},
      {"tls",
       "Its certificate (OU=provider, CN=the site code), key and the hierarchy root CA;\n"
       "crl_file: the root's revocation list (strata-pki crl), re-read when it changes.",
       ""},
      {"bootstrap_admin",
       "If the hierarchy has no administrator yet, this certificate CN (OU=admin) becomes\n"
       "a Full Administrator at start.",
       "\"alice\""},
      {"asset_key_file", "The hierarchy's key for runbook assets, the same as the site servers'.",
       "\"/etc/strata/pki/assets.key\""},
  };
  role.check = [](const v1::ProviderConfig& c, setup::CheckReport& report) {
    setup::CheckCertificate(report, c.tls(), "provider", "");
    setup::CheckDatabase(report, c.database(), /*need_logical=*/false, /*need_schema=*/true);
    if (!c.site_address().empty()) {
      setup::CheckServer(report, "site server", c.site_address(), c.tls());
    }
    if (!c.asset_key_file().empty()) {
      setup::CheckReadable(report, "asset key", c.asset_key_file());
    }
    setup::CheckMetrics(report, c.metrics());
  };
  return role;
}

}  // namespace

int ProviderMain(int argc, char** argv) {
  SetBinaryUsage(
      "provider/",
      "Strata provider: the admin API (gRPC, mutual TLS) of a CAS or primary site, used by\n"
      "stratactl. Authorizes every call by role, scope and collection; audits every change.\n\n"
      "Usage:\n  strata-provider --config FILE [flags]\n"
      "  strata-provider init FILE [flags]     write a commented configuration from the flags\n"
      "  strata-provider check --config FILE   check a configuration, its certificate, database\n"
      "                                        and site server without starting\n\nThe config file "
      "is a text-format "
      "strata.v1.ProviderConfig (see proto/strata/v1/config.proto and\n"
      "deploy/examples/provider.conf). Exit codes: 0 ok, 1 failure, 2 bad usage or "
      "configuration.");
  return RunDaemon<v1::ProviderConfig>(
      "strata-provider", "provider", argc, argv, [] { return absl::GetFlag(FLAGS_verbose); },
      LoadConfig, ValidateProviderConfig,
      [](const v1::ProviderConfig& c) -> std::unique_ptr<Daemon> {
        return std::make_unique<ProviderServer>(c);
      },
      [](const std::vector<char*>& args) {
        return setup::RunSetupCommand<v1::ProviderConfig>("strata-provider", args, LoadConfig,
                                                          ValidateProviderConfig, ProviderSetup());
      });
}

}  // namespace strata::provider

int main(int argc, char** argv) { return strata::provider::ProviderMain(argc, argv); }
