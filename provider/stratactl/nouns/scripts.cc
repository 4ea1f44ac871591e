// stratactl create|update script (a body file and flags, or --file with the
// whole definition), get scripts, describe script, delete script,
// approve script [--withdraw]

#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/util/json_util.h"
#include "provider/stratactl/command.h"
#include "provider/stratactl/nouns/scripts.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/scripts.grpc.pb.h"

namespace strata::ctl {

bool ReadWhole(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream text;
  text << in.rdbuf();
  *out = text.str();
  return true;
}

// "name[:type][:required][:default=V][:min=N][:max=N][:min-length=N]
// [:max-length=N][:allowed=a|b][:regex=RE]" (regex= takes the rest).
std::string ParseParam(const std::string& spec, v1::ScriptParameter* p) {
  std::string rest = spec;
  std::string regex;
  if (auto at = rest.find(":regex="); at != std::string::npos) {
    regex = rest.substr(at + 7);
    rest = rest.substr(0, at);
  }
  std::vector<std::string> parts = absl::StrSplit(rest, ':');
  p->set_name(parts[0]);
  p->set_regex(regex);
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string& x = parts[i];
    std::pair<std::string, std::string> kv = absl::StrSplit(x, absl::MaxSplits('=', 1));
    int64_t n = 0;
    const bool number = absl::SimpleAtoi(kv.second, &n);
    if (x == "string" || x == "int" || x == "enum") {
      p->set_type(x);
    } else if (x == "required") {
      p->set_required(true);
    } else if (kv.first == "default") {
      p->set_default_value(kv.second);
    } else if (kv.first == "allowed") {
      for (const auto& a : absl::StrSplit(kv.second, '|')) p->add_allowed(std::string(a));
    } else if (kv.first == "min" && number) {
      p->set_min(n);
    } else if (kv.first == "max" && number) {
      p->set_max(n);
    } else if (kv.first == "min-length" && number) {
      p->set_min_length(static_cast<int32_t>(n));
    } else if (kv.first == "max-length" && number) {
      p->set_max_length(static_cast<int32_t>(n));
    } else {
      return absl::StrCat("--param ", spec, ": \"", x,
                          "\" is not string, int, enum, required, default=, allowed=a|b, min=N, "
                          "max=N, min-length=N, max-length=N or regex=RE");
    }
  }
  return "";
}

std::string ParameterRules(const v1::ScriptParameter& p) {
  std::vector<std::string> rules{p.type()};
  if (p.required()) rules.push_back("required");
  if (!p.default_value().empty()) rules.push_back("default " + p.default_value());
  if (!p.regex().empty()) rules.push_back("matching " + p.regex());
  if (p.allowed_size() > 0) rules.push_back("one of " + absl::StrJoin(p.allowed(), "|"));
  if (p.min() != 0 || p.max() != 0) rules.push_back(absl::StrCat(p.min(), "..", p.max()));
  return absl::StrJoin(rules, ", ");
}

namespace {

struct ScriptFlags {
  std::string file, body_file, interpreter, description, run_as;
  std::string timeout;
  std::vector<std::string> params, scopes;

  void Declare(CLI::App* cmd) {
    cmd->add_option("--file", file,
                    "The whole definition as JSON (strata.v1.Script: body, parameters, ...)");
    cmd->add_option("--body", body_file, "The script's body: a file (at most 256 KiB)");
    cmd->add_option("--interpreter", interpreter, "bash (default), sh or python3")
        ->check(CLI::IsMember({"bash", "sh", "python3"}));
    cmd->add_option("--description", description, "What it does");
    cmd->add_option("--timeout", timeout,
                    "Killed with its children after this long: 600, 90s, 10m, 2h (default 10m, "
                    "at most 24h)");
    cmd->add_option("--run-as", run_as, "A local user to run as (default: root)");
    cmd->add_option(
        "--param", params,
        "A parameter, passed as the environment variable of its name: "
        "NAME[:string|int|enum][:required][:default=V][:min=N][:max=N][:min-length=N]"
        "[:max-length=N][:allowed=A|B][:regex=RE] (regex= last); repeatable, at most 10");
    cmd->add_option("--scope", scopes, "Security scopes (default: Default); repeatable");
  }

