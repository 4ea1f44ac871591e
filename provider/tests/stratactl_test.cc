// stratactl's registry: every command is reachable, listed in --help and
// completed by the bash script generated from the same table.

#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "provider/stratactl/command.h"

namespace strata::ctl {
namespace {

// Runs stratactl's main with `args`, capturing standard output.
int RunCtl(std::vector<std::string> args, std::string* out = nullptr) {
  args.insert(args.begin(), "stratactl");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  std::stringstream captured;
  std::streambuf* old = std::cout.rdbuf(captured.rdbuf());
  int rc = Main(static_cast<int>(argv.size()), argv.data());
  std::cout.rdbuf(old);
  if (out) *out = captured.str();
  return rc;
}

}  // namespace

TEST_CASE("every command belongs to a known verb, and no verb has one word twice") {
  const std::vector<std::string> verbs = Verbs();
  std::set<std::string> seen;
  for (const Command& c : AllCommands()) {
    INFO(c.verb << " " << c.word);
    CHECK(std::count(verbs.begin(), verbs.end(), c.verb) == 1);
    CHECK(c.help.size() > 5);
    CHECK(seen.insert(c.verb + " " + c.word).second);
    for (const auto& a : c.aliases) CHECK(seen.insert(c.verb + " " + a).second);
  }
  CHECK(seen.count("get devices"));
  CHECK(seen.count("create enrollment-token"));
  CHECK(seen.count("block device"));
  CHECK(seen.count("get site-systems"));
}

TEST_CASE("--help lists every verb and each verb's resources; listing flags sit on get") {
  std::string out;
  CHECK(RunCtl({"--help"}, &out) == 0);
  for (const auto& v : Verbs()) CHECK(out.find("  " + v + " ") != std::string::npos);
  CHECK(RunCtl({"get", "--help"}, &out) == 0);
  CHECK(out.find("--filter") != std::string::npos);
  for (const Command& c : AllCommands()) {
    if (c.verb == "get") CHECK(out.find(c.word) != std::string::npos);
  }
  CHECK(RunCtl({"create", "enrollment-token", "--help"}, &out) == 0);
  CHECK(out.find("--max-uses") != std::string::npos);
  // Usage errors exit 2, before any connection.
  CHECK(RunCtl({"get", "nonsense"}) == 2);
  CHECK(RunCtl({"frobnicate"}) == 2);
  CHECK(RunCtl({"get"}) == 2);
  CHECK(RunCtl({"describe", "device"}) == 2);  // its name is required
}

TEST_CASE("the completion script is valid bash and completes every command and its flags") {
  std::string script;
  CHECK(RunCtl({"completion", "bash"}, &script) == 0);
  CHECK(script == CompletionScript());
  for (const Command& c : AllCommands()) {
    INFO(c.verb << " " << c.word);
    CHECK(script.find(c.verb) != std::string::npos);
    if (!c.word.empty())
      CHECK(script.find("\"" + c.verb + " " + c.word + "\")") != std::string::npos);
  }
  CHECK(script.find("--max-uses") != std::string::npos);
  char path[] = "/tmp/strata-completion-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(write(fd, script.data(), script.size()) == static_cast<ssize_t>(script.size()));
  close(fd);
  CHECK(std::system(("bash -n " + std::string(path)).c_str()) == 0);
  // And it completes: the words of a verb, the flags of a command.
  auto complete = [&](const std::string& line) {
    std::string cmd = "bash -c 'source " + std::string(path) + "; COMP_WORDS=(" + line +
                      "); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); "
                      "_stratactl; printf \"%s\\n\" \"${COMPREPLY[@]}\"'";
    std::string out;
    FILE* p = popen(cmd.c_str(), "r");
    char buf[4096];
    while (p && fgets(buf, sizeof buf, p)) out += buf;
    if (p) pclose(p);
    return out;
  };
  CHECK(complete("stratactl get enr").find("enrollment-tokens") != std::string::npos);
  CHECK(complete("stratactl create enrollment-token x --max").find("--max-uses") !=
        std::string::npos);
  CHECK(complete("stratactl bl").find("block") != std::string::npos);
  std::remove(path);
}

}  // namespace strata::ctl
