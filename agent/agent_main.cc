#include <unistd.h>

#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "agent/agent.h"
#include "agent/collectors.h"
#include "agent/content_cache.h"
#include "agent/download.h"
#include "agent/install_engine.h"
#include "common/base/config.h"
#include "common/base/files.h"
#include "common/base/log.h"
#include "common/base/signals.h"
#include "common/base/status.h"
#include "common/base/usage.h"
#include "common/deploy/application.h"
#include "common/setup/setup.h"
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
ABSL_FLAG(int32_t, wait_seconds, 600, "install: how long to follow the install");
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

// The deployment states as the install engine names them ("installed").
std::string StateWord(v1::DeploymentStateKind k) {
  if (k == v1::DEPLOYMENT_STATE_UNSPECIFIED) return "-";
  return deploy::StateName(k);
}

absl::StatusOr<v1::PolicyResponse> HeldPolicy(const v1::AgentConfig& config) {
  v1::PolicyResponse policy;
  auto bytes = ReadFile(config.state_dir() + "/policy.pb");
  if (!bytes.ok() || !policy.ParseFromString(*bytes))
    return absl::FailedPreconditionError(
        absl::StrCat("no policy in ", config.state_dir(), ": has the agent run yet?"));
  return policy;
}

// strata-agent list-available: the deployments this machine may install on
// request, from the policy the agent service holds.
int ListAvailable(const v1::AgentConfig& config) {
  auto policy = HeldPolicy(config);
  if (!policy.ok()) {
    std::cerr << "strata-agent: " << policy.status().message() << "\n";
    return 1;
  }
  std::cout << absl::StrFormat("%-40s %-24s %-10s %s\n", "DEPLOYMENT", "APPLICATION", "VERSION",
                               "STATE");
  for (const auto& d : policy->deployments()) {
    if (d.purpose() != "available") continue;
    v1::InstallRecord rec = InstallEngine::ReadRecord(config.state_dir(), d.name());
    std::cout << absl::StrFormat("%-40s %-24s %-10s %s\n", d.name(), d.application().name(),
                                 d.application().software_version(), StateWord(rec.state()));
  }
  return 0;
}

// strata-agent install NAME: asks the agent service to install an available
// deployment, then follows it until it settles (or --wait_seconds).
int InstallCommand(const v1::AgentConfig& config, const std::string& name) {
  auto policy = HeldPolicy(config);
  if (!policy.ok()) {
    std::cerr << "strata-agent: " << policy.status().message() << "\n";
    return 1;
  }
  bool found = false;
  for (const auto& d : policy->deployments())
    found = found || (d.name() == name && d.purpose() == "available");
  if (!found) {
    std::cerr << "strata-agent: no available deployment \"" << name
              << "\" reaches this machine (strata-agent list-available)\n";
    return 1;
  }
  if (absl::Status s = InstallEngine::RequestInstall(config.state_dir(), name); !s.ok()) {
    std::cerr << "strata-agent: " << s.message() << "\n";
    return 1;
  }
  std::cout << "requested: " << name << "\n" << std::flush;
  const absl::Time until = absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_wait_seconds));
  // Until the service takes the request, the journal is an earlier result.
  while (absl::Now() < until && !InstallEngine::RequestTaken(config.state_dir(), name))
    absl::SleepFor(absl::Milliseconds(200));
  v1::DeploymentStateKind shown = v1::DEPLOYMENT_STATE_UNSPECIFIED;
  while (absl::Now() < until) {
    v1::InstallRecord rec = InstallEngine::ReadRecord(config.state_dir(), name);
    if (rec.requested() && rec.state() != shown && rec.state() != v1::DEPLOYMENT_STATE_AVAILABLE) {
      shown = rec.state();
      std::cout << StateWord(shown) << (rec.detail().empty() ? "" : ": " + rec.detail()) << "\n"
                << std::flush;
    }
    if (rec.requested() && rec.settled()) {
      return shown == v1::DEPLOYMENT_STATE_INSTALLED || shown == v1::DEPLOYMENT_STATE_REBOOT_PENDING
                 ? 0
                 : 1;
    }
    absl::SleepFor(absl::Milliseconds(250));
  }
  std::cerr << "strata-agent: not settled in " << absl::GetFlag(FLAGS_wait_seconds)
            << " s (is the agent service running? its log says more)\n";
  return 1;
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

