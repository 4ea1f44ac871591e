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
#include "common/setup/setup.h"
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
ABSL_FLAG(std::string, content_library, "",
          "Folder of the site's content library (overrides the config)");
ABSL_FLAG(std::string, asset_key_file, "",
          "The hierarchy's key for runbook assets (overrides the config)");
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
                    {"address_file", absl::GetFlag(FLAGS_address_file)},
                    {"content_library", absl::GetFlag(FLAGS_content_library)},
                    {"asset_key_file", absl::GetFlag(FLAGS_asset_key_file)}});
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

// `init` and `check` (common/setup/setup.h).
setup::RoleSetup<v1::SiteServerConfig> SiteSetup(v1::SiteType type) {
  const bool cas = type == v1::SITE_TYPE_CAS;
  const bool primary = type == v1::SITE_TYPE_PRIMARY;
  setup::RoleSetup<v1::SiteServerConfig> role;
  role.group = "strata-site";
  role.title = absl::StrCat("strata-", SiteTypeName(type), ": ", SiteTypeLongName(type),
                            " server configuration (text-format strata.v1.SiteServerConfig,\n"
                            "proto/strata/v1/config.proto). Check it with: strata-",
                            SiteTypeName(type), " check --config FILE");
  role.defaults = [](v1::SiteServerConfig& c) {
    if (c.listen_address().empty()) c.set_listen_address("0.0.0.0:7250");
    setup::DefaultTls(c.mutable_tls(), absl::StrCat("site-", c.site_code()));
    if (c.content_library().empty()) c.set_content_library("/var/lib/strata/site/content");
  };
  role.docs = {
      {"site_code", "Three characters, A-Z 0-9, unique in the hierarchy.", ""},
      {"database",
       "libpq connection string of this site's own database: PostgreSQL 15 with\n"
       "wal_level = logical (the site reads its changes from the WAL).",
       ""},
      {"listen_address",
       "Where child sites, management points, distribution points and providers\n"
       "reach this site: host:port, or unix:/path.",
       ""},
      {"parent_address",
       cas       ? "A central administration site has no parent."
       : primary ? "The CAS (host:port); leave it out for a standalone primary."
                 : "The primary site this secondary site belongs to (host:port).",
       ""},
      {"address_file", "If set, the bound address is written here (scripts wait for it).", ""},
      {"tls",
       "This site server's certificate (OU=site, CN=the site code), its key and the\n"
       "hierarchy root CA. Every link is mutual TLS. crl_file: the root's revocation\n"
       "list (strata-pki crl), re-read when it changes; renewed files are picked up\n"
       "within refresh_seconds (default 10) and the link to the parent reconnects.",
       ""},
      {"issuing_ca",
       "Signs the certificates of clients registering through this site's management\n"
       "points; without it registration is refused.",
       cas ? ""
           : "{ cert_file: \"/etc/strata/pki/issuing-SITE.pem\" key_file: "
             "\"/etc/strata/pki/issuing-SITE.key\" }"},
      {"content_library",
       "The content library: packages held at this site (blobs named by SHA-256).", ""},
      {"content_from_parent",
       "Content from the parent site: bytes a second at most, and the local hours\n"
       "when it may move (an admin's content link, stratactl set content-link, wins).",
       cas ? "" : "{ max_bytes_per_second: 10000000 hours: \"20-6\" }"},
      {"content_validation_seconds", "Seconds between re-hashes of the whole library.", "86400"},
      {"asset_key_file",
       "The hierarchy's key for runbook assets (64 hex digits), the same at every site\n"
       "and provider.",
       "\"/etc/strata/pki/assets.key\""},
      {"client_maintenance_seconds",
       "Seconds between marking silent clients inactive and deleting long-silent ones.",
       cas ? "" : "300"},
      {"collection_full_eval_seconds",
       "Seconds between full evaluations of every collection (changes are evaluated\n"
       "at once).",
       primary ? "86400" : ""},
      {"metrics",
       "Prometheus scrape endpoint (GET /metrics): a loopback address serves a scraper on\n"
       "this host; any other needs credentials_file (one line user:password).",
       "{ listen_address: \"127.0.0.1:9250\" }"},
      {"replication",
       "Replication tuning: how long a link's changes are kept for a peer that is away\n"
       "(after that it is re-initialized from a snapshot), batches, timeouts.",
       "{ retention_seconds: 604800 }"},
  };
  role.check = [type](const v1::SiteServerConfig& c, setup::CheckReport& report) {
    setup::CheckCertificate(report, c.tls(), "site", c.site_code());
    if (!c.issuing_ca().cert_file().empty()) {
      setup::CheckIssuingCa(report, c.issuing_ca(), c.tls().ca_file());
    } else if (type != v1::SITE_TYPE_CAS) {
      report.Warn("issuing CA", "none: clients cannot register through this site's MPs");
    }
    setup::CheckDatabase(report, c.database(), /*need_logical=*/true, /*need_schema=*/false);
    if (!c.parent_address().empty()) {
      setup::CheckServer(report, "parent site", c.parent_address(), c.tls());
    }
    if (!c.content_library().empty()) {
      setup::CheckFolder(report, "content library", c.content_library());
    }
    if (!c.asset_key_file().empty()) {
      setup::CheckReadable(report, "asset key", c.asset_key_file());
    }
    setup::CheckMetrics(report, c.metrics());
  };
  return role;
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
          " status --config FILE [flags]   print the health of this site's replication links\n  ",
          binary,
          " init FILE [flags]              write a commented configuration from the flags\n  ",
          binary,
          " check --config FILE            check a configuration, its certificate, database and\n",
          std::string(binary.size() + 34, ' '),
          "parent without starting\n\n"
          "The config file is a text-format strata.v1.SiteServerConfig (see "
          "proto/strata/v1/config.proto\nand deploy/examples/). Exit codes: 0 ok, 1 failure, 2 bad "
          "usage or configuration,\n3 refused by the parent site, 4 site server unreachable."));
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_verbose)) SetLogLevel(LogLevel::kDebug);
  if (std::optional<int> code = setup::RunSetupCommand<v1::SiteServerConfig>(
          binary, {positional.begin() + 1, positional.end()}, LoadConfig,
          [type](const v1::SiteServerConfig& c) { return ValidateSiteConfig(type, c); },
          SiteSetup(type))) {
    return *code;
  }
  bool status_command = false;
  for (size_t i = 1; i < positional.size(); ++i) {
    if (std::string_view(positional[i]) == "status") {
      status_command = true;
    } else {
      std::cerr << binary << ": unknown command \"" << positional[i]
                << "\" (commands: status, init, check; see --help)\n";
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
