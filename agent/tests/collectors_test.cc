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

const Collector& Named(const std::string& name) {
  for (const auto& c : Collectors()) {
    if (c.name == name) return c;
  }
  FAIL("no collector " << name);
  return Collectors().front();
}

TEST_CASE("the os collector stores the os-release ID and VERSION_ID as fields of their own") {
  char dir_tmpl[] = "/tmp/strata-os-XXXXXX";
  REQUIRE(mkdtemp(dir_tmpl) != nullptr);
  const std::string root = dir_tmpl;
  REQUIRE(mkdir((root + "/etc").c_str(), 0755) == 0);
  {
    std::ofstream f(root + "/etc/os-release");
    f << "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n"
         "VERSION_ID=\"12\"\nID=debian\n";
  }
  CollectorContext ctx;
  ctx.root = root;
  v1::InventoryReport inv;
  REQUIRE(Named("os").collect(ctx, &inv).ok());
  CHECK(inv.hardware().os().id() == "debian");
  CHECK(inv.hardware().os().version() == "12");
  CHECK(inv.hardware().os().name() == "Debian GNU/Linux");
  // And on this machine, what /etc/os-release says.
  v1::InventoryReport here;
  REQUIRE(Named("os").collect(CollectorContext{}, &here).ok());
  std::string id = Run(". /etc/os-release; printf %s \"$ID\"");
  CHECK(!id.empty());
  CHECK(here.hardware().os().id() == id);
  std::remove((root + "/etc/os-release").c_str());
  rmdir((root + "/etc").c_str());
  rmdir(root.c_str());
}

TEST_CASE("mount points are read as the kernel escapes them: a space is \\040") {
  CHECK(UnescapeMountField("/mnt/My\\040Disk") == "/mnt/My Disk");
  CHECK(UnescapeMountField("/a\\011b\\012c\\134d") == "/a\tb\nc\\d");
  CHECK(UnescapeMountField("/plain") == "/plain");
  CHECK(UnescapeMountField("/odd\\04") == "/odd\\04");  // cut short: kept as is
  // The disk collector lists a filesystem mounted at a path with a space
  // (a mount table of its own, naming a real directory to measure).
  char dir_tmpl[] = "/tmp/strata-mounts-XXXXXX";
  REQUIRE(mkdtemp(dir_tmpl) != nullptr);
  const std::string root = dir_tmpl;
  const std::string spaced = root + "/data disk";
  REQUIRE(mkdir(spaced.c_str(), 0755) == 0);
  REQUIRE(mkdir((root + "/proc").c_str(), 0755) == 0);
  {
    std::ofstream f(root + "/proc/mounts");
    f << "/dev/sdz1 " << root << "/data\\040disk ext4 rw,relatime 0 0\n";
  }
  CollectorContext ctx;
  ctx.root = root;
  v1::InventoryReport inv;
  REQUIRE(Named("disk").collect(ctx, &inv).ok());
  std::vector<std::string> filesystems;
  for (const auto& d : inv.hardware().disks()) {
    if (d.is_filesystem()) filesystems.push_back(d.mount_point());
  }
  CHECK(filesystems == std::vector<std::string>{spaced});
  std::remove((root + "/proc/mounts").c_str());
  rmdir((root + "/proc").c_str());
  rmdir(spaced.c_str());
  rmdir(root.c_str());
}

TEST_CASE("an IPv4 address on a labelled alias belongs to its adapter") {
  CHECK(AdapterOfInterface("eth0:x") == "eth0");
  CHECK(AdapterOfInterface("eth0") == "eth0");
  // For real: an adapter with a labelled alias in a network namespace of
  // its own (root, iproute2), inventoried there by the real agent.
  if (getuid() != 0 || Run("command -v ip").empty()) {
    WARN("not root or no iproute2: the namespace check did not run");
    return;
  }
  const std::string ns = absl::StrCat("strata-alias-", getpid());
  REQUIRE(Run(absl::StrCat("ip netns add ", ns, " && ip -n ", ns,
                           " link add d0 type veth peer name d1 && ip -n ", ns,
                           " addr add 10.250.1.2/24 dev d0 && ip -n ", ns,
                           " addr add 10.250.2.3/24 dev d0 label d0:x && ip -n ", ns,
                           " link set d0 up && echo ok 2>&1")) == "ok\n");
  std::string out = Run(absl::StrCat("ip netns exec ", ns, " ", STRATA_BINARY_DIR,
                                     "/agent/strata-agent inventory 2>&1"));
  Run(absl::StrCat("ip netns delete ", ns));
  INFO(out);
  CHECK(out.find("10.250.1.2/24") != std::string::npos);
  CHECK(out.find("10.250.2.3/24") != std::string::npos);  // the alias: missing before
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