// `init` and `check` (common/setup/setup.h).
setup::RoleSetup<v1::AgentConfig> AgentSetup() {
  setup::RoleSetup<v1::AgentConfig> role;
  role.title =
      "strata-agent: agent configuration (text-format strata.v1.AgentConfig,\n"
      "proto/strata/v1/config.proto). Check it with: strata-agent check --config FILE";
  role.defaults = [](v1::AgentConfig& c) {
    if (c.ca_file().empty()) c.set_ca_file("/etc/strata/pki/ca.pem");
    if (c.state_dir().empty()) c.set_state_dir("/var/lib/strata/agent");
  };
  role.docs = {
      {"management_points",
       "The management points to register with (host:port); service location adds\n"
       "the others of its site.",
       ""},
      {"ca_file", "The hierarchy root CA, trusted for the management points.", ""},
      {"state_dir", "Its identity, certificate, policy, inventory, queue and content cache.", ""},
      {"enrollment_token_file",
       "A file holding an enrollment token (stratactl create enrollment-token); without\n"
       "one the client waits for an administrator's approval.",
       "\"/etc/strata/enrollment-token\""},
      {"enrollment_token", "The token itself (prefer the file: this one is readable here).", ""},
      {"fallback_poll_seconds", "While no nudge channel is held, policy is polled this often.",
       "300"},
      {"cache_max_bytes", "The content cache's size; least recently used versions go first.",
       "5368709120"},
      {"download_max_bytes_per_second",
       "Downloads from distribution points: bytes a second at most.", "0"},
      {"max_queue_reports", "Reports kept while the MP is away; the oldest go beyond.", "10000"},
      {"dpkg_dir", "The dpkg database.", "\"/var/lib/dpkg\""},
      {"rpm_command", "rpm, for RPM inventory (\"none\" disables it).", ""},
      {"hardware_id", "The machine's identity (default: /etc/machine-id).", ""},
      {"hostname", "The host name reported (default: uname's).", ""},
  };
  role.check = [](const v1::AgentConfig& c, setup::CheckReport& report) {
    setup::CheckReadable(report, "root CA", c.ca_file());
    setup::CheckFolder(report, "state folder", c.state_dir());
    if (!c.enrollment_token_file().empty()) {
      setup::CheckReadable(report, "enrollment token", c.enrollment_token_file());
    }
    // A registered agent shows its certificate; a new one registers without.
    v1::TlsConfig tls;
    tls.set_ca_file(c.ca_file());
    const std::string cert = c.state_dir() + "/client.pem";
    if (::access(cert.c_str(), R_OK) == 0) {
      tls.set_cert_file(cert);
      tls.set_key_file(c.state_dir() + "/client.key");
    }
    for (const std::string& mp : c.management_points()) {
      setup::CheckServer(report, "management point", mp, tls);
    }
  };
  return role;
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
      "  strata-agent init FILE [flags]           write a commented configuration from the flags\n"
      "  strata-agent check --config FILE         check a configuration and its MPs without "
      "starting\n"
      "  strata-agent --config FILE download PACKAGE [--content_version N] [--dest DIR]\n"
      "                                           fetch a package from the best distribution\n"
      "                                           point into the cache (and DIR)\n"
      "  strata-agent --config FILE list-available the deployments installable on request\n"
      "  strata-agent --config FILE install NAME   ask the agent service to install one, and\n"
      "                                           follow it (--wait_seconds)\n\n"
      "The config file is a text-format strata.v1.AgentConfig (see deploy/examples/agent.conf).\n"
      "Collectors: os, processor, system, disk, network, dpkg, rpm.\n"
      "Exit codes: 0 ok, 1 failure (e.g. MP unreachable with --once), 2 bad usage, 3 refused.");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_verbose)) SetLogLevel(LogLevel::kDebug);
  if (rest.size() == 2 && std::string(rest[1]) == "inventory") return PrintInventory();
  if (std::optional<int> code =
          setup::RunSetupCommand<v1::AgentConfig>("strata-agent", {rest.begin() + 1, rest.end()},
                                                  LoadConfig, ValidateAgentConfig, AgentSetup())) {
    return *code;
  }
  const bool download = rest.size() == 3 && std::string(rest[1]) == "download";
  const bool install = rest.size() == 3 && std::string(rest[1]) == "install";
  const bool list_available = rest.size() == 2 && std::string(rest[1]) == "list-available";
  if (rest.size() > 1 && !download && !install && !list_available) {
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
  if (list_available) return ListAvailable(*config);
  if (install) return InstallCommand(*config, rest[2]);
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
