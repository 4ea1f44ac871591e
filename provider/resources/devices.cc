// Devices and their inventory (proto/strata/v1/admin/devices.proto).

#include "provider/resources/devices.h"

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/collections/client_settings.h"
#include "common/collections/query.h"
#include "common/policy/client_settings.h"
#include "provider/listing.h"
#include "provider/rbac.h"
#include "provider/resource.h"
#include "strata/v1/admin/devices.grpc.pb.h"

namespace strata::provider {

std::string ApprovalState(const std::string& d) {
  return absl::StrCat("strata_client_state(", d, ".id, ", d, ".approved, ", d, ".revoked)");
}

namespace {

constexpr Permission kRead{"device.read", "List devices and read their inventory"};
constexpr Permission kDelete{"device.delete", "Delete device records"};

class DeviceServiceImpl final : public v1::DeviceService::Service {
 public:
  explicit DeviceServiceImpl(CallCore& core) : core_(core) {}

  grpc::Status ListDevices(grpc::ServerContext* ctx, const v1::ListRequest* req,
                           v1::DeviceList* out) override {
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) {
      out->Clear();
      return ListDeviceRows(call, *req, "", out);
    });
  }

  grpc::Status GetDevice(grpc::ServerContext* ctx, const v1::GetRequest* req,
                         v1::DeviceDetail* out) override {
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) -> absl::Status {
      out->Clear();
      ASSIGN_OR_RETURN(std::string id, ResolveDevice(call.tx, call.caller, req->name()));
      v1::DeviceList one;
      RETURN_IF_ERROR(ListDeviceRows(call, v1::ListRequest(), id, &one));
      if (one.devices_size() == 0) return absl::NotFoundError("device " + req->name());
      *out->mutable_device() = one.devices(0);
      return Inventory(call, id, out);
    });
  }

 private:
  static absl::Status Inventory(Call& call, const std::string& id, v1::DeviceDetail* out) {
    Transaction& tx = call.tx;
    auto* hw = out->mutable_hardware();
    ASSIGN_OR_RETURN(Result os, tx.Exec("SELECT name, version, pretty_name, kernel, architecture, "
                                        "hostname, os_id FROM device_os WHERE device_id = $1",
                                        {id}));
    if (!os.empty()) {
      auto* o = hw->mutable_os();
      o->set_name(os.GetString(0, 0));
      o->set_version(os.GetString(0, 1));
      o->set_pretty_name(os.GetString(0, 2));
      o->set_kernel(os.GetString(0, 3));
      o->set_architecture(os.GetString(0, 4));
      o->set_hostname(os.GetString(0, 5));
      o->set_id(os.GetString(0, 6));
    }
    ASSIGN_OR_RETURN(
        Result sys,
        tx.Exec("SELECT s.vendor, s.product, s.serial, s.bios_vendor, s.bios_version, "
                "s.bios_date, s.virtualization, s.uptime_s, coalesce(extract(epoch FROM "
                "s.boot_time)::bigint, 0), coalesce(m.total_kb, 0), coalesce(m.swap_kb, 0) FROM "
                "devices d LEFT JOIN device_system s ON s.device_id = d.id LEFT JOIN "
                "device_memory m ON m.device_id = d.id WHERE d.id = $1 AND s.device_id IS NOT "
                "NULL",
                {id}));
    if (!sys.empty()) {
      auto* s = hw->mutable_system();
      s->set_vendor(sys.GetString(0, 0));
      s->set_product(sys.GetString(0, 1));
      s->set_serial(sys.GetString(0, 2));
      s->set_bios_vendor(sys.GetString(0, 3));
      s->set_bios_version(sys.GetString(0, 4));
      s->set_bios_date(sys.GetString(0, 5));
      s->set_virtualization(sys.GetString(0, 6));
      s->set_uptime_s(sys.GetInt(0, 7));
      s->set_boot_time_unix(sys.GetInt(0, 8));
      s->set_memory_total_kb(sys.GetInt(0, 9));
      s->set_swap_total_kb(sys.GetInt(0, 10));
    }
    ASSIGN_OR_RETURN(Result cpu, tx.Exec("SELECT model, sockets, cores, threads FROM "
                                         "device_processor WHERE device_id = $1 ORDER BY idx",
                                         {id}));
    for (size_t i = 0; i < cpu.size(); ++i) {
      auto* p = hw->add_processors();
      p->set_model(cpu.GetString(i, 0));
      p->set_sockets(cpu.GetInt(i, 1));
      p->set_cores(cpu.GetInt(i, 2));
      p->set_threads(cpu.GetInt(i, 3));
    }
    ASSIGN_OR_RETURN(Result disks, tx.Exec("SELECT name, is_filesystem, model, fs_type, "
                                           "size_bytes, free_bytes FROM device_disk WHERE "
                                           "device_id = $1 ORDER BY name",
                                           {id}));
    for (size_t i = 0; i < disks.size(); ++i) {
      auto* d = hw->add_disks();
      d->set_name(disks.GetString(i, 0));
      d->set_is_filesystem(disks.GetBool(i, 1));
      d->set_model(disks.GetString(i, 2));
      d->set_fs_type(disks.GetString(i, 3));
      d->set_size_bytes(disks.GetInt(i, 4));
      d->set_free_bytes(disks.GetInt(i, 5));
    }
    ASSIGN_OR_RETURN(Result nics, tx.Exec("SELECT name, mac, ipv4::text, ipv6::text, speed_mbps "
                                          "FROM device_network WHERE device_id = $1 ORDER BY "
                                          "name",
                                          {id}));
    for (size_t i = 0; i < nics.size(); ++i) {
      auto* a = hw->add_adapters();
      a->set_name(nics.GetString(i, 0));
      a->set_mac(nics.GetString(i, 1));
      for (const auto& ip : store::ParseTextArray(nics.GetString(i, 2))) a->add_ipv4(ip);
      for (const auto& ip : store::ParseTextArray(nics.GetString(i, 3))) a->add_ipv6(ip);
      a->set_speed_mbps(nics.GetInt(i, 4));
    }
    ASSIGN_OR_RETURN(Result sw, tx.Exec("SELECT name, version, architecture, source, "
                                        "coalesce(extract(epoch FROM installed_at)::bigint, 0) "
                                        "FROM device_software WHERE device_id = $1 ORDER BY name, "
                                        "architecture",
                                        {id}));
    for (size_t i = 0; i < sw.size(); ++i) {
      auto* s = out->add_software();
      s->set_name(sw.GetString(i, 0));
      s->set_version(sw.GetString(i, 1));
      s->set_architecture(sw.GetString(i, 2));
      s->set_source(sw.GetString(i, 3));
      s->set_install_time_unix(sw.GetInt(i, 4));
    }
    store::Params params{id};
    std::string visible = VisibleByScope(call.caller, "c", params);
    ASSIGN_OR_RETURN(Result colls,
                     tx.Exec(absl::StrCat("SELECT m.collection FROM collection_members m JOIN "
                                          "collections c ON c.name = m.collection WHERE "
                                          "m.device_id = $1 AND ",
                                          visible, " ORDER BY 1"),
                             params));
    for (size_t i = 0; i < colls.size(); ++i) out->add_collections(colls.GetString(i, 0));
    ASSIGN_OR_RETURN(Result approval, tx.Exec(absl::StrCat("SELECT ", ApprovalState("d"),
                                                           " FROM devices d WHERE d.id = $1"),
                                              {id}));
    if (!approval.empty()) out->set_approval(approval.GetString(0, 0));
    // Resultant client settings, as its management point merges them.
    if (!call.caller.Has("settings.read")) return absl::OkStatus();
    ASSIGN_OR_RETURN(auto assigned, collections::LoadAssignments(tx, {id}));
    const std::vector<std::string>& names = assigned[id].settings;
    v1::SiteBundle settings;
    RETURN_IF_ERROR(collections::LoadClientSettings(tx, &settings));
    for (const auto& n : names) out->add_client_settings(n);
    *out->mutable_resultant_settings() = policy::EffectiveSettings(settings, names);
    return absl::OkStatus();
  }

  CallCore& core_;
};

}  // namespace

