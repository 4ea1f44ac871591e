#include <unistd.h>

#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "common/base/config.h"
#include "common/base/daemon.h"
#include "common/base/usage.h"
#include "common/setup/setup.h"
#include "dp/dp_server.h"

ABSL_FLAG(std::string, config, "", "Distribution point configuration: a text-format DpConfig file");
ABSL_FLAG(std::string, name, "", "DP name = its certificate's CN, e.g. P01.dp1 (overrides)");
ABSL_FLAG(std::string, site, "", "Address of its site server (overrides)");
ABSL_FLAG(std::string, listen, "",
          "Where nginx serves content: host:port (0 = any) or unix:/path (overrides)");
ABSL_FLAG(std::string, public_address, "", "Address clients are told to use (overrides)");
ABSL_FLAG(std::string, content_library, "", "The content library folder (overrides)");
ABSL_FLAG(std::string, state_dir, "", "Folder for nginx's configuration and files (overrides)");
ABSL_FLAG(std::string, pull_from, "",
          "Pull-DP: take content from this source DP's address instead (overrides)");
ABSL_FLAG(std::string, tls_ca, "", "PEM file of the hierarchy root CA (overrides)");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate of this DP, OU=dp (overrides)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of this DP (overrides)");
ABSL_FLAG(std::string, address_file, "", "Write the bound address here (overrides)");
ABSL_FLAG(bool, verbose, false, "Log debug events too");

namespace strata::dp {
namespace {

absl::StatusOr<v1::DpConfig> LoadConfig() {
  v1::DpConfig c;
  if (!absl::GetFlag(FLAGS_config).empty()) {
    if (absl::Status s = LoadTextProtoFile(absl::GetFlag(FLAGS_config), &c); !s.ok()) return s;
  }
  if (absl::Status s =
          OverrideStringFields(&c, {{"name", absl::GetFlag(FLAGS_name)},
                                    {"site_address", absl::GetFlag(FLAGS_site)},
                                    {"listen_address", absl::GetFlag(FLAGS_listen)},
                                    {"public_address", absl::GetFlag(FLAGS_public_address)},
                                    {"content_library", absl::GetFlag(FLAGS_content_library)},
                                    {"state_dir", absl::GetFlag(FLAGS_state_dir)},
                                    {"pull_from", absl::GetFlag(FLAGS_pull_from)},
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
setup::RoleSetup<v1::DpConfig> DpSetup() {
  setup::RoleSetup<v1::DpConfig> role;
  role.group = "strata-dp";
  role.title =
      "strata-dp: distribution point configuration (text-format strata.v1.DpConfig,\n"
      "proto/strata/v1/config.proto). Check it with: strata-dp check --config FILE";
  role.defaults = [](v1::DpConfig& c) {
    if (c.listen_address().empty()) c.set_listen_address("0.0.0.0:8443");
    if (c.content_library().empty()) c.set_content_library("/var/lib/strata/dp/content");
    if (c.state_dir().empty()) c.set_state_dir("/var/lib/strata/dp/nginx");
    setup::DefaultTls(c.mutable_tls(), "dp-" + c.name());
  };
  role.docs = {
      {"name", "<SITE>.<name>, the CN of its certificate (OU=dp), e.g. P01.dp1.", ""},
      {"site_address", "Its site server (a primary or secondary): host:port.", ""},
      {"listen_address",
       "Where nginx serves content to clients over HTTPS: host:port, or unix:/path.", ""},
      {"public_address", "What clients are told (default: the bound address).",
       "\"dp1.p01.example.net:8443\""},
      {"content_library", "The content library folder.", ""},
      {"state_dir", "nginx's configuration, pid and temporary files.", ""},
      {"nginx", "The nginx binary.", "\"/usr/sbin/nginx\""},
      {"nginx_workers", "nginx worker processes (default: one per core).", ""},
      {"pull_from", "A pull-DP takes content from this source DP instead of its site server.",
       "\"dp1.p01.example.net:8443\""},
      {"content_transfer",
       "Content from the site server or source DP: bytes a second at most and local\n"
       "hours (an admin's content link, stratactl set content-link, wins).",
       "{ max_bytes_per_second: 10000000 hours: \"20-6\" }"},
      {"validation_seconds", "Seconds between re-hashes of the whole library.", "86400"},
      {"address_file", "If set, the bound address is written here.", ""},
      {"metrics",
       "Prometheus scrape endpoint (GET /metrics): a loopback address serves a scraper on\n"
       "this host; any other needs credentials_file (one line user:password).",
       "{ listen_address: \"127.0.0.1:9270\" }"},
      {"tls",
       "Its certificate (OU=dp, CN=name) and key, towards the site and in nginx towards\n"
       "clients; ca_file is the hierarchy root CA, which signs every client allowed to\n"
       "download. crl_file: the root's revocation list (strata-pki crl), refused by nginx.",
       ""},
  };
  role.check = [](const v1::DpConfig& c, setup::CheckReport& report) {
    setup::CheckCertificate(report, c.tls(), "dp", c.name());
    setup::CheckServer(report, "site server", c.site_address(), c.tls());
    setup::CheckFolder(report, "content library", c.content_library());
    setup::CheckFolder(report, "state folder", c.state_dir());
    const std::string nginx = c.nginx().empty() ? "/usr/sbin/nginx" : c.nginx();
    if (::access(nginx.c_str(), X_OK) == 0) {
      report.Ok("nginx " + nginx, "executable");
    } else {
      report.Fail("nginx " + nginx, "missing or not executable (apt-get install nginx)");
    }
    setup::CheckMetrics(report, c.metrics());
  };
  return role;
}

}  // namespace
}  // namespace strata::dp

int main(int argc, char** argv) {
  using namespace strata;
  SetBinaryUsage(
      "dp/",
      "Strata distribution point: a content library served to clients by nginx (HTTPS range\n"
      "GET, client certificates of the hierarchy), filled from its site server or, for a\n"
      "pull-DP, from a source DP, and reporting its content state to its site.\n\nUsage:\n"
      "  strata-dp --config FILE [flags]\n"
      "  strata-dp init FILE [flags]     write a commented configuration from the flags\n"
      "  strata-dp check --config FILE   check a configuration, its certificate, site server,\n"
      "                                  folders and nginx without starting\n\nThe config file is "
      "a text-format "
      "strata.v1.DpConfig (see proto/strata/v1/config.proto and\ndeploy/examples/dp.conf). "
      "Needs nginx (/usr/sbin/nginx). Exit codes: 0 ok, 1 failure (a refusal by\nthe site "
      "included: a DP at a CAS, a certificate not this DP's), 2 bad usage or configuration.");
  return RunDaemon<v1::DpConfig>(
      "strata-dp", "dp", argc, argv, [] { return absl::GetFlag(FLAGS_verbose); }, dp::LoadConfig,
      dp::ValidateDpConfig,
      [](const v1::DpConfig& c) -> std::unique_ptr<Daemon> {
        return std::make_unique<dp::DpServer>(c);
      },
      [](const std::vector<char*>& args) {
        return setup::RunSetupCommand<v1::DpConfig>("strata-dp", args, dp::LoadConfig,
                                                    dp::ValidateDpConfig, dp::DpSetup());
      });
}
