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

}  // namespace

int MpMain(int argc, char** argv) {
  SetBinaryUsage(
      "mp/",
      "Strata management point: the contact of agents (registration, service location, "
      "policy,\nintake of inventory and state, push notifications).\n\nUsage:\n  strata-mp "
      "--config FILE [flags]\n\nThe config file is a text-format strata.v1.MpConfig (see "
      "proto/strata/v1/config.proto and\ndeploy/examples/mp.conf). Exit codes: 0 ok, 1 failure, "
      "2 bad usage or configuration.");
  return RunDaemon<v1::MpConfig>(
      "strata-mp", "mp", argc, argv, [] { return absl::GetFlag(FLAGS_verbose); }, LoadConfig,
      ValidateMpConfig,
      [](const v1::MpConfig& c) -> std::unique_ptr<Daemon> {
        return std::make_unique<MpServer>(c);
      });
}

}  // namespace strata::mp

int main(int argc, char** argv) { return strata::mp::MpMain(argc, argv); }
