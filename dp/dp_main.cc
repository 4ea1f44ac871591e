#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "common/base/config.h"
#include "common/base/daemon.h"
#include "common/base/usage.h"
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

}  // namespace
}  // namespace strata::dp

int main(int argc, char** argv) {
  using namespace strata;
  SetBinaryUsage(
      "dp/",
      "Strata distribution point: a content library served to clients by nginx (HTTPS range\n"
      "GET, client certificates of the hierarchy), filled from its site server or, for a\n"
      "pull-DP, from a source DP, and reporting its content state to its site.\n\nUsage:\n"
      "  strata-dp --config FILE [flags]\n\nThe config file is a text-format "
      "strata.v1.DpConfig (see proto/strata/v1/config.proto and\ndeploy/examples/dp.conf). "
      "Needs nginx (/usr/sbin/nginx). Exit codes: 0 ok, 1 failure (a refusal by\nthe site "
      "included: a DP at a CAS, a certificate not this DP's), 2 bad usage or configuration.");
  return RunDaemon<v1::DpConfig>(
      "strata-dp", "dp", argc, argv, [] { return absl::GetFlag(FLAGS_verbose); }, dp::LoadConfig,
      dp::ValidateDpConfig,
      [](const v1::DpConfig& c) -> std::unique_ptr<Daemon> {
        return std::make_unique<dp::DpServer>(c);
      });
}
