#include "common/deploy/application.h"

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/collections/query.h"
#include "common/inventory/report_check.h"

namespace strata::deploy {
namespace {

absl::Status Field(const std::string& where, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
}

absl::Status CheckText(const std::string& where, const std::string& text, size_t max,
                       bool required) {
  if (required && text.empty()) return Field(where, "required");
  if (text.size() > max) return Field(where, absl::StrCat("at most ", max, " bytes"));
  if (!inventory::IsCleanText(text)) return Field(where, "not valid UTF-8 text (or has a NUL)");
  return absl::OkStatus();
}

bool IsHex64(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

bool IsUserName(const std::string& s) {
  if (s.empty() || s.size() > 32) return false;
  if (!(absl::ascii_islower(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (!(absl::ascii_islower(u) || absl::ascii_isdigit(u) || c == '_' || c == '-')) return false;
  }
  return true;
}

absl::Status CheckDetection(const std::string& where, const v1::Detection& d, int depth,
                            int* rules) {
  if (depth > kMaxDetectionDepth)
    return Field(where, absl::StrCat("detection nested more than ", kMaxDetectionDepth, " deep"));
  if (!d.op().empty() && d.op() != "and" && d.op() != "or")
    return Field(where, absl::StrCat("detection op \"", d.op(), "\": \"and\" or \"or\""));
  for (int i = 0; i < d.rules_size(); ++i) {
    const v1::DetectionRule& r = d.rules(i);
    const std::string at = absl::StrCat(where, ": detection rule ", *rules + 1);
    if (++*rules > kMaxDetectionRules)
      return Field(where, absl::StrCat("at most ", kMaxDetectionRules, " detection rules"));
    switch (r.rule_case()) {
      case v1::DetectionRule::kFile:
        RETURN_IF_ERROR(CheckText(at + ": path", r.file().path(), 4096, true));
        if (r.file().path()[0] != '/') return Field(at, "the path must be absolute");
        if (!r.file().sha256().empty() && !IsHex64(r.file().sha256()))
          return Field(at, "sha256: 64 hex digits");
        RETURN_IF_ERROR(CheckText(at + ": min_version", r.file().min_version(), 256, false));
        break;
      case v1::DetectionRule::kPackage:
        if (!r.package().manager().empty() && r.package().manager() != "dpkg" &&
            r.package().manager() != "rpm")
          return Field(at, "package manager: \"dpkg\" or \"rpm\"");
        RETURN_IF_ERROR(CheckText(at + ": package name", r.package().name(), 256, true));
        RETURN_IF_ERROR(CheckText(at + ": min_version", r.package().min_version(), 256, false));
        break;
      case v1::DetectionRule::kScript: {
        const std::string& in = r.script().interpreter();
        if (!in.empty() && in != "sh" && in != "bash" && in != "python3")
          return Field(at, "script interpreter: sh, bash or python3");
        RETURN_IF_ERROR(CheckText(at + ": script", r.script().body(), kMaxScriptBytes, true));
        break;
      }
      case v1::DetectionRule::kGroup:
        --*rules;  // a group is not a rule of its own
        RETURN_IF_ERROR(CheckDetection(where, r.group(), depth + 1, rules));
        break;
      default:
        return Field(at, "empty (a file, package, script or group)");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckApplication(const v1::Application& app) {
  RETURN_IF_ERROR(CheckText("description", app.description(), 4096, false));
  RETURN_IF_ERROR(CheckText("publisher", app.publisher(), 256, false));
  RETURN_IF_ERROR(CheckText("software_version", app.software_version(), 256, false));
  if (app.deployment_types_size() == 0) return Field("deployment_types", "at least one");
  if (app.deployment_types_size() > kMaxDeploymentTypes)
    return Field("deployment_types", absl::StrCat("at most ", kMaxDeploymentTypes));
  std::set<std::string> names;
  for (const auto& dt : app.deployment_types()) {
    RETURN_IF_ERROR(CheckText("deployment type name", dt.name(), 256, true));
    const std::string where = absl::StrCat("deployment type \"", dt.name(), "\"");
    if (!names.insert(dt.name()).second) return Field(where, "named twice");
    RETURN_IF_ERROR(
        CheckText(where + ": install_command", dt.install_command(), kMaxCommandBytes, true));
    RETURN_IF_ERROR(
        CheckText(where + ": uninstall_command", dt.uninstall_command(), kMaxCommandBytes, false));
    if (dt.has_content()) {
      RETURN_IF_ERROR(CheckText(where + ": content package", dt.content().package(), 256, true));
      if (dt.content().version() < 0) return Field(where, "content version: 1 or more");
    }
    int rules = 0;
    RETURN_IF_ERROR(CheckDetection(where, dt.detection(), 1, &rules));
    if (!dt.requirements().empty()) {
      collections::DeviceFacts none;
      auto parsed = collections::EvaluateQuery(dt.requirements(), none);
      if (!parsed.ok())
        return Field(where + ": requirements", std::string(parsed.status().message()));
    }
    std::set<int> codes;
    for (const auto& rc : dt.return_codes()) {
      if (rc.kind() == v1::RETURN_KIND_UNSPECIFIED)
        return Field(where, absl::StrCat("return code ", rc.code(), ": a kind is required"));
      if (!codes.insert(rc.code()).second)
        return Field(where, absl::StrCat("return code ", rc.code(), " named twice"));
    }
    if (dt.return_codes_size() > 64) return Field(where, "at most 64 return codes");
    if (!dt.run_as().empty() && dt.run_as() != "root" && !IsUserName(dt.run_as()))
      return Field(where, absl::StrCat("run_as \"", dt.run_as(), "\" is not a user name"));
    if (dt.max_run_minutes() < 0 || dt.max_run_minutes() > kMaxRunMinutes)
      return Field(where, absl::StrCat("max_run_minutes: 1 to ", kMaxRunMinutes,
                                       " (0: ", kDefaultMaxRunMinutes, ")"));
    if (dt.estimated_bytes() < 0) return Field(where, "estimated_bytes: not negative");
  }
  if (app.depends_on_size() > 32) return Field("depends_on", "at most 32 applications");
  for (const auto& d : app.depends_on())
    if (d == app.name()) return Field("depends_on", "an application cannot depend on itself");
  if (app.supersedes_size() > 32) return Field("supersedes", "at most 32 applications");
  for (const auto& s : app.supersedes())
    if (s.application() == app.name()) return Field("supersedes", "not itself");
  return absl::OkStatus();
}

v1::ReturnKind ReturnKindOf(const v1::DeploymentType& dt, int code) {
  for (const auto& rc : dt.return_codes())
    if (rc.code() == code) return rc.kind();
  switch (code) {
    case 0:
      return v1::RETURN_KIND_SUCCESS;
    case 3010:
      return v1::RETURN_KIND_SOFT_REBOOT;
    case 1641:
      return v1::RETURN_KIND_HARD_REBOOT;
    case 1618:
      return v1::RETURN_KIND_RETRY;
    default:
      return v1::RETURN_KIND_FAILURE;
  }
}

int MaxRunMinutes(const v1::DeploymentType& dt) {
  return dt.max_run_minutes() > 0 ? dt.max_run_minutes() : kDefaultMaxRunMinutes;
}

std::string StateName(v1::DeploymentStateKind kind) {
  std::string name = v1::DeploymentStateKind_Name(kind);
  if (absl::StartsWith(name, "DEPLOYMENT_STATE_")) name = name.substr(17);
  return absl::AsciiStrToLower(name);
}

bool HasDetection(const v1::DeploymentType& dt) { return dt.detection().rules_size() > 0; }

}  // namespace strata::deploy
