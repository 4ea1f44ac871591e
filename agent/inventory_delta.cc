#include "agent/inventory_delta.h"

#include <map>
#include <set>

#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace strata::agent {
namespace {

std::string SoftwareKey(const v1::SoftwareItem& s) { return s.name() + "\t" + s.architecture(); }

std::string Deterministic(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::io::StringOutputStream stream(&out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  m.SerializeToCodedStream(&coded);
  return out;
}

}  // namespace

std::string HardwareFingerprint(v1::HardwareInventory hw) {
  hw.mutable_system()->clear_uptime_s();
  hw.mutable_system()->clear_boot_time_unix();
  for (auto& d : *hw.mutable_disks()) d.clear_free_bytes();
  return Deterministic(hw);
}

v1::InventoryReport InventoryReportFor(const v1::InventoryReport* base,
                                       const v1::InventoryReport& current, bool full, int64_t seq) {
  v1::InventoryReport out;
  if (full || base == nullptr) {
    out = current;
    out.set_full(true);
  } else {
    out.set_full(false);
    out.set_base_seq(base->inventory_seq());
    std::map<std::string, const v1::SoftwareItem*> before;
    for (const auto& s : base->software()) before[SoftwareKey(s)] = &s;
    std::set<std::string> now;
    for (const auto& s : current.software()) {
      now.insert(SoftwareKey(s));
      auto it = before.find(SoftwareKey(s));
      if (it == before.end() || Deterministic(*it->second) != Deterministic(s)) {
        *out.add_software() = s;
      }
    }
    for (const auto& [key, s] : before) {
      if (!now.count(key)) {
        auto* r = out.add_software_removed();
        r->set_name(s->name());
        r->set_architecture(s->architecture());
      }
    }
    if (HardwareFingerprint(base->hardware()) != HardwareFingerprint(current.hardware())) {
      *out.mutable_hardware() = current.hardware();
    }
  }
  out.set_inventory_seq(seq);
  return out;
}

}  // namespace strata::agent
