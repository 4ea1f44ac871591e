#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "agent/agent.h"
#include "agent/collectors.h"
#include "agent/content_cache.h"
#include "agent/download.h"
#include "common/base/config.h"
#include "common/base/log.h"
#include "common/base/signals.h"
#include "common/base/status.h"
#include "common/base/usage.h"
#include "google/protobuf/text_format.h"

ABSL_FLAG(std::string, config, "", "Agent configuration: a text-format AgentConfig file");
ABSL_FLAG(std::string, mp, "", "Management point address(es), comma-separated (overrides)");
ABSL_FLAG(std::string, ca, "", "PEM file of the hierarchy root CA (overrides)");
ABSL_FLAG(std::string, state_dir, "", "State directory (overrides)");
ABSL_FLAG(std::string, token, "", "Enrollment token (overrides)");
ABSL_FLAG(std::string, token_file, "", "File holding the enrollment token (overrides)");
ABSL_FLAG(std::string, dpkg_dir, "", "dpkg database directory (default /var/lib/dpkg)");
ABSL_FLAG(std::string, hardware_id, "", "Machine identity (default /etc/machine-id)");
ABSL_FLAG(std::string, hostname, "", "Host name to report (default uname)");
ABSL_FLAG(bool, once, false,
          "Run one cycle (register, policy, inventory, heartbeat, send) and exit");
ABSL_FLAG(int32_t, fallback_poll_seconds, 0,
          "While no nudge channel is held, poll policy at least this often (default 300)");
ABSL_FLAG(bool, verbose, false, "Log debug events too");
ABSL_FLAG(int64_t, content_version, 0, "download: the package version (default: the newest)");
ABSL_FLAG(std::string, dest, "", "download: copy the files into this folder");
ABSL_FLAG(int64_t, download_max_bytes_per_second, 0,
          "Downloads from distribution points: bytes a second at most (overrides)");

