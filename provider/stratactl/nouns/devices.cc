// stratactl get devices, describe device NAME|ID

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "provider/stratactl/command.h"
#include "provider/stratactl/nouns/devices.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/devices.grpc.pb.h"

namespace strata::ctl {

Table DeviceTable(const v1::DeviceList& l) {
  Table t{{"NAME", "SITE", "ACTIVE", "OS", "MEMORY_MB", "SOFTWARE", "LAST_HEARTBEAT", "ID"}, {}};
  for (const auto& d : l.devices()) {
    t.rows.push_back({d.name(), d.site_code(), Bool(d.active()), d.os(),
                      absl::StrCat(d.memory_mb()), absl::StrCat(d.software_count()),
                      d.last_heartbeat_at(), d.id()});
  }
  return t;
}

namespace {

void ShowDevice(const Options& o, const v1::DeviceDetail& d) {
  const auto& hw = d.hardware();
  std::vector<std::vector<std::string>> fields{
      {"name", d.device().name()},
      {"id", d.device().id()},
      {"site", d.device().site_code()},
      {"approval", d.approval()},
      {"active", Bool(d.device().active())},
      {"last heartbeat", d.device().last_heartbeat_at()},
      {"last inventory", d.device().last_inventory_at()},
      {"os", hw.os().pretty_name()},
      {"os id", absl::StrCat(hw.os().id(), " ", hw.os().version())},
      {"kernel", hw.os().kernel()},
      {"architecture", hw.os().architecture()},
      {"system", absl::StrCat(hw.system().vendor(), " ", hw.system().product())},
      {"virtualization", hw.system().virtualization()},
      {"memory", absl::StrCat(hw.system().memory_total_kb() / 1024, " MB")},
      {"ip addresses", absl::StrJoin(d.device().ip_addresses(), " ")},
      {"collections", absl::StrJoin(d.collections(), ", ")},
      {"client settings", d.client_settings().empty() ? std::string("Default Client Settings only")
                                                      : absl::StrJoin(d.client_settings(), ", ")},
      {"policy poll", Duration(d.resultant_settings().policy_poll_seconds())},
      {"inventory every", Duration(d.resultant_settings().inventory_seconds())},
      {"heartbeat every", Duration(d.resultant_settings().heartbeat_seconds())},
      {"splay", Duration(d.resultant_settings().splay_seconds())},
      {"software", absl::StrCat(d.software_size(), " packages")}};
  for (const auto& p : hw.processors()) {
    fields.push_back({"processor", absl::StrCat(p.model(), " (", p.cores(), " cores, ", p.threads(),
                                                " threads)")});
  }
  for (const auto& k : hw.disks()) {
    fields.push_back({k.is_filesystem() ? "filesystem" : "disk",
                      absl::StrCat(k.name(), " ", k.fs_type(), " ", k.size_bytes() >> 30, " GB, ",
                                   k.free_bytes() >> 30, " GB free")});
  }
  for (const auto& a : hw.adapters()) {
    fields.push_back(
        {"network", absl::StrCat(a.name(), " ", a.mac(), " ", absl::StrJoin(a.ipv4(), " "))});
  }
  Describe(o, d, fields);
}

}  // namespace

std::vector<Command> DeviceCommands() {
  return {
      {"get",
       "devices",
       {"device"},
       "Devices, filtered by a query (--filter)",
       [](CLI::App*) -> Action {
         return [](Client& c) {
           v1::DeviceList l;
           if (int rc = c.ListAll(&v1::DeviceService::Stub::ListDevices, &l)) {
             PointAt(c.last_error(), {c.options().filter});
             return rc;
           }
           Show(c.options(), l, l.next_page_token(), DeviceTable(l));
           return kOk;
         };
       }},
      {"describe",
       "device",
       {},
       "One device: inventory, collections, resultant client settings",
       OnName(&v1::DeviceService::Stub::GetDevice,
              std::function<void(const Options&, const v1::DeviceDetail&)>(ShowDevice),
              "Its name or id"),
       "get devices --all"},
  };
}

}  // namespace strata::ctl
