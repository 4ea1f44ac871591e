#include "common/collections/fields.h"

namespace strata::collections {

const char* TypeName(Type t) {
  switch (t) {
    case Type::kText:
      return "text";
    case Type::kVersion:
      return "version";
    case Type::kNumber:
      return "number";
    case Type::kBool:
      return "boolean";
  }
  return "?";
}

const std::vector<Class>& Classes() {
  static const auto* classes = new std::vector<Class>{
      {"device",
       nullptr,
       {{"name", "%.name", Type::kText},
        {"site", "%.site_code", Type::kText},
        {"active", "%.active", Type::kBool}},
       false,
       true},
      {"os",
       "device_os",
       {{"name", "%.name", Type::kText},
        {"version", "%.version", Type::kVersion},
        {"pretty_name", "%.pretty_name", Type::kText},
        {"kernel", "%.kernel", Type::kVersion},
        {"architecture", "%.architecture", Type::kText},
        {"hostname", "%.hostname", Type::kText},
        {"id", "%.os_id", Type::kText},                // os-release ID: "debian"
        {"version_id", "%.version", Type::kVersion}},  // os-release VERSION_ID (= version)
       false,
       true},
      {"system",
       "device_system",
       {{"vendor", "%.vendor", Type::kText},
        {"product", "%.product", Type::kText},
        {"serial", "%.serial", Type::kText},
        {"bios_vendor", "%.bios_vendor", Type::kText},
        {"bios_version", "%.bios_version", Type::kVersion},
        {"virtualization", "%.virtualization", Type::kText},
        {"uptime_days", "(%.uptime_s / 86400.0)", Type::kNumber}},
       false,
       true},
      {"memory",
       "device_memory",
       {{"total_mb", "(%.total_kb / 1024)", Type::kNumber},
        {"swap_mb", "(%.swap_kb / 1024)", Type::kNumber}},
       false,
       true},
      {"processor",
       "device_processor",
       {{"model", "%.model", Type::kText},
        {"sockets", "%.sockets", Type::kNumber},
        {"cores", "%.cores", Type::kNumber},
        {"threads", "%.threads", Type::kNumber}}},
      {"disk",
       "device_disk",
       {{"name", "%.name", Type::kText},
        {"model", "%.model", Type::kText},
        {"fs_type", "%.fs_type", Type::kText},
        {"is_filesystem", "%.is_filesystem", Type::kBool},
        {"size_gb", "(%.size_bytes / 1073741824.0)", Type::kNumber},
        {"free_gb", "(%.free_bytes / 1073741824.0)", Type::kNumber}}},
      {"network",
       "device_network",
       {{"name", "%.name", Type::kText},
        {"mac", "%.mac", Type::kText},
        {"speed_mbps", "%.speed_mbps", Type::kNumber}}},
      {"software",
       "device_software",
       {{"name", "%.name", Type::kText},
        {"version", "%.version", Type::kVersion},
        {"architecture", "%.architecture", Type::kText},
        {"source", "%.source", Type::kText}}},
      // Live classes: read on the client when a live query asks.
      {"process",
       nullptr,
       {{"pid", "", Type::kNumber},
        {"ppid", "", Type::kNumber},
        {"name", "", Type::kText},
        {"cmdline", "", Type::kText},
        {"user", "", Type::kText},
        {"state", "", Type::kText},
        {"rss_mb", "", Type::kNumber},
        {"threads", "", Type::kNumber}},
       true},
      {"socket",  // listening: TCP in LISTEN, UDP bound
       nullptr,
       {{"protocol", "", Type::kText},
        {"address", "", Type::kText},
        {"port", "", Type::kNumber},
        {"pid", "", Type::kNumber},
        {"process", "", Type::kText}},
       true},
      {"user",  // logged in (utmp)
       nullptr,
       {{"name", "", Type::kText},
        {"tty", "", Type::kText},
        {"host", "", Type::kText},
        {"login_unix", "", Type::kNumber}},
       true},
      {"service",  // systemd units
       nullptr,
       {{"name", "", Type::kText},
        {"load", "", Type::kText},
        {"active", "", Type::kText},
        {"sub", "", Type::kText},
        {"description", "", Type::kText}},
       true},
      {"file",  // the paths the query compares file.path with
       nullptr,
       {{"path", "", Type::kText},
        {"exists", "", Type::kBool},
        {"size", "", Type::kNumber},
        {"sha256", "", Type::kText},
        {"mode", "", Type::kText},
        {"owner", "", Type::kText},
        {"mtime_unix", "", Type::kNumber}},
       true},
      {"os_update",
       nullptr,
       {{"pending", "", Type::kNumber},
        {"security", "", Type::kNumber},
        {"reboot_required", "", Type::kBool},
        {"lists_age_days", "", Type::kNumber}},
       true,
       true},
  };
  return *classes;
}

}  // namespace strata::collections
