#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
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

// rpm is not on this Debian machine: a stand-in prints what `rpm -qa --qf`
// prints on an RPM system, and only when asked with those arguments.
TEST_CASE("the rpm collector reads rpm -qa; a package dpkg also lists is not doubled") {
  char dir_tmpl[] = "/tmp/strata-rpm-XXXXXX";
  REQUIRE(mkdtemp(dir_tmpl) != nullptr);
  const std::string dir = dir_tmpl;
  const std::string rpm = dir + "/rpm";
  {
    std::ofstream f(rpm);
    f << "#!/bin/sh\n"
         "[ \"$1\" = -qa ] && [ \"$2\" = --qf ] || exit 1\n"
         "printf 'bash\\t5.1.8-6.el9\\tx86_64\\t1700000000\\n'\n"
         "printf 'tzdata\\t2024a-1.el9\\tnoarch\\t1700000100\\n'\n"
         "printf 'malformed line\\n'\n"
         "printf 'kernel-core\\t5.14.0-362.el9\\tx86_64\\tnot-a-time\\n'\n";
  }
  REQUIRE(chmod(rpm.c_str(), 0755) == 0);
  CollectorContext ctx;
  ctx.rpm_command = rpm;
  v1::InventoryReport inv;
  auto* from_dpkg = inv.add_software();  // as if dpkg had listed it first
  from_dpkg->set_name("bash");
  from_dpkg->set_architecture("x86_64");
  from_dpkg->set_source("dpkg");
  const Collector* collector = nullptr;
  for (const auto& c : Collectors()) {
    if (std::string(c.name) == "rpm") collector = &c;
  }
  REQUIRE(collector != nullptr);
  REQUIRE(collector->collect(ctx, &inv).ok());
  std::vector<std::string> got;
  for (const auto& sw : inv.software()) {
    got.push_back(absl::StrCat(sw.source(), " ", sw.name(), " ", sw.version(), " ",
                               sw.architecture(), " ", sw.install_time_unix()));
  }
  CHECK(got == std::vector<std::string>{"dpkg bash  x86_64 0",
                                        "rpm tzdata 2024a-1.el9 noarch 1700000100",
                                        "rpm kernel-core 5.14.0-362.el9 x86_64 0"});
  // "none" turns it off; a missing command is no error.
  ctx.rpm_command = "none";
  v1::InventoryReport none;
  REQUIRE(collector->collect(ctx, &none).ok());
  CHECK(none.software_size() == 0);
  ctx.rpm_command = dir + "/absent";
  REQUIRE(collector->collect(ctx, &none).ok());
  CHECK(none.software_size() == 0);
  std::remove(rpm.c_str());
  rmdir(dir.c_str());
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