  std::string Build(const std::string& name, v1::Script* s) const {
    if (!file.empty()) {
      std::string text;
      if (!ReadWhole(file, &text)) return absl::StrCat("cannot read ", file);
      auto st = google::protobuf::util::JsonStringToMessage(text, s);
      if (!st.ok()) return absl::StrCat(file, ": ", st.ToString());
      if (!s->name().empty() && s->name() != name)
        return absl::StrCat(file, " names script \"", s->name(), "\", not \"", name, "\"");
      s->set_name(name);
      return "";
    }
    if (body_file.empty()) return "--body FILE (or --file with the whole definition) is required";
    std::string body;
    if (!ReadWhole(body_file, &body)) return absl::StrCat("cannot read ", body_file);
    s->set_name(name);
    s->set_body(body);
    s->set_interpreter(interpreter);
    s->set_description(description);
    s->set_run_as(run_as);
    if (!timeout.empty()) {
      const int64_t t = ParseDuration(timeout);
      if (t <= 0) return absl::StrCat("--timeout ", timeout, ": seconds, or 90s, 10m, 2h");
      s->set_timeout_seconds(t);
    }
    for (const auto& spec : params)
      if (std::string err = ParseParam(spec, s->add_parameters()); !err.empty()) return err;
    for (const auto& x : scopes) s->add_scopes(x);
    return "";
  }
};

std::string Approval(const v1::Script& s) {
  if (s.approved_by().empty()) return "not approved";
  if (s.approved_sha256() != s.sha256()) return "changed since approved";
  return absl::StrCat("approved by ", s.approved_by());
}

Action SaveScript(CLI::App* cmd, bool create) {
  auto name = std::make_shared<std::string>();
  auto flags = std::make_shared<ScriptFlags>();
  cmd->add_option("name", *name, "The script's name")->required();
  flags->Declare(cmd);
  ExcludesOthers(cmd, cmd->get_option("--file"));
  return [name, flags, create](Client& c) {
    v1::Script req, out;
    if (std::string err = flags->Build(*name, &req); !err.empty()) {
      std::cerr << "stratactl: " << err << "\n";
      return kUsage;
    }
    auto method =
        create ? &v1::ScriptService::Stub::CreateScript : &v1::ScriptService::Stub::UpdateScript;
    if (int rc = c.Call(method, req, &out)) return rc;
    PrintDone(c.options(),
              absl::StrCat("script \"", out.name(), "\" ", create ? "created" : "updated",
                           " (sha256 ", out.sha256(),
                           "); it runs once approved: ", "stratactl approve script ", out.name()),
              out);
    return kOk;
  };
}

Action Approve(CLI::App* cmd) {
  auto req = std::make_shared<v1::ApproveScriptRequest>();
  auto withdraw = std::make_shared<bool>(false);
  cmd->add_option("name", *req->mutable_name(), "The script")->required();
  cmd->add_option("--sha256", *req->mutable_sha256(),
                  "The body's hash you read (describe script): refused if it changed since");
  cmd->add_option("--comment", *req->mutable_comment(), "Why (kept with the approval)");
  cmd->add_flag("--withdraw", *withdraw, "Withdraw the approval instead");
  return [req, withdraw](Client& c) {
    req->set_withdraw(*withdraw);
    v1::Script out;
    if (int rc = c.Call(&v1::ScriptService::Stub::ApproveScript, *req, &out)) return rc;
    PrintDone(c.options(),
              absl::StrCat("script \"", out.name(), "\": ", Approval(out), " (sha256 ",
                           out.sha256(), ")"),
              out);
    return kOk;
  };
}

void DescribeScript(const Options& o, const v1::Script& s) {
  std::vector<std::vector<std::string>> fields{{"name", s.name()},
                                               {"description", s.description()},
                                               {"interpreter", s.interpreter()},
                                               {"sha256", s.sha256()},
                                               {"approval", Approval(s)},
                                               {"approved sha256", s.approved_sha256()},
                                               {"approved at", s.approved_at()},
                                               {"approval comment", s.approval_comment()},
                                               {"timeout", Duration(s.timeout_seconds())},
                                               {"run as", s.run_as().empty() ? "root" : s.run_as()},
                                               {"author", s.author()},
                                               {"updated", s.updated_at()},
                                               {"scopes", absl::StrJoin(s.scopes(), ", ")}};
  for (const auto& p : s.parameters())
    fields.push_back({"parameter " + p.name(), ParameterRules(p)});
  fields.push_back({"body", s.body()});
  Describe(o, s, fields);
}

}  // namespace

std::vector<Command> ScriptCommands() {
  const std::string names = "get scripts --all";
  return {
      {"get",
       "scripts",
       {"script"},
       "Scripts and their approval",
       [](CLI::App*) -> Action {
         return [](Client& c) {
           v1::ScriptList l;
           if (int rc = c.ListAll(&v1::ScriptService::Stub::ListScripts, &l)) return rc;
           Table t{{"NAME", "INTERPRETER", "APPROVAL", "AUTHOR", "TIMEOUT", "SHA256"}, {}};
           for (const auto& s : l.scripts())
             t.rows.push_back({s.name(), s.interpreter(), Approval(s), s.author(),
                               Duration(s.timeout_seconds()), s.sha256().substr(0, 16)});
           Show(c.options(), l, l.next_page_token(), t);
           return kOk;
         };
       }},
      {"describe",
       "script",
       {},
       "A script, its parameters and body",
       OnName<v1::ScriptService::Stub, v1::Script>(&v1::ScriptService::Stub::GetScript,
                                                   DescribeScript),
       names},
      {"create",
       "script",
       {},
       "A script (--body FILE, or --file with the whole definition)",
       [](CLI::App* cmd) { return SaveScript(cmd, true); }},
      {"update",
       "script",
       {},
       "A script's definition (its approval is withdrawn)",
       [](CLI::App* cmd) { return SaveScript(cmd, false); },
       names},
      {"delete",
       "script",
       {},
       "A script (runs made of it keep their copy)",
       DeleteByName(&v1::ScriptService::Stub::DeleteScript, "script"),
       names},
      {"approve",
       "script",
       {},
       "A script another administrator wrote, bound to its body's hash",
       Approve,
       names},
  };
}

}  // namespace strata::ctl
