// The agent's inventory report: full, or a delta against what the site holds.

#include <catch2/catch.hpp>

#include "agent/inventory_delta.h"

namespace strata::agent {
namespace {

v1::SoftwareItem Package(const std::string& name, const std::string& version,
                         const std::string& arch = "amd64") {
  v1::SoftwareItem s;
  s.set_name(name);
  s.set_version(version);
  s.set_architecture(arch);
  s.set_source("dpkg");
  return s;
}

v1::InventoryReport Inventory(std::vector<v1::SoftwareItem> software, int64_t seq = 0) {
  v1::InventoryReport inv;
  inv.mutable_hardware()->mutable_os()->set_name("Debian GNU/Linux");
  inv.mutable_hardware()->mutable_system()->set_uptime_s(100);
  auto* d = inv.mutable_hardware()->add_disks();
  d->set_name("/");
  d->set_size_bytes(1000);
  d->set_free_bytes(500);
  for (auto& s : software) *inv.add_software() = s;
  inv.set_inventory_seq(seq);
  return inv;
}

std::vector<std::string> Names(const google::protobuf::RepeatedPtrField<v1::SoftwareItem>& l) {
  std::vector<std::string> out;
  for (const auto& s : l) out.push_back(s.name() + "=" + s.version() + ":" + s.architecture());
  return out;
}

}  // namespace

TEST_CASE("without a base, or when asked, the report is the whole inventory") {
  v1::InventoryReport now = Inventory({Package("bash", "5.2"), Package("curl", "7.88")});
  v1::InventoryReport first = InventoryReportFor(nullptr, now, false, 7);
  CHECK(first.full());
  CHECK(first.inventory_seq() == 7);
  CHECK(Names(first.software()) == std::vector<std::string>{"bash=5.2:amd64", "curl=7.88:amd64"});
  v1::InventoryReport base = Inventory({Package("bash", "5.2")}, 3);
  v1::InventoryReport asked = InventoryReportFor(&base, now, /*full=*/true, 8);
  CHECK(asked.full());
  CHECK(asked.software_size() == 2);
}

TEST_CASE("a delta carries added and changed software, removals by name and architecture") {
  v1::InventoryReport base = Inventory({Package("bash", "5.2"), Package("curl", "7.88"),
                                        Package("libc6", "2.36"), Package("libc6", "2.36", "i386")},
                                       41);
  v1::InventoryReport now = Inventory({Package("bash", "5.2"), Package("curl", "7.88.1"),
                                       Package("libc6", "2.36"), Package("vim", "9.0")});
  v1::InventoryReport delta = InventoryReportFor(&base, now, false, 42);
  CHECK_FALSE(delta.full());
  CHECK(delta.base_seq() == 41);
  CHECK(delta.inventory_seq() == 42);
  CHECK(Names(delta.software()) == std::vector<std::string>{"curl=7.88.1:amd64", "vim=9.0:amd64"});
  REQUIRE(delta.software_removed_size() == 1);
  CHECK(delta.software_removed(0).name() == "libc6");
  CHECK(delta.software_removed(0).architecture() == "i386");
  CHECK_FALSE(delta.has_hardware());  // nothing changed there
}

TEST_CASE("hardware goes in a delta only when it changed, not for uptime or free space") {
  v1::InventoryReport base = Inventory({}, 1);
  v1::InventoryReport now = Inventory({});
  now.mutable_hardware()->mutable_system()->set_uptime_s(99999);
  now.mutable_hardware()->mutable_disks(0)->set_free_bytes(1);
  CHECK(HardwareFingerprint(base.hardware()) == HardwareFingerprint(now.hardware()));
  CHECK_FALSE(InventoryReportFor(&base, now, false, 2).has_hardware());
  now.mutable_hardware()->mutable_disks(0)->set_size_bytes(2000);  // a bigger disk
  v1::InventoryReport delta = InventoryReportFor(&base, now, false, 2);
  REQUIRE(delta.has_hardware());
  CHECK(delta.hardware().disks(0).size_bytes() == 2000);
}

}  // namespace strata::agent
