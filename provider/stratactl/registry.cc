// stratactl's registry: every noun file's commands, and from them the
// command line (CLI11), --help and the bash completion script. A new noun
// is one file in nouns/ and one line in kNouns (with its declaration).

#include <iostream>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/base/version.h"
#include "provider/stratactl/command.h"

namespace strata::ctl {

std::vector<Command> SiteCommands();
std::vector<Command> SiteSystemCommands();
std::vector<Command> LinkCommands();
std::vector<Command> DeviceCommands();
std::vector<Command> ApprovalCommands();
std::vector<Command> EnrollmentTokenCommands();
std::vector<Command> CollectionCommands();
std::vector<Command> ClientSettingCommands();
std::vector<Command> BoundaryCommands();
std::vector<Command> RoleCommands();
std::vector<Command> AdministratorCommands();
std::vector<Command> AuditCommands();
std::vector<Command> ReportCommands();
std::vector<Command> PackageCommands();
std::vector<Command> DistributionPointCommands();
std::vector<Command> ContentLinkCommands();
std::vector<Command> ApplicationCommands();
std::vector<Command> DeploymentCommands();
std::vector<Command> MaintenanceWindowCommands();
std::vector<Command> RolloutCommands();
std::vector<Command> ScriptCommands();
std::vector<Command> ScriptRunCommands();
std::vector<Command> LiveQueryCommands();
std::vector<Command> RunbookCommands();
std::vector<Command> RunbookWorkerGroupCommands();
std::vector<Command> RunbookJobCommands();
std::vector<Command> RunbookScheduleCommands();
std::vector<Command> RunbookAssetCommands();
std::vector<Command> HierarchySettingCommands();

void ExcludesOthers(CLI::App* cmd, CLI::Option* option) {
  for (auto* o : cmd->get_options()) {
    if (o != option && o->get_name() != "--help" && absl::StartsWith(o->get_name(), "--"))
      option->excludes(o);
  }
}

namespace {

using NounFn = std::vector<Command> (*)();
constexpr NounFn kNouns[] = {
    SiteCommands,
    SiteSystemCommands,
    LinkCommands,
    DeviceCommands,
    ApprovalCommands,
    EnrollmentTokenCommands,
    CollectionCommands,
    ClientSettingCommands,
    BoundaryCommands,
    RoleCommands,
    AdministratorCommands,
    AuditCommands,
    ReportCommands,
    PackageCommands,
    DistributionPointCommands,
    ContentLinkCommands,
    ApplicationCommands,
    DeploymentCommands,
    MaintenanceWindowCommands,
    RolloutCommands,
    ScriptCommands,
    ScriptRunCommands,
    LiveQueryCommands,
    RunbookCommands,
    RunbookWorkerGroupCommands,
    RunbookJobCommands,
    RunbookScheduleCommands,
    RunbookAssetCommands,
    HierarchySettingCommands,
};

// The verbs, in the order --help lists them.
struct Verb {
  const char* name;
  const char* help;
};
constexpr Verb kVerbs[] = {
    {"whoami", "Your roles, permissions, scopes and collections"},
    {"get", "List resources"},
    {"describe", "Show one resource in full"},
    {"create", "Create a resource"},
    {"update", "Change a resource"},
    {"delete", "Delete a resource"},
    {"deploy", "Deploy to a collection"},
    {"distribute", "Send content to distribution points"},
    {"undistribute", "Take content back from distribution points"},
    {"validate", "Check content libraries against their hashes"},
    {"undeploy", "Take a deployment away from a collection"},
    {"set", "Create or change"},
    {"approve", "Approve a client waiting for approval, or a script"},
    {"run", "Run an approved script on devices"},
    {"query", "Ask devices a question now (a live query): rows as they arrive"},
    {"publish", "Publish a runbook's draft, or an earlier version again"},
    {"start", "Start a runbook job on a worker group"},
    {"stop", "Stop a runbook job"},
    {"suspend", "Suspend a runbook job (a resumable runbook's): it waits with its checkpoint"},
    {"resume", "Resume a suspended runbook job from its checkpoint"},
    {"reset", "Put back to its default"},
    {"block", "Block a client: refused at registration and at its management point"},
    {"unblock", "Unblock a blocked client"},
    {"revoke", "Revoke"},
    {"diagnose", "Diagnose"},
    {"report", "Built-in reports"},
};

std::string VerbHelp(const Verb& v, const std::vector<Command>& commands) {
  std::vector<std::string> words;
  for (const Command& c : commands) {
    if (c.verb == v.name && !c.word.empty()) words.push_back(c.word);
  }
  if (words.empty()) return v.help;
  return absl::StrCat(v.help, ": ", absl::StrJoin(words, ", "));
}

void AddListFlags(CLI::App* get, Options& o) {
  get->add_option("--filter", o.filter,
                  "devices: a query (os.id = \"debian\" and memory.total_mb >= 4096); others: a "
                  "name pattern (*ssl*)");
  get->add_option("--sort-by", o.sort_by, "A column, optionally followed by \" desc\"");
  get->add_option("--limit", o.limit, "Rows per page (default 100, at most 1000)")
      ->check(CLI::Range(1, 1000));
  get->add_option("--page-token", o.page_token, "Continue a listing where it stopped");
  get->add_flag("--all", o.all_pages, "Fetch every page");
}

// The parsed command line of one run: the app, and each command's node.
struct CommandLine {
  std::unique_ptr<CLI::App> app;
  std::vector<std::pair<CLI::App*, Action>> actions;
  CLI::App* completion = nullptr;
};

CommandLine Build(const std::vector<Command>& commands) {
  Options& o = GlobalOptions();
  CommandLine cl;
  cl.app = std::make_unique<CLI::App>(
      "stratactl: administer a Strata hierarchy through a provider (the CAS or a primary).\n"
      "Connection: ~/.config/strata/stratactl.conf (text-format StratactlConfig: server, "
      "ca_file,\ncert_file, key_file), STRATACTL_CONFIG, or the flags below.\n"
      "Exit codes: 0 ok, 1 refused or failed, 2 usage, 3 permission denied, 4 not found,\n"
      "5 server unavailable. stratactl VERB --help lists a verb's resources; stratactl VERB\n"
      "RESOURCE --help their flags.",
      "stratactl");
  CLI::App& app = *cl.app;
  app.set_version_flag("--version", std::string("stratactl ") + kVersion);
  app.require_subcommand(1);
  app.fallthrough();
  app.add_option("--config", o.config, "Config file (default ~/.config/strata/stratactl.conf)");
  app.add_option("--server", o.server, "Provider address, host:port or unix:/path");
  app.add_option("--ca", o.ca, "PEM file of the hierarchy root CA");
  app.add_option("--cert", o.cert, "Your admin certificate (OU=admin)");
  app.add_option("--key", o.key, "Its private key");
  app.add_option("-o,--output", o.output, "Output format")
      ->check(CLI::IsMember({"table", "json", "csv"}))
      ->capture_default_str();
  app.add_option("--timeout", o.timeout_s, "Seconds to wait for the server")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();

  std::map<std::string, CLI::App*> verbs;
  for (const Verb& v : kVerbs) {
    CLI::App* verb = app.add_subcommand(v.name, VerbHelp(v, commands));
    verb->fallthrough();
    if (std::string(v.name) == "get") AddListFlags(verb, o);
    verbs[v.name] = verb;
  }
  for (const Command& c : commands) {
    auto it = verbs.find(c.verb);
    if (it == verbs.end()) continue;  // a test catches commands of unknown verbs
    CLI::App* node = it->second;
    if (!c.word.empty()) {
      node->require_subcommand(1);
      node = node->add_subcommand(c.word, c.help);
      for (const auto& a : c.aliases) node->alias(a);
      node->fallthrough();
    }
    cl.actions.emplace_back(node, c.setup(node));
  }
  cl.completion = app.add_subcommand("completion", "Print a shell completion script");
  static std::string shell;
  cl.completion->add_option("shell", shell, "bash")->required()->check(CLI::IsMember({"bash"}));
  return cl;
}

// The options of `node` and its parents, as the shell would type them.
std::vector<std::string> FlagsOf(const CLI::App* node) {
  std::set<std::string> flags;
  for (const CLI::App* a = node; a != nullptr; a = a->get_parent()) {
    for (const CLI::Option* opt : a->get_options()) {
      for (const auto& n : opt->get_lnames()) flags.insert("--" + n);
      for (const auto& n : opt->get_snames()) flags.insert("-" + n);
    }
  }
  flags.erase("--help");
  flags.erase("-h");
  return {flags.begin(), flags.end()};
}

std::string Words(const std::vector<std::string>& words) { return absl::StrJoin(words, " "); }

}  // namespace

std::vector<Command> AllCommands() {
  std::vector<Command> all;
  for (NounFn fn : kNouns) {
    for (Command& c : fn()) all.push_back(std::move(c));
  }
  return all;
}

std::vector<std::string> Verbs() {
  std::vector<std::string> out;
  for (const Verb& v : kVerbs) out.push_back(v.name);
  return out;
}

Options& GlobalOptions() {
  static Options* options = new Options;
  return *options;
}

std::string CompletionScript() {
  std::vector<Command> commands = AllCommands();
  CommandLine cl = Build(commands);
  std::vector<std::string> verbs;
  std::string by_verb, by_command, names;
  for (const CLI::App* verb : cl.app->get_subcommands({})) {
    verbs.push_back(verb->get_name());
    std::vector<std::string> words;
    for (const CLI::App* w : verb->get_subcommands({})) {
      words.push_back(w->get_name());
      for (const auto& a : w->get_aliases()) words.push_back(a);
      for (const std::string& name : [&] {
             std::vector<std::string> all{w->get_name()};
             for (const auto& a : w->get_aliases()) all.push_back(a);
             return all;
           }()) {
        absl::StrAppend(&by_command, "      \"", verb->get_name(), " ", name, "\") flags=\"",
                        Words(FlagsOf(w)), "\" ;;\n");
      }
    }
    if (!words.empty()) {
      absl::StrAppend(&by_verb, "      ", verb->get_name(), ") COMPREPLY=($(compgen -W \"",
                      Words(words), "\" -- \"$cur\")) ;;\n");
    } else {
      absl::StrAppend(&by_command, "      \"", verb->get_name(), " \"*) flags=\"",
                      Words(FlagsOf(verb)), "\" ;;\n");
    }
  }
  for (const Command& c : commands) {
    if (c.complete_names.empty()) continue;
    absl::StrAppend(&names, "      \"", c.verb, " ", c.word, "\") list=\"", c.complete_names,
                    "\" ;;\n");
  }
  return absl::StrCat(
      "# bash completion for stratactl: source <(stratactl completion bash)\n"
      "_stratactl() {\n"
      "  local cur=${COMP_WORDS[COMP_CWORD]} verb=${COMP_WORDS[1]} word=${COMP_WORDS[2]}\n"
      "  local IFS=$'\\n' flags= list=\n"
      "  if [ \"$COMP_CWORD\" -eq 1 ]; then\n"
      "    COMPREPLY=($(IFS=' '; compgen -W \"",
      Words(verbs),
      " --help\" -- \"$cur\"))\n"
      "    return\n"
      "  fi\n"
      "  if [ \"$COMP_CWORD\" -eq 2 ] && [[ $cur != -* ]]; then\n"
      "    IFS=' '\n"
      "    case $verb in\n",
      by_verb,
      "    esac\n"
      "    return\n"
      "  fi\n"
      "  case \"$verb $word\" in\n",
      by_command,
      "  esac\n"
      "  if [[ $cur == -* ]]; then\n"
      "    COMPREPLY=($(IFS=' '; compgen -W \"$flags\" -- \"$cur\"))\n"
      "    return\n"
      "  fi\n"
      "  if [ \"$COMP_CWORD\" -eq 3 ]; then\n"
      "    case \"$verb $word\" in\n",
      names,
      "    esac\n"
      "    # Names from the provider itself (they may hold spaces: one per line).\n"
      "    [ -n \"$list\" ] && COMPREPLY=($(compgen -W \"$(IFS=' '; stratactl $list -o csv "
      "2>/dev/null | tail -n +2 | cut -d, -f1)\" -- \"$cur\"))\n"
      "  fi\n"
      "}\n"
      "complete -F _stratactl stratactl\n");
}

int Main(int argc, char** argv) {
  std::vector<Command> commands = AllCommands();
  CommandLine cl = Build(commands);
  try {
    cl.app->parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = cl.app->exit(e);
    return rc == 0 ? kOk : kUsage;
  }
  if (cl.completion->parsed()) {
    std::cout << CompletionScript();
    return kOk;
  }
  const std::pair<CLI::App*, Action>* chosen = nullptr;
  for (const auto& entry : cl.actions) {
    if (entry.first->parsed()) chosen = &entry;
  }
  if (chosen == nullptr) return kUsage;
  Client client(GlobalOptions());
  if (int rc = client.Connect(); rc != kOk) return rc;
  return chosen->second(client);
}

}  // namespace strata::ctl
