#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "agent/collectors.h"
#include "catch2/catch.hpp"

namespace strata::agent {
namespace {

std::string Run(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  char buf[4096];
  while (p && fgets(buf, sizeof buf, p)) out += buf;
  if (p) pclose(p);
  return out;
}

TEST_CASE("collectors read this machine: memory, adapters and packages match the system") {
  std::vector<std::string> errors;
  v1::InventoryReport inv = CollectInventory(CollectorContext{}, &errors);
  INFO(absl::StrJoin(errors, "; "));
  const auto& hw = inv.hardware();
  CHECK(!hw.os().name().empty());
  CHECK(!hw.os().kernel().empty());
  REQUIRE(hw.processors_size() == 1);
  CHECK(hw.processors(0).threads() >= 1);

  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  meminfo >> key >> kb;
  CHECK(key == "MemTotal:");
  CHECK(hw.system().memory_total_kb() == kb);

  std::set<std::string> nics;
  std::vector<std::string> names =
      absl::StrSplit(Run("ls /sys/class/net"), '\n', absl::SkipEmpty());
  nics.insert(names.begin(), names.end());
  std::set<std::string> reported;
  for (const auto& a : hw.adapters()) reported.insert(a.name());
  CHECK(reported == nics);

  std::set<std::string> dpkg;
  std::vector<std::string> lines = absl::StrSplit(
      Run("dpkg-query -W -f='${db:Status-Abbrev} ${Package} ${Version}\\n' | awk '$1==\"ii\" "
          "{print $2\" \"$3}'"),
      '\n', absl::SkipEmpty());
  dpkg.insert(lines.begin(), lines.end());
  std::set<std::string> packages;
  for (const auto& s : inv.software()) packages.insert(s.name() + " " + s.version());
  CHECK(dpkg.size() > 50);
  CHECK(packages == dpkg);
}

TEST_CASE("every collector has a name and a description") {
  std::set<std::string> names;
  for (const auto& c : Collectors()) {
    CHECK(std::string(c.description).size() > 10);
    CHECK(names.insert(c.name).second);
  }
  CHECK(names.count("dpkg"));
}

}  // namespace
}  // namespace strata::agent
