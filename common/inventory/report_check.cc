#include "common/inventory/report_check.h"

#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/base/status.h"

namespace strata::inventory {
namespace {

absl::Status Bad(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

class Checker {
 public:
  explicit Checker(const Limits& limits) : limits_(limits) {}

  absl::Status Text(absl::string_view field, const std::string& value, size_t max = 0) const {
    if (value.size() > (max ? max : limits_.max_string)) {
      return Bad(field, absl::StrCat("longer than ", max ? max : limits_.max_string, " bytes"));
    }
    if (!IsCleanText(value)) return Bad(field, "not valid UTF-8 text (or contains NUL)");
    return absl::OkStatus();
  }

  absl::Status Count(absl::string_view field, int n, int max) const {
    if (n > max) return Bad(field, absl::StrCat(n, " entries; at most ", max, " are accepted"));
    return absl::OkStatus();
  }

  static absl::Status NonNegative(absl::string_view field, int64_t v) {
    if (v < 0) return Bad(field, absl::StrCat("negative (", v, ")"));
    return absl::OkStatus();
  }

  absl::Status Hardware(const v1::HardwareInventory& hw) const {
    const auto& os = hw.os();
    for (auto [f, v] : {std::pair{"os.name", &os.name()},
                        {"os.version", &os.version()},
                        {"os.pretty_name", &os.pretty_name()},
                        {"os.kernel", &os.kernel()},
                        {"os.architecture", &os.architecture()},
                        {"os.hostname", &os.hostname()},
                        {"os.id", &os.id()}}) {
      if (auto s = Text(f, *v, 255); !s.ok()) return s;
    }
    if (auto s = Count("processors", hw.processors_size(), limits_.max_hardware_items); !s.ok())
      return s;
    for (const auto& p : hw.processors()) {
      if (auto s = Text("processor.model", p.model()); !s.ok()) return s;
      for (auto [f, v] : {std::pair{"processor.sockets", p.sockets()},
                          {"processor.cores", p.cores()},
                          {"processor.threads", p.threads()}}) {
        if (auto s = NonNegative(f, v); !s.ok()) return s;
      }
    }
    const auto& sys = hw.system();
    for (auto [f, v] : {std::pair{"system.vendor", &sys.vendor()},
                        {"system.product", &sys.product()},
                        {"system.serial", &sys.serial()},
                        {"system.bios_vendor", &sys.bios_vendor()},
                        {"system.bios_version", &sys.bios_version()},
                        {"system.bios_date", &sys.bios_date()},
                        {"system.virtualization", &sys.virtualization()}}) {
      if (auto s = Text(f, *v); !s.ok()) return s;
    }
    for (auto [f, v] : {std::pair{"system.uptime_s", sys.uptime_s()},
                        {"system.boot_time_unix", sys.boot_time_unix()},
                        {"system.memory_total_kb", sys.memory_total_kb()},
                        {"system.swap_total_kb", sys.swap_total_kb()}}) {
      if (auto s = NonNegative(f, v); !s.ok()) return s;
    }
    if (auto s = Count("disks", hw.disks_size(), limits_.max_hardware_items); !s.ok()) return s;
    std::set<std::string> names;
    for (const auto& d : hw.disks()) {
      for (auto [f, v] : {std::pair{"disk.name", &d.name()},
                          {"disk.model", &d.model()},
                          {"disk.mount_point", &d.mount_point()},
                          {"disk.fs_type", &d.fs_type()}}) {
        if (auto s = Text(f, *v); !s.ok()) return s;
      }
      if (d.name().empty()) return Bad("disk.name", "empty");
      if (auto s = NonNegative("disk.size_bytes", d.size_bytes()); !s.ok()) return s;
      if (auto s = NonNegative("disk.free_bytes", d.free_bytes()); !s.ok()) return s;
      if (!names.insert(d.name()).second) return Bad("disk.name", "listed twice: " + d.name());
    }
    if (auto s = Count("adapters", hw.adapters_size(), limits_.max_hardware_items); !s.ok())
      return s;
    names.clear();
    for (const auto& a : hw.adapters()) {
      if (auto s = Text("adapter.name", a.name()); !s.ok()) return s;
      if (auto s = Text("adapter.mac", a.mac()); !s.ok()) return s;
      if (a.name().empty()) return Bad("adapter.name", "empty");
      if (!names.insert(a.name()).second) return Bad("adapter.name", "listed twice: " + a.name());
      if (auto s = Count("adapter.ipv4", a.ipv4_size(), limits_.max_addresses); !s.ok()) return s;
      if (auto s = Count("adapter.ipv6", a.ipv6_size(), limits_.max_addresses); !s.ok()) return s;
      for (const auto* list : {&a.ipv4(), &a.ipv6()}) {
        for (const auto& ip : *list) {
          if (ip.empty() || ip.size() > 64 || ip.find_first_of(" ,{}\"\\") != std::string::npos ||
              !IsCleanText(ip)) {
            return Bad("adapter address", "not an address");
          }
        }
      }
    }
    return absl::OkStatus();
  }

  absl::Status Software(absl::string_view field,
                        const google::protobuf::RepeatedPtrField<v1::SoftwareItem>& items,
                        bool need_version) const {
    if (auto s = Count(field, items.size(), limits_.max_software); !s.ok()) return s;
    std::set<std::pair<std::string_view, std::string_view>> keys;
    for (const auto& item : items) {
      if (item.name().empty()) return Bad(field, "a package without a name");
      for (auto [f, v] : {std::pair{"software.name", &item.name()},
                          {"software.version", &item.version()},
                          {"software.architecture", &item.architecture()},
                          {"software.source", &item.source()}}) {
        if (auto s = Text(f, *v, 512); !s.ok()) return s;
      }
      if (need_version && item.version().empty()) {
        return Bad(field, absl::StrCat("package ", item.name(), " has no version"));
      }
      if (auto s = NonNegative("software.install_time_unix", item.install_time_unix()); !s.ok())
        return s;
      if (!keys.emplace(item.name(), item.architecture()).second) {
        return Bad(field, absl::StrCat("package ", item.name(), ":", item.architecture(),
                                       " listed twice"));
      }
    }
    return absl::OkStatus();
  }

 private:
  const Limits& limits_;
};

}  // namespace

namespace {

// The length of the valid UTF-8 character at s[i] (not NUL), or 0.
size_t CharAt(std::string_view s, size_t i) {
  const unsigned char c = s[i];
  if (c == 0) return 0;
  if (c < 0x80) return 1;
  const size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
  if (len == 0 || i + len > s.size()) return 0;
  uint32_t cp = c & (0x7F >> len);
  for (size_t k = 1; k < len; ++k) {
    const unsigned char cc = s[i + k];
    if ((cc & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3F);
  }
  // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
  if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
      cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  return len;
}

}  // namespace

bool IsCleanText(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t len = CharAt(s, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string CleanText(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t len = CharAt(s, i);
    if (len == 0) {
      out += '?';
      ++i;
    } else {
      out.append(s.substr(i, len));
      i += len;
    }
  }
  return out;
}

bool IsUuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return false;
    } else if (!absl::ascii_isxdigit(static_cast<unsigned char>(s[i]))) {
      return false;
    }
  }
  return true;
}

absl::Status CheckReport(const v1::ClientReport& report, const Limits& limits) {
  Checker c(limits);
  if (report.seq() <= 0) return Bad("seq", "must be positive");
  if (auto s = Checker::NonNegative("created_unix_ms", report.created_unix_ms()); !s.ok()) return s;
  switch (report.body_case()) {
    case v1::ClientReport::kInventory: {
      const auto& inv = report.inventory();
      if (inv.inventory_seq() <= 0) return Bad("inventory.inventory_seq", "must be positive");
      if (inv.full()) {
        if (!inv.has_hardware()) return Bad("inventory.hardware", "a full inventory needs it");
        if (inv.software_removed_size() > 0) {
          return Bad("inventory.software_removed", "only deltas remove software");
        }
      } else if (inv.base_seq() <= 0 || inv.base_seq() >= inv.inventory_seq()) {
        return Bad("inventory.base_seq", "a delta needs 0 < base_seq < inventory_seq");
      }
      if (inv.has_hardware()) {
        if (auto s = c.Hardware(inv.hardware()); !s.ok()) return Annotate(s, "inventory.hardware");
      }
      if (auto s = c.Software("inventory.software", inv.software(), true); !s.ok()) return s;
      return c.Software("inventory.software_removed", inv.software_removed(), false);
    }
    case v1::ClientReport::kHeartbeat: {
      const auto& hb = report.heartbeat();
      if (auto s = c.Text("heartbeat.hostname", hb.hostname(), 255); !s.ok()) return s;
      if (auto s = c.Count("heartbeat.ip_addresses", hb.ip_addresses_size(), limits.max_addresses);
          !s.ok())
        return s;
      for (const auto& ip : hb.ip_addresses()) {
        if (ip.empty() || ip.size() > 64 || ip.find_first_of(" ,{}\"\\") != std::string::npos ||
            !IsCleanText(ip)) {
          return Bad("heartbeat.ip_addresses", "not an address");
        }
      }
      return absl::OkStatus();
    }
    case v1::ClientReport::kState: {
      const auto& st = report.state();
      if (st.topic().empty()) return Bad("state.topic", "empty");
      if (auto s = c.Text("state.topic", st.topic(), 256); !s.ok()) return s;
      if (auto s = c.Text("state.text", st.text(), limits.max_state_text); !s.ok()) return s;
      if (st.severity() < 0 || st.severity() > 2) return Bad("state.severity", "must be 0, 1 or 2");
      return Checker::NonNegative("state.at_unix_ms", st.at_unix_ms());
    }
    case v1::ClientReport::kDeployment: {
      const auto& d = report.deployment();
      if (d.deployment().empty()) return Bad("deployment.deployment", "empty");
      if (auto s = c.Text("deployment.deployment", d.deployment(), 256); !s.ok()) return s;
      if (auto s = c.Text("deployment.revision", d.revision(), 64); !s.ok()) return s;
      if (auto s = c.Text("deployment.deployment_type", d.deployment_type(), 256); !s.ok())
        return s;
      if (auto s = c.Text("deployment.detail", d.detail(), 2048); !s.ok()) return s;
      if (d.state() == v1::DEPLOYMENT_STATE_UNSPECIFIED ||
          !v1::DeploymentStateKind_IsValid(d.state()))
        return Bad("deployment.state", "not a known state");
      if (d.bytes_done() < 0 || d.bytes_total() < 0 || d.attempt() < 0)
        return Bad("deployment", "negative counts");
      return Checker::NonNegative("deployment.at_unix_ms", d.at_unix_ms());
    }
    case v1::ClientReport::kScript: {
      const auto& r = report.script();
      if (!IsUuid(r.run())) return Bad("script.run", "not a run id");
      // Output: 64 KiB the agent keeps, and a margin for its marks.
      if (auto s = c.Text("script.output", r.output(), 66 * 1024); !s.ok()) return s;
      if (auto s = c.Text("script.detail", r.detail(), 2048); !s.ok()) return s;
      if (r.state() == v1::SCRIPT_RUN_STATE_UNSPECIFIED ||
          !v1::ScriptRunStateKind_IsValid(r.state()))
        return Bad("script.state", "not a known state");
      if (auto s = Checker::NonNegative("script.started_unix_ms", r.started_unix_ms()); !s.ok())
        return s;
      return Checker::NonNegative("script.finished_unix_ms", r.finished_unix_ms());
    }
    case v1::ClientReport::kLiveQuery: {
      const auto& a = report.live_query();
      if (!IsUuid(a.query())) return Bad("live_query.query", "not a query id");
      if (a.state() == v1::LIVE_QUERY_STATE_UNSPECIFIED ||
          !v1::LiveQueryStateKind_IsValid(a.state()))
        return Bad("live_query.state", "not a known state");
      if (auto s = c.Text("live_query.detail", a.detail(), 2048); !s.ok()) return s;
      if (auto s = c.Count("live_query.rows", a.rows_size(), 1000); !s.ok()) return s;
      size_t bytes = 0;
      for (const auto& row : a.rows()) {
        if (auto s = c.Count("live_query.rows.values", row.values_size(), 16); !s.ok()) return s;
        for (const auto& v : row.values()) {
          if (auto s = c.Text("live_query.rows.values", v, 4096); !s.ok()) return s;
          bytes += v.size();
        }
      }
      if (bytes > 66 * 1024) return Bad("live_query.rows", "more than 64 KiB");
      return Checker::NonNegative("live_query.elapsed_ms", a.elapsed_ms());
    }
    case v1::ClientReport::BODY_NOT_SET:
      break;
  }
  return Bad("body",
             "a report needs inventory, heartbeat, state, deployment, script or live query");
}

}  // namespace strata::inventory
