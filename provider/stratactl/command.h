#pragma once

// stratactl's commands: `stratactl VERB WORD [NAME] [flags]`, where WORD is a
// noun (get devices, create collection) or a sub-action (report run). Each
// noun file (nouns/) returns its commands; the registry (registry.cc)
// builds the command line, --help and shell completion from them, so a new
// noun is one file and one registry line (docs/adding-a-resource.md).

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "provider/stratactl/client.h"
#include "provider/stratactl/output.h"

namespace strata::ctl {

// What runs once the command line is parsed; returns the exit code.
using Action = std::function<int(Client&)>;

struct Command {
  std::string verb;                  // get, describe, create, ... (registry.cc lists them)
  std::string word;                  // the noun or sub-action; "" for a verb alone (whoami)
  std::vector<std::string> aliases;  // other spellings of `word` (devices / device)
  std::string help;                  // one line
  // Declares the command's positional arguments and flags on `cmd` (binding
  // them to state it owns) and returns the action that uses them.
  std::function<Action(CLI::App* cmd)> setup;
  // Completion of the first positional: stratactl arguments whose CSV
  // output's first column lists the candidates ("get collections --all").
  std::string complete_names = {};
};

// `option` (--file: the whole definition) excludes every other "--" option
// of `cmd`.
void ExcludesOthers(CLI::App* cmd, CLI::Option* option);

// The setup of a command on one object named by its first argument: calls
// `method` with the name and hands the answer to `show`.
template <typename Stub, typename Resp>
std::function<Action(CLI::App*)> OnName(grpc::Status (Stub::*method)(grpc::ClientContext*,
                                                                     const v1::GetRequest&, Resp*),
                                        std::function<void(const Options&, const Resp&)> show,
                                        std::string help = "Its name") {
  return [method, show, help](CLI::App* cmd) -> Action {
    auto name = std::make_shared<std::string>();
    cmd->add_option("name", *name, help)->required();
    return [method, show, name](Client& c) {
      v1::GetRequest req;
      req.set_name(*name);
      Resp out;
      if (int rc = c.Call(method, req, &out)) return rc;
      show(c.options(), out);
      return kOk;
    };
  };
}

// `stratactl delete NOUN NAME`, saying `NOUN "NAME" deleted`.
template <typename Stub>
std::function<Action(CLI::App*)> DeleteByName(grpc::Status (Stub::*method)(grpc::ClientContext*,
                                                                           const v1::GetRequest&,
                                                                           v1::Deleted*),
                                              const std::string& noun) {
  return OnName<Stub, v1::Deleted>(method, [noun](const Options& o, const v1::Deleted& d) {
    PrintDone(o, noun + " \"" + d.name() + "\" deleted", d);
  });
}

// The options every command shares (set by the registry's flags).
Options& GlobalOptions();

// Every command of every noun file, in the registry's order.
std::vector<Command> AllCommands();
// The verbs, in the order --help lists them.
std::vector<std::string> Verbs();

// The whole of stratactl's main().
int Main(int argc, char** argv);
// The bash completion script for every registered command.
std::string CompletionScript();

}  // namespace strata::ctl
