#include "agent/detection.h"

#include <sys/stat.h>

#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "agent/runner.h"
#include "common/base/files.h"
#include "common/base/status.h"
#include "common/content/hash.h"

namespace strata::agent {
namespace {

constexpr absl::Duration kScriptTimeout = absl::Seconds(60);

// Runs a short command as root; its stdout (trimmed) and exit code.
struct Ran {
  int exit_code = -1;
  std::string out;
};

absl::StatusOr<Ran> RunQuick(const std::string& command, const DetectContext& ctx,
                             absl::Duration timeout = kScriptTimeout) {
  if (ctx.work_dir.empty()) return absl::FailedPreconditionError("detection needs a work folder");
  RunSpec spec;
  spec.command = command;
  spec.dir = ctx.work_dir;
  spec.output_path = ctx.work_dir + "/detect.err";
  spec.stdout_path = ctx.work_dir + "/detect.out";
  spec.exit_path = ctx.work_dir + "/detect.exit";
  spec.timeout = timeout;
  spec.env = ctx.env;
  unlink(spec.output_path.c_str());
  ASSIGN_OR_RETURN(RunResult r, Run(spec, nullptr));
  Ran out;
  out.out = std::string(absl::StripAsciiWhitespace(FileTail(spec.stdout_path, 64 * 1024)));
  if (!r.exited)
    return absl::DeadlineExceededError(
        absl::StrCat("a detection command did not finish in ", absl::FormatDuration(timeout)));
  out.exit_code = r.exit_code;
  return out;
}

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

absl::StatusOr<bool> FileHolds(const v1::FileRule& f) {
  struct stat st {};
  if (stat(f.path().c_str(), &st) != 0) return false;
  if (!f.sha256().empty()) {
    auto digest = content::HashFile(f.path());
    if (!digest.ok()) return false;
    if (digest->sha256 != absl::AsciiStrToLower(f.sha256())) return false;
  }
  if (!f.min_version().empty()) {
    std::ifstream in(f.path());
    std::string line;
    if (!std::getline(in, line)) return false;
    line = std::string(absl::StripAsciiWhitespace(line));
    if (line.empty() || collections::CompareVersions(line, f.min_version()) < 0) return false;
  }
  return true;
}

absl::StatusOr<bool> PackageHolds(const v1::PackageRule& p, const DetectContext& ctx) {
  if (p.manager() == "rpm") {
    if (ctx.rpm_command == "none") return false;
    ASSIGN_OR_RETURN(Ran q,
                     RunQuick(absl::StrCat(ctx.rpm_command, " -q --qf '%{VERSION}-%{RELEASE}' ",
                                           Quote(p.name()), " 2>/dev/null"),
                              ctx));
    if (q.exit_code != 0 || q.out.empty()) return false;
    return p.min_version().empty() || collections::CompareVersions(q.out, p.min_version()) >= 0;
  }
  ASSIGN_OR_RETURN(
      Ran q, RunQuick(absl::StrCat("dpkg-query --admindir=", Quote(ctx.dpkg_dir),
                                   " -W -f='${db:Status-Status} ${Version}' ", Quote(p.name())),
                      ctx));
  if (q.exit_code != 0) return false;  // not known to dpkg
  auto space = q.out.find(' ');
  if (space == std::string::npos || q.out.substr(0, space) != "installed") return false;
  if (p.min_version().empty()) return true;
  ASSIGN_OR_RETURN(Ran cmp,
                   RunQuick(absl::StrCat("dpkg --compare-versions ", Quote(q.out.substr(space + 1)),
                                         " ge ", Quote(p.min_version())),
                            ctx));
  return cmp.exit_code == 0;
}

absl::StatusOr<bool> ScriptHolds(const v1::ScriptRule& s, const DetectContext& ctx) {
  const std::string path = ctx.work_dir + "/detect.script";
  RETURN_IF_ERROR(WriteFileDurably(path, s.body(), 0700));
  const std::string interpreter = s.interpreter().empty() ? "sh" : s.interpreter();
  ASSIGN_OR_RETURN(Ran r, RunQuick(absl::StrCat(interpreter, " ", Quote(path)), ctx));
  // Configuration Manager's rule: exit 0 and something on stdout.
  return r.exit_code == 0 && !r.out.empty();
}

}  // namespace

absl::StatusOr<bool> Detect(const v1::Detection& detection, const DetectContext& ctx) {
  const bool any = detection.op() == "or";
  for (const auto& rule : detection.rules()) {
    absl::StatusOr<bool> holds = false;
    switch (rule.rule_case()) {
      case v1::DetectionRule::kFile:
        holds = FileHolds(rule.file());
        break;
      case v1::DetectionRule::kPackage:
        holds = PackageHolds(rule.package(), ctx);
        break;
      case v1::DetectionRule::kScript:
        holds = ScriptHolds(rule.script(), ctx);
        break;
      case v1::DetectionRule::kGroup:
        holds = Detect(rule.group(), ctx);
        break;
      default:
        break;
    }
    if (!holds.ok()) return holds.status();
    if (*holds && any) return true;
    if (!*holds && !any) return false;
  }
  return !any;
}

collections::DeviceFacts FactsOf(const v1::InventoryReport& inv, const std::string& site) {
  collections::DeviceFacts f;
  const auto& hw = inv.hardware();
  f["device"] = {{{"name", hw.os().hostname()}, {"site", site}, {"active", "true"}}};
  const auto& os = hw.os();
  f["os"] = {{{"name", os.name()},
              {"version", os.version()},
              {"pretty_name", os.pretty_name()},
              {"kernel", os.kernel()},
              {"architecture", os.architecture()},
              {"hostname", os.hostname()},
              {"id", os.id()},
              {"version_id", os.version()}}};
  const auto& sys = hw.system();
  f["system"] = {{{"vendor", sys.vendor()},
                  {"product", sys.product()},
                  {"serial", sys.serial()},
                  {"bios_vendor", sys.bios_vendor()},
                  {"bios_version", sys.bios_version()},
                  {"virtualization", sys.virtualization()},
                  {"uptime_days", absl::StrCat(static_cast<double>(sys.uptime_s()) / 86400.0)}}};
  f["memory"] = {{{"total_mb", absl::StrCat(sys.memory_total_kb() / 1024)},
                  {"swap_mb", absl::StrCat(sys.swap_total_kb() / 1024)}}};
  for (const auto& p : hw.processors())
    f["processor"].push_back({{"model", p.model()},
                              {"sockets", absl::StrCat(p.sockets())},
                              {"cores", absl::StrCat(p.cores())},
                              {"threads", absl::StrCat(p.threads())}});
  for (const auto& d : hw.disks())
    f["disk"].push_back(
        {{"name", d.name()},
         {"model", d.model()},
         {"fs_type", d.fs_type()},
         {"is_filesystem", d.is_filesystem() ? "true" : "false"},
         {"size_gb", absl::StrCat(static_cast<double>(d.size_bytes()) / 1073741824.0)},
         {"free_gb", absl::StrCat(static_cast<double>(d.free_bytes()) / 1073741824.0)}});
  for (const auto& n : hw.adapters())
    f["network"].push_back(
        {{"name", n.name()}, {"mac", n.mac()}, {"speed_mbps", absl::StrCat(n.speed_mbps())}});
  for (const auto& s : inv.software())
    f["software"].push_back({{"name", s.name()},
                             {"version", s.version()},
                             {"architecture", s.architecture()},
                             {"source", s.source()}});
  return f;
}

}  // namespace strata::agent
