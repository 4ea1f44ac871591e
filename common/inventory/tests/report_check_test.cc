#include "common/inventory/report_check.h"
#include "catch2/catch.hpp"

namespace strata::inventory {
namespace {

v1::ClientReport FullInventory() {
  v1::ClientReport r;
  r.set_seq(1);
  auto* inv = r.mutable_inventory();
  inv->set_inventory_seq(1);
  inv->set_full(true);
  inv->mutable_hardware()->mutable_os()->set_name("Debian GNU/Linux");
  auto* sw = inv->add_software();
  sw->set_name("openssl");
  sw->set_version("3.0.11-1");
  sw->set_architecture("amd64");
  return r;
}

TEST_CASE("a well-formed full inventory passes") { CHECK(CheckReport(FullInventory()).ok()); }

TEST_CASE("malformed inventory is refused with the field named") {
  struct Case {
    const char* what;
    std::function<void(v1::ClientReport&)> mutate;
    const char* field;
  };
  const std::vector<Case> cases = {
      {"bad UTF-8", [](auto& r) { r.mutable_inventory()->mutable_software(0)->set_name("a\xC3("); },
       "software.name"},
      {"overlong UTF-8",
       [](auto& r) { r.mutable_inventory()->mutable_software(0)->set_name("\xC0\xAF"); },
       "software.name"},
      {"NUL byte",
       [](auto& r) {
         r.mutable_inventory()->mutable_software(0)->set_version(std::string("1\0", 2));
       },
       "software.version"},
      {"absurd count",
       [](auto& r) {
         for (int i = 0; i < 1100; ++i) r.mutable_inventory()->mutable_hardware()->add_disks();
       },
       "disks"},
      {"negative size",
       [](auto& r) {
         auto* d = r.mutable_inventory()->mutable_hardware()->add_disks();
         d->set_name("sda");
         d->set_size_bytes(-5);
       },
       "disk.size_bytes"},
      {"negative memory",
       [](auto& r) {
         r.mutable_inventory()->mutable_hardware()->mutable_system()->set_memory_total_kb(-1);
       },
       "system.memory_total_kb"},
      {"duplicate package",
       [](auto& r) { *r.mutable_inventory()->add_software() = r.inventory().software(0); },
       "listed twice"},
      {"full without hardware", [](auto& r) { r.mutable_inventory()->clear_hardware(); },
       "inventory.hardware"},
      {"delta with a bad base",
       [](auto& r) {
         r.mutable_inventory()->set_full(false);
         r.mutable_inventory()->set_base_seq(3);
       },
       "base_seq"},
      {"no sequence", [](auto& r) { r.set_seq(0); }, "seq"},
      {"no body", [](auto& r) { r.clear_inventory(); }, "body"},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    v1::ClientReport r = FullInventory();
    c.mutate(r);
    absl::Status s = CheckReport(r);
    CHECK(s.code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(s.message()), Catch::Contains(c.field));
  }
}

TEST_CASE("too many packages are refused") {
  v1::ClientReport r = FullInventory();
  Limits limits;
  limits.max_software = 10;
  for (int i = 0; i < 10; ++i) {
    auto* sw = r.mutable_inventory()->add_software();
    sw->set_name("p" + std::to_string(i));
    sw->set_version("1");
  }
  CHECK(CheckReport(r, limits).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("UUIDs are recognized in canonical form only") {
  CHECK(IsUuid("0f8fad5b-d9cb-469f-a165-70867728950e"));
  CHECK_FALSE(IsUuid("0f8fad5b-d9cb-469f-a165-70867728950"));
  CHECK_FALSE(IsUuid("0f8fad5bxd9cb-469f-a165-70867728950e"));
  CHECK_FALSE(IsUuid("'; drop table devices; --'"));
}

}  // namespace
}  // namespace strata::inventory
