#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/config.h"
#include "common/base/daemon.h"
#include "common/base/log.h"
#include "common/base/signals.h"
#include "common/base/usage.h"
#include "common/setup/setup.h"
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
  if (absl::Status s =
          OverrideStringFields(&c, {{"name", absl::GetFlag(FLAGS_name)},
                                    {"site_address", absl::GetFlag(FLAGS_site)},
                                    {"listen_address", absl::GetFlag(FLAGS_listen)},
                                    {"public_address", absl::GetFlag(FLAGS_public_address)},
                                    {"spool_dir", absl::GetFlag(FLAGS_spool_dir)},
                                    {"tls.ca_file", absl::GetFlag(FLAGS_tls_ca)},
                                    {"tls.cert_file", absl::GetFlag(FLAGS_tls_cert)},
                                    {"tls.key_file", absl::GetFlag(FLAGS_tls_key)},
                                    {"address_file", absl::GetFlag(FLAGS_address_file)}});
      !s.ok()) {
    return s;
  }
  return c;
}

// `init` and `check` (common/setup/setup.h).
setup::RoleSetup<v1::MpConfig> MpSetup() {
  setup::RoleSetup<v1::MpConfig> role;
  role.group = "strata-mp";
  role.title =
      "strata-mp: management point configuration (text-format strata.v1.MpConfig,\n"
      "proto/strata/v1/config.proto). Check it with: strata-mp check --config FILE";
  role.defaults = [](v1::MpConfig& c) {
    if (c.listen_address().empty()) c.set_listen_address("0.0.0.0:7260");
    if (c.spool_dir().empty()) c.set_spool_dir("/var/lib/strata/mp/spool");
    setup::DefaultTls(c.mutable_tls(), "mp-" + c.name());
  };
  role.docs = {
      {"name", "<SITE>.<name>, the CN of its certificate (OU=mp), e.g. P01.mp1.", ""},
      {"site_address", "The site server (primary or secondary) it serves: host:port.", ""},
      {"listen_address", "Where agents reach it (gRPC): host:port, or unix:/path.", ""},
      {"public_address", "What agents are told to use (default: the bound address).",
       "\"mp1.p01.example.net:7260\""},
      {"nudge_listen_address",
       "The nudge channel every agent holds (default: the listen host, port 10123);\n"
       "open it in the firewall beside listen_address.",
       "\"0.0.0.0:10123\""},
      {"nudge_public_address", "What agents are told for the nudge channel.", ""},
      {"nudge_keepalive_seconds", "Agents ping the nudge channel this often.", "120"},
      {"nudge_fetches_per_second", "Policy fetches a second a whole fleet told at once makes.",
       "200"},
      {"spool_dir", "The durable spool of client data (every acknowledged report).", ""},
      {"address_file", "If set, the bound address is written here.", ""},
      {"max_report_bytes", "Largest agent request, bytes.", "8388608"},
      {"batch_max_reports", "Reports per batch to the site.", "500"},
      {"client_recheck_seconds",
       "Cached client authorizations are rechecked this often (revocation takes\n"
       "effect within it).",
       "300"},
      {"status_interval_seconds", "How often it tells its site how many clients it holds.", "60"},
      {"register_per_source_per_minute", "Registrations a minute from one address (-1: no limit).",
       "120"},
      {"register_per_minute", "Registrations a minute in all (-1: no limit).", "3000"},
      {"metrics",
       "Prometheus scrape endpoint (GET /metrics): a loopback address serves a scraper on\n"
       "this host; any other needs credentials_file (one line user:password).",
       "{ listen_address: \"127.0.0.1:9260\" }"},
      {"tls",
       "Its certificate (OU=mp, CN=name), key and the hierarchy root CA; crl_file: the\n"
       "root's revocation list (strata-pki crl), re-read when it changes.",
       ""},
  };
  role.check = [](const v1::MpConfig& c, setup::CheckReport& report) {
    setup::CheckCertificate(report, c.tls(), "mp", c.name());
    setup::CheckServer(report, "site server", c.site_address(), c.tls());
    setup::CheckFolder(report, "spool", c.spool_dir());
    setup::CheckMetrics(report, c.metrics());
  };
  return role;
}

}  // namespace

int MpMain(int argc, char** argv) {
  SetBinaryUsage(
      "mp/",
      "Strata management point: the contact of agents (registration, service location, "
      "policy,\nintake of inventory and state, push notifications).\n\nUsage:\n  strata-mp "
      "--config FILE [flags]\n  strata-mp init FILE [flags]     write a commented configuration "
      "from the flags\n"
      "  strata-mp check --config FILE   check a configuration, its certificate and its site "
      "server\n                                  without starting\n\nThe config file is a "
      "text-format strata.v1.MpConfig (see "
      "proto/strata/v1/config.proto and\ndeploy/examples/mp.conf). Exit codes: 0 ok, 1 failure, "
      "2 bad usage or configuration.");
  return RunDaemon<v1::MpConfig>(
      "strata-mp", "mp", argc, argv, [] { return absl::GetFlag(FLAGS_verbose); }, LoadConfig,
      ValidateMpConfig,
      [](const v1::MpConfig& c) -> std::unique_ptr<Daemon> {
        return std::make_unique<MpServer>(c);
      },
      [](const std::vector<char*>& args) {
        return setup::RunSetupCommand<v1::MpConfig>("strata-mp", args, LoadConfig, ValidateMpConfig,
                                                    MpSetup());
      });
}

}  // namespace strata::mp

int main(int argc, char** argv) { return strata::mp::MpMain(argc, argv); }
