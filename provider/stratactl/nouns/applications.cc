// stratactl get applications, describe application, create / update
// application (from flags for one deployment type, or --file with the whole
// definition as JSON), delete application

#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/util/json_util.h"
#include "provider/stratactl/command.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/applications.grpc.pb.h"

namespace strata::ctl {
namespace {

// The flags of one deployment type; --file gives the whole definition.
struct AppFlags {
  std::string file, description, publisher, software_version, type_name = "default";
  std::string content, install, uninstall, requirements, run_as;
  int max_run_minutes = 0;
  int64_t estimated_bytes = 0;
  bool detect_any = false;
  std::vector<std::string> detect_files, detect_packages, detect_scripts, return_codes, depends_on,
      supersedes, scopes;

  void Declare(CLI::App* cmd) {
    cmd->add_option("--file", file,
                    "The whole definition as JSON (strata.v1.Application: several deployment "
                    "types, nested detection); other flags are then not allowed");
    cmd->add_option("--description", description, "What it is");
    cmd->add_option("--publisher", publisher, "Who makes it");
    cmd->add_option("--software-version", software_version, "Its version, as shown");
    cmd->add_option("--type-name", type_name, "The deployment type's name (default: default)");
    cmd->add_option("--content", content,
                    "A package (get packages) whose files the command runs among: NAME or "
                    "NAME:VERSION (default: the newest)");
    cmd->add_option("--install", install,
                    "Install command line (/bin/sh -c, in the content's "
                    "folder; at most 8 KiB)");
    cmd->add_option("--uninstall", uninstall, "Uninstall command line");
    cmd->add_option("--detect-file", detect_files,
                    "Installed when this file exists: PATH, PATH=SHA256 (its hash) or "
                    "PATH>=VERSION (its first line as a version); repeatable");
    cmd->add_option("--detect-package", detect_packages,
                    "Installed when this package is: [dpkg:|rpm:]NAME[>=VERSION]; repeatable");
    cmd->add_option("--detect-script", detect_scripts,
                    "Installed when this script (a file: sh, or its #! names bash or python3) "
                    "exits 0 and prints something; repeatable");
    cmd->add_flag("--detect-any", detect_any,
                  "Installed when any detection rule holds (default: all of them)");
    cmd->add_option("--requirements", requirements,
                    "Devices it may install on, in the query language over the device's own "
                    "inventory: 'os.id = \"debian\" and memory.total_mb >= 2048'");
    cmd->add_option("--return-code", return_codes,
                    "CODE=KIND, KIND one of success, soft-reboot, hard-reboot, retry, failure "
                    "(defaults: 0 success, 3010 soft-reboot, 1641 hard-reboot, 1618 retry); "
                    "repeatable");
    cmd->add_option("--run-as", run_as, "A local user to run as (default: root)");
    cmd->add_option("--max-run-minutes", max_run_minutes,
                    "Killed with its children after this long (default 120, at most 1440)")
        ->check(CLI::Range(0, 1440));
    cmd->add_option("--estimated-bytes", estimated_bytes, "Disk space it needs")
        ->check(CLI::NonNegativeNumber);
    cmd->add_option("--depends-on", depends_on, "An application installed first; repeatable");
    cmd->add_option("--supersedes", supersedes,
                    "An older application this one replaces: NAME or NAME:uninstall; repeatable");
    cmd->add_option("--scope", scopes, "Security scopes (default: Default); repeatable");
  }