absl::Status ListDeviceRows(Call& call, const v1::ListRequest& req, const std::string& only_id,
                            v1::DeviceList* out, const std::string& member_of) {
  ASSIGN_OR_RETURN(Page page, ParsePage(req,
                                        {{"name", "d.name"},
                                         {"site", "d.site_code"},
                                         {"last_heartbeat", "d.last_heartbeat_at"},
                                         {"last_inventory", "d.last_inventory_at"},
                                         {"memory_mb", "memory_mb"},
                                         {"software_count", "software_count"}},
                                        "d.name, d.id"));
  store::Params params;
  std::string where = VisibleDevice(call.caller, "d", params);
  if (!only_id.empty()) {
    params.emplace_back(only_id);
    absl::StrAppend(&where, " AND d.id = $", params.size(), "::uuid");
  }
  if (!member_of.empty()) {
    params.emplace_back(member_of);
    absl::StrAppend(&where,
                    " AND EXISTS (SELECT 1 FROM collection_members mo WHERE "
                    "mo.device_id = d.id AND mo.collection = $",
                    params.size(), ")");
  }
  if (!req.filter().empty()) {
    ASSIGN_OR_RETURN(collections::CompiledQuery q,
                     collections::CompileQuery(req.filter(), params.size() + 1));
    for (auto& p : q.params) params.emplace_back(std::move(p));
    absl::StrAppend(&where, " AND (", q.sql, ")");
  }
  std::string sql = absl::StrCat(
      "SELECT d.id::text, d.name, d.site_code, d.active, ", Ts("d.last_heartbeat_at"), ", ",
      Ts("d.last_inventory_at"),
      ", coalesce(o.pretty_name, ''), coalesce(m.total_kb / 1024, 0) AS memory_mb, "
      "(SELECT count(*) FROM device_software s WHERE s.device_id = d.id) AS software_count, "
      "d.ip_addresses::text FROM devices d LEFT JOIN device_os o ON o.device_id = d.id LEFT "
      "JOIN device_memory m ON m.device_id = d.id WHERE ",
      where);
  ASSIGN_OR_RETURN(Result r, call.tx.Exec(Paged(sql, page), params));
  for (size_t i = 0, n = TrimPage(r, page, out); i < n; ++i) {
    auto* d = out->add_devices();
    d->set_id(r.GetString(i, 0));
    d->set_name(r.GetString(i, 1));
    d->set_site_code(r.GetString(i, 2));
    d->set_active(r.GetBool(i, 3));
    d->set_last_heartbeat_at(r.GetString(i, 4));
    d->set_last_inventory_at(r.GetString(i, 5));
    d->set_os(r.GetString(i, 6));
    d->set_memory_mb(r.GetInt(i, 7));
    d->set_software_count(r.GetInt(i, 8));
    for (const auto& ip : store::ParseTextArray(r.GetString(i, 9))) d->add_ip_addresses(ip);
  }
  return absl::OkStatus();
}

Resource DevicesResource() {
  return {"devices", {kRead, kDelete}, [](const ResourceContext& c) {
            return std::make_unique<DeviceServiceImpl>(*c.core);
          }};
}

}  // namespace strata::provider