namespace strata::agent {
namespace {

absl::StatusOr<v1::AgentConfig> LoadConfig() {
  v1::AgentConfig c;
  if (!absl::GetFlag(FLAGS_config).empty()) {
    if (absl::Status s = LoadTextProtoFile(absl::GetFlag(FLAGS_config), &c); !s.ok()) return s;
  }
  if (!absl::GetFlag(FLAGS_mp).empty()) {
    c.clear_management_points();
    std::vector<std::string> mps = absl::StrSplit(absl::GetFlag(FLAGS_mp), ',', absl::SkipEmpty());
    for (const auto& mp : mps) {
      c.add_management_points(mp);
    }
  }
  if (absl::Status s =
          OverrideStringFields(&c, {{"ca_file", absl::GetFlag(FLAGS_ca)},
                                    {"state_dir", absl::GetFlag(FLAGS_state_dir)},
                                    {"enrollment_token", absl::GetFlag(FLAGS_token)},
                                    {"enrollment_token_file", absl::GetFlag(FLAGS_token_file)},
                                    {"dpkg_dir", absl::GetFlag(FLAGS_dpkg_dir)},
                                    {"hardware_id", absl::GetFlag(FLAGS_hardware_id)},
                                    {"hostname", absl::GetFlag(FLAGS_hostname)}});
      !s.ok()) {
    return s;
  }
  if (absl::GetFlag(FLAGS_download_max_bytes_per_second) > 0) {
    c.set_download_max_bytes_per_second(absl::GetFlag(FLAGS_download_max_bytes_per_second));
  }
  if (absl::GetFlag(FLAGS_fallback_poll_seconds) > 0) {
    c.set_fallback_poll_seconds(absl::GetFlag(FLAGS_fallback_poll_seconds));
  }
  return c;
}

int PrintInventory() {
  std::vector<std::string> errors;
  CollectorContext ctx;
  if (!absl::GetFlag(FLAGS_dpkg_dir).empty()) ctx.dpkg_dir = absl::GetFlag(FLAGS_dpkg_dir);
  v1::InventoryReport inv = CollectInventory(ctx, &errors);
  std::string text;
  google::protobuf::TextFormat::PrintToString(inv, &text);
  std::cout << text;
  for (const auto& e : errors) std::cerr << "collector " << e << "\n";
  return 0;
}

}  // namespace

// strata-agent download PACKAGE: where from (the MP), then the DPs.
absl::Status DownloadCommand(Agent& agent, const v1::AgentConfig& config,
                             const std::string& package) {
  ASSIGN_OR_RETURN(v1::ContentLocation where,
                   agent.GetContent(package, absl::GetFlag(FLAGS_content_version)));
  ASSIGN_OR_RETURN(auto cache,
                   ContentCache::Open(config.state_dir() + "/cache", config.cache_max_bytes()));
  DownloadOptions o;
  o.tls.set_ca_file(config.ca_file());
  o.tls.set_cert_file(config.state_dir() + "/client.pem");
  o.tls.set_key_file(config.state_dir() + "/client.key");
  o.max_bytes_per_second = config.download_max_bytes_per_second();
  o.dest = absl::GetFlag(FLAGS_dest);
  ASSIGN_OR_RETURN(DownloadResult r, Download(*cache, where, o));
  std::cout << "package \"" << where.manifest().package() << "\" version "
            << where.manifest().version() << ": " << where.manifest().files_size() << " files, "
            << r.bytes_total << " bytes, " << r.bytes_downloaded << " downloaded"
            << (r.dps_used.empty() ? " (all in the cache)"
                                   : " from " + absl::StrJoin(r.dps_used, ", "))
            << (o.dest.empty() ? "" : "; copied to " + o.dest) << "\n";
  return absl::OkStatus();
}

int AgentMain(int argc, char** argv) {
  SetBinaryUsage(
      "agent/",
      "Strata agent: registers this machine with its management point and reports its\n"
      "inventory, heartbeat and state. It holds a light nudge channel to its MP, which tells it\n"
      "when to check in (policy changed, send inventory); without it, it polls.\n\nUsage:\n  "
      "strata-agent --config FILE [flags]      "
      "run as a service\n  strata-agent --config FILE --once        one cycle, then exit\n"
      "  strata-agent inventory                   print this machine's inventory and exit\n"
      "  strata-agent --config FILE download PACKAGE [--content_version N] [--dest DIR]\n"
      "                                           fetch a package from the best distribution\n"
      "                                           point into the cache (and DIR)\n\n"
      "The config file is a text-format strata.v1.AgentConfig (see deploy/examples/agent.conf).\n"
      "Collectors: os, processor, system, disk, network, dpkg, rpm.\n"
      "Exit codes: 0 ok, 1 failure (e.g. MP unreachable with --once), 2 bad usage, 3 refused.");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_verbose)) SetLogLevel(LogLevel::kDebug);
  if (rest.size() == 2 && std::string(rest[1]) == "inventory") return PrintInventory();
  const bool download = rest.size() == 3 && std::string(rest[1]) == "download";
  if (rest.size() > 1 && !download) {
    std::cerr << "strata-agent: unknown command \"" << rest[1] << "\" (see --help)\n";
    return 2;
  }
  auto config = LoadConfig();
  if (!config.ok()) {
    std::cerr << "strata-agent: " << config.status().message() << "\n";
    return 2;
  }
  if (absl::Status s = ValidateAgentConfig(*config); !s.ok()) {
    std::cerr << "strata-agent: configuration: " << s.message() << "\n";
    return 2;
  }
  SetLogComponent("agent");
  Agent agent(*config);
  auto exit_code = [](const absl::Status& s) {
    if (s.ok()) return 0;
    std::cerr << "strata-agent: " << s.message() << "\n";
    auto c = s.code();
    return c == absl::StatusCode::kPermissionDenied || c == absl::StatusCode::kUnauthenticated ? 3
                                                                                               : 1;
  };
  if (download) return exit_code(DownloadCommand(agent, *config, rest[2]));
  if (absl::GetFlag(FLAGS_once)) return exit_code(agent.RunOnce());
  const sigset_t signals = BlockTerminationSignals();
  OnTerminationSignal(signals, [&agent](int) { agent.Stop(); });
  return exit_code(agent.Run());
}

}  // namespace strata::agent

int main(int argc, char** argv) { return strata::agent::AgentMain(argc, argv); }