  // The definition, or a message saying what is wrong with the flags.
  std::string Build(const std::string& name, v1::Application* app) const {
    if (!file.empty()) {
      std::ifstream in(file);
      if (!in) return absl::StrCat("cannot read ", file);
      std::stringstream text;
      text << in.rdbuf();
      auto s = google::protobuf::util::JsonStringToMessage(text.str(), app);
      if (!s.ok()) return absl::StrCat(file, ": ", s.ToString());
      if (!app->name().empty() && app->name() != name)
        return absl::StrCat(file, " names application \"", app->name(), "\", not \"", name, "\"");
      app->set_name(name);
      return "";
    }
    app->set_name(name);
    app->set_description(description);
    app->set_publisher(publisher);
    app->set_software_version(software_version);
    for (const auto& d : depends_on) app->add_depends_on(d);
    for (const auto& s : supersedes) {
      auto* x = app->add_supersedes();
      std::pair<std::string, std::string> parts = absl::StrSplit(s, absl::MaxSplits(':', 1));
      x->set_application(parts.first);
      if (parts.second == "uninstall") {
        x->set_uninstall(true);
      } else if (!parts.second.empty()) {
        return absl::StrCat("--supersedes ", s, ": NAME or NAME:uninstall");
      }
    }
    for (const auto& s : scopes) app->add_scopes(s);
    auto* dt = app->add_deployment_types();
    dt->set_name(type_name);
    if (!content.empty()) {
      std::pair<std::string, std::string> parts = absl::StrSplit(content, absl::MaxSplits(':', 1));
      dt->mutable_content()->set_package(parts.first);
      int64_t v = 0;
      if (!parts.second.empty() && (!absl::SimpleAtoi(parts.second, &v) || v <= 0))
        return absl::StrCat("--content ", content, ": NAME or NAME:VERSION");
      dt->mutable_content()->set_version(v);
    }
    dt->set_install_command(install);
    dt->set_uninstall_command(uninstall);
    dt->set_requirements(requirements);
    dt->set_run_as(run_as);
    dt->set_max_run_minutes(max_run_minutes);
    dt->set_estimated_bytes(estimated_bytes);
    auto* det = dt->mutable_detection();
    if (detect_any) det->set_op("or");
    for (const auto& f : detect_files) {
      auto* r = det->add_rules()->mutable_file();
      if (auto at = f.find(">="); at != std::string::npos) {
        r->set_path(f.substr(0, at));
        r->set_min_version(f.substr(at + 2));
      } else if (auto eq = f.find('='); eq != std::string::npos) {
        r->set_path(f.substr(0, eq));
        r->set_sha256(f.substr(eq + 1));
      } else {
        r->set_path(f);
      }
    }
    for (const auto& p : detect_packages) {
      auto* r = det->add_rules()->mutable_package();
      std::string rest = p;
      for (const char* m : {"dpkg:", "rpm:"}) {
        if (absl::StartsWith(rest, m)) {
          r->set_manager(std::string(m, strlen(m) - 1));
          rest = rest.substr(strlen(m));
        }
      }
      if (auto at = rest.find(">="); at != std::string::npos) {
        r->set_name(rest.substr(0, at));
        r->set_min_version(rest.substr(at + 2));
      } else {
        r->set_name(rest);
      }
    }
    for (const auto& path : detect_scripts) {
      std::ifstream in(path);
      if (!in) return absl::StrCat("--detect-script: cannot read ", path);
      std::stringstream body;
      body << in.rdbuf();
      auto* r = det->add_rules()->mutable_script();
      r->set_body(body.str());
      const std::string first = body.str().substr(0, body.str().find('\n'));
      if (absl::StartsWith(first, "#!")) {
        if (absl::StrContains(first, "python3"))
          r->set_interpreter("python3");
        else if (absl::StrContains(first, "bash"))
          r->set_interpreter("bash");
      }
    }
    for (const auto& rc : return_codes) {
      std::pair<std::string, std::string> parts = absl::StrSplit(rc, absl::MaxSplits('=', 1));
      int code = 0;
      const std::map<std::string, v1::ReturnKind> kinds{
          {"success", v1::RETURN_KIND_SUCCESS},
          {"soft-reboot", v1::RETURN_KIND_SOFT_REBOOT},
          {"hard-reboot", v1::RETURN_KIND_HARD_REBOOT},
          {"retry", v1::RETURN_KIND_RETRY},
          {"failure", v1::RETURN_KIND_FAILURE}};
      auto kind = kinds.find(parts.second);
      if (!absl::SimpleAtoi(parts.first, &code) || kind == kinds.end())
        return absl::StrCat("--return-code ", rc,
                            ": CODE=KIND (success, soft-reboot, hard-reboot, retry, failure)");
      auto* x = dt->add_return_codes();
      x->set_code(code);
      x->set_kind(kind->second);
    }
    return "";
  }
};

Action SaveApp(CLI::App* cmd, bool create) {
  auto name = std::make_shared<std::string>();
  auto flags = std::make_shared<AppFlags>();
  cmd->add_option("name", *name, "The application's name")->required();
  flags->Declare(cmd);
  // --file carries everything: no other definition flag beside it.
  ExcludesOthers(cmd, cmd->get_option("--file"));
  return [name, flags, create](Client& c) {
    v1::Application req, out;
    if (std::string err = flags->Build(*name, &req); !err.empty()) {
      std::cerr << "stratactl: " << err << "\n";
      return kUsage;
    }
    auto method = create ? &v1::ApplicationService::Stub::CreateApplication
                         : &v1::ApplicationService::Stub::UpdateApplication;
    if (int rc = c.Call(method, req, &out)) return rc;
    PrintDone(c.options(),
              absl::StrCat("application \"", out.name(), "\" ", create ? "created" : "updated",
                           " (", out.deployment_types_size(), " deployment type",
                           out.deployment_types_size() == 1 ? "" : "s", ")"),
              out);
    return kOk;
  };
}

std::string DetectionText(const v1::Detection& d) {
  std::vector<std::string> parts;
  for (const auto& r : d.rules()) {
    switch (r.rule_case()) {
      case v1::DetectionRule::kFile:
        parts.push_back(
            absl::StrCat("file ", r.file().path(),
                         r.file().sha256().empty() ? "" : " sha256=" + r.file().sha256(),
                         r.file().min_version().empty() ? "" : " >= " + r.file().min_version()));
        break;
      case v1::DetectionRule::kPackage:
        parts.push_back(absl::StrCat(
            r.package().manager().empty() ? "dpkg" : r.package().manager(), " ", r.package().name(),
            r.package().min_version().empty() ? "" : " >= " + r.package().min_version()));
        break;
      case v1::DetectionRule::kScript:
        parts.push_back(absl::StrCat("script (", r.script().body().size(), " bytes)"));
        break;
      case v1::DetectionRule::kGroup:
        parts.push_back(absl::StrCat("(", DetectionText(r.group()), ")"));
        break;
      default:
        break;
    }
  }
  if (parts.empty()) return "none (run once)";
  return absl::StrJoin(parts, d.op() == "or" ? " or " : " and ");
}

void DescribeApp(const Options& o, const v1::Application& a) {
  std::vector<std::vector<std::string>> fields{{"name", a.name()},
                                               {"description", a.description()},
                                               {"publisher", a.publisher()},
                                               {"software version", a.software_version()}};
  for (const auto& dt : a.deployment_types()) {
    const std::string p = absl::StrCat("type ", dt.name(), ": ");
    if (dt.has_content())
      fields.push_back({p + "content", absl::StrCat(dt.content().package(), ":",
                                                    dt.content().version() == 0
                                                        ? std::string("newest")
                                                        : absl::StrCat(dt.content().version()))});
    fields.push_back({p + "install", dt.install_command()});
    if (!dt.uninstall_command().empty())
      fields.push_back({p + "uninstall", dt.uninstall_command()});
    fields.push_back({p + "detection", DetectionText(dt.detection())});
    if (!dt.requirements().empty()) fields.push_back({p + "requirements", dt.requirements()});
    fields.push_back({p + "run as", dt.run_as().empty() ? "root" : dt.run_as()});
    fields.push_back(
        {p + "max run", absl::StrCat(dt.max_run_minutes() ? dt.max_run_minutes() : 120, "m")});
  }
  fields.push_back({"depends on", absl::StrJoin(a.depends_on(), ", ")});
  std::vector<std::string> sup;
  for (const auto& s : a.supersedes())
    sup.push_back(s.uninstall() ? s.application() + " (uninstalled)" : s.application());
  fields.push_back({"supersedes", absl::StrJoin(sup, ", ")});
  fields.push_back({"scopes", absl::StrJoin(a.scopes(), ", ")});
  fields.push_back({"created by", a.created_by()});
  fields.push_back({"updated", a.updated_at()});
  Describe(o, a, fields);
}

}  // namespace

std::vector<Command> ApplicationCommands() {
  return {
      {"get",
       "applications",
       {"application", "apps", "app"},
       "Applications: what can be installed and how it is detected",
       [](CLI::App*) -> Action {
         return [](Client& c) {
           v1::ApplicationList l;
           if (int rc = c.ListAll(&v1::ApplicationService::Stub::ListApplications, &l)) return rc;
           Table t{{"NAME", "VERSION", "TYPES", "CONTENT", "DEPENDS_ON", "UPDATED"}, {}};
           for (const auto& a : l.applications()) {
             std::vector<std::string> types, content;
             for (const auto& dt : a.deployment_types()) {
               types.push_back(dt.name());
               if (dt.has_content()) content.push_back(dt.content().package());
             }
             t.rows.push_back({a.name(), a.software_version(), absl::StrJoin(types, ","),
                               absl::StrJoin(content, ","), absl::StrJoin(a.depends_on(), ","),
                               a.updated_at()});
           }
           Show(c.options(), l, l.next_page_token(), t);
           return kOk;
         };
       }},
      {"describe",
       "application",
       {"app"},
       "An application's definition",
       OnName<v1::ApplicationService::Stub, v1::Application>(
           &v1::ApplicationService::Stub::GetApplication, DescribeApp),
       "get applications --all"},
      {"create",
       "application",
       {"app"},
       "An application (one deployment type from flags, or --file)",
       [](CLI::App* cmd) { return SaveApp(cmd, true); }},
      {"update",
       "application",
       {"app"},
       "An application's whole definition (as create)",
       [](CLI::App* cmd) { return SaveApp(cmd, false); },
       "get applications --all"},
      {"delete",
       "application",
       {"app"},
       "An application no deployment or application uses",
       DeleteByName(&v1::ApplicationService::Stub::DeleteApplication, "application"),
       "get applications --all"},
  };
}

}  // namespace strata::ctl
