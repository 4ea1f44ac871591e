#include "agent/collectors.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace strata::agent {
namespace {

std::string Path(const CollectorContext& ctx, const std::string& p) {
  return ctx.root == "/" ? p : ctx.root + p;
}

std::string ReadTrimmed(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return std::string(absl::StripAsciiWhitespace(ss.str()));
}

int64_t ReadInt(const std::string& path, int64_t fallback) {
  int64_t v;
  return absl::SimpleAtoi(ReadTrimmed(path), &v) ? v : fallback;
}

std::string Unquote(std::string_view v) {
  if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front()) {
    return std::string(v.substr(1, v.size() - 2));
  }
  return std::string(v);
}

absl::Status CollectOs(const CollectorContext& ctx, v1::InventoryReport* inv) {
  auto* os = inv->mutable_hardware()->mutable_os();
  std::ifstream in(Path(ctx, "/etc/os-release"));
  if (!in) in.open(Path(ctx, "/usr/lib/os-release"));
  std::string line;
  while (std::getline(in, line)) {
    std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
    if (kv.first == "NAME") os->set_name(Unquote(kv.second));
    if (kv.first == "ID") os->set_id(Unquote(kv.second));
    if (kv.first == "VERSION_ID") os->set_version(Unquote(kv.second));
    if (kv.first == "PRETTY_NAME") os->set_pretty_name(Unquote(kv.second));
  }
  utsname u;
  if (uname(&u) == 0) {
    os->set_kernel(u.release);
    os->set_architecture(u.machine);
    os->set_hostname(u.nodename);
  }
  if (!ctx.hostname.empty()) os->set_hostname(ctx.hostname);
  if (os->name().empty()) return absl::NotFoundError("no os-release file");
  return absl::OkStatus();
}

absl::Status CollectCpu(const CollectorContext& ctx, v1::InventoryReport* inv) {
  std::ifstream in(Path(ctx, "/proc/cpuinfo"));
  std::string line, model;
  std::set<std::string> sockets;
  std::set<std::pair<std::string, std::string>> cores;
  int threads = 0;
  std::string physical = "0";
  while (std::getline(in, line)) {
    std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits(':', 1));
    std::string key(absl::StripAsciiWhitespace(kv.first));
    std::string value(absl::StripAsciiWhitespace(kv.second));
    if (key == "processor") ++threads;
    if (key == "model name" && model.empty()) model = value;
    if (key == "physical id") {
      physical = value;
      sockets.insert(value);
    }
    if (key == "core id") cores.insert({physical, value});
  }
  if (threads == 0) return absl::NotFoundError("no processors in /proc/cpuinfo");
  auto* p = inv->mutable_hardware()->add_processors();
  p->set_model(model.empty() ? "unknown" : model);
  p->set_sockets(sockets.empty() ? 1 : static_cast<int>(sockets.size()));
  p->set_cores(cores.empty() ? threads : static_cast<int>(cores.size()));
  p->set_threads(threads);
  return absl::OkStatus();
}

absl::Status CollectSystem(const CollectorContext& ctx, v1::InventoryReport* inv) {
  auto* s = inv->mutable_hardware()->mutable_system();
  const std::string dmi = Path(ctx, "/sys/class/dmi/id/");
  s->set_vendor(ReadTrimmed(dmi + "sys_vendor"));
  s->set_product(ReadTrimmed(dmi + "product_name"));
  s->set_serial(ReadTrimmed(dmi + "product_serial"));  // root only; empty otherwise
  s->set_bios_vendor(ReadTrimmed(dmi + "bios_vendor"));
  s->set_bios_version(ReadTrimmed(dmi + "bios_version"));
  s->set_bios_date(ReadTrimmed(dmi + "bios_date"));
  // Virtualization: containers first, then the hypervisor flag and DMI.
  std::string virt = "none";
  if (std::filesystem::exists(Path(ctx, "/.dockerenv"))) {
    virt = "docker";
  } else if (ReadTrimmed(Path(ctx, "/proc/1/environ")).find("container=") != std::string::npos) {
    virt = "container";
  } else {
    std::ifstream cpu(Path(ctx, "/proc/cpuinfo"));
    std::string line;
    while (std::getline(cpu, line)) {
      if (absl::StartsWith(line, "flags") && absl::StrContains(line, " hypervisor")) {
        std::string product = s->product() + " " + s->vendor();
        virt = absl::StrContains(product, "KVM")          ? "kvm"
               : absl::StrContains(product, "VMware")     ? "vmware"
               : absl::StrContains(product, "VirtualBox") ? "virtualbox"
               : absl::StrContains(product, "Microsoft")  ? "hyperv"
               : absl::StrContains(product, "Xen")        ? "xen"
                                                          : "vm";
        break;
      }
    }
  }
  s->set_virtualization(virt);
  std::string uptime = ReadTrimmed(Path(ctx, "/proc/uptime"));
  double up = 0;
  if (absl::SimpleAtod(uptime.substr(0, uptime.find(' ')), &up)) {
    s->set_uptime_s(static_cast<int64_t>(up));
    s->set_boot_time_unix(static_cast<int64_t>(std::time(nullptr) - up));
  }
  std::ifstream mem(Path(ctx, "/proc/meminfo"));
  std::string line;
  while (std::getline(mem, line)) {
    std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    int64_t kb = 0;
    if (f.size() >= 2 && absl::SimpleAtoi(f[1], &kb)) {
      if (f[0] == "MemTotal:") s->set_memory_total_kb(kb);
      if (f[0] == "SwapTotal:") s->set_swap_total_kb(kb);
    }
  }
  if (s->memory_total_kb() == 0) return absl::NotFoundError("no MemTotal in /proc/meminfo");
  return absl::OkStatus();
}

absl::Status CollectDisks(const CollectorContext& ctx, v1::InventoryReport* inv) {
  auto* hw = inv->mutable_hardware();
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(Path(ctx, "/sys/block"), ec)) {
    std::string name = e.path().filename();
    if (absl::StartsWith(name, "loop") || absl::StartsWith(name, "ram") ||
        absl::StartsWith(name, "zram")) {
      continue;
    }
    int64_t sectors = ReadInt(e.path().string() + "/size", 0);
    if (sectors <= 0) continue;
    auto* d = hw->add_disks();
    d->set_name(name);
    d->set_size_bytes(sectors * 512);
    d->set_model(ReadTrimmed(e.path().string() + "/device/model"));
  }
  // Filesystems: real ones from /proc/mounts, each mount point once.
  static const std::set<std::string> kReal = {"ext2", "ext3", "ext4",    "xfs",  "btrfs", "zfs",
                                              "vfat", "f2fs", "overlay", "ntfs", "ntfs3"};
  std::ifstream mounts(Path(ctx, "/proc/mounts"));
  std::string line;
  std::set<std::string> seen;
  while (std::getline(mounts, line)) {
    std::vector<std::string> f = absl::StrSplit(line, ' ');
    if (f.size() < 3) continue;
    for (auto& field : f) field = UnescapeMountField(field);
    if (!kReal.count(f[2]) || !seen.insert(f[1]).second) continue;
    if (seen.size() > 256) break;
    struct statvfs st;
    if (statvfs(f[1].c_str(), &st) != 0) continue;
    auto* d = hw->add_disks();
    d->set_name(f[1]);
    d->set_is_filesystem(true);
    d->set_mount_point(f[1]);
    d->set_fs_type(f[2]);
    d->set_model(f[0].substr(0, 255));
    d->set_size_bytes(static_cast<int64_t>(st.f_blocks) * st.f_frsize);
    d->set_free_bytes(static_cast<int64_t>(st.f_bavail) * st.f_frsize);
  }
  return absl::OkStatus();
}

absl::Status CollectNetwork(const CollectorContext& ctx, v1::InventoryReport* inv) {
  auto* hw = inv->mutable_hardware();
  std::map<std::string, v1::NetworkAdapterInfo*> by_name;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(Path(ctx, "/sys/class/net"), ec)) {
    std::string name = e.path().filename();
    auto* a = hw->add_adapters();
    a->set_name(name);
    a->set_mac(ReadTrimmed(e.path().string() + "/address"));
    a->set_speed_mbps(ReadInt(e.path().string() + "/speed", -1));
    by_name[name] = a;
  }
  if (ctx.root != "/") return absl::OkStatus();  // addresses come from the live kernel
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return absl::OkStatus();
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr) continue;
    auto adapter = by_name.find(AdapterOfInterface(i->ifa_name));
    if (adapter == by_name.end()) continue;
    char buf[INET6_ADDRSTRLEN] = {0};
    int family = i->ifa_addr->sa_family;
    int prefix = 0;
    if (family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf, sizeof buf);
      if (i->ifa_netmask) {
        prefix =
            __builtin_popcount(reinterpret_cast<sockaddr_in*>(i->ifa_netmask)->sin_addr.s_addr);
      }
      adapter->second->add_ipv4(absl::StrCat(buf, "/", prefix));
    } else if (family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr, buf,
                sizeof buf);
      if (i->ifa_netmask) {
        auto* m = reinterpret_cast<sockaddr_in6*>(i->ifa_netmask)->sin6_addr.s6_addr;
        for (int k = 0; k < 16; ++k) prefix += __builtin_popcount(m[k]);
      }
      adapter->second->add_ipv6(absl::StrCat(buf, "/", prefix));
    }
  }
  freeifaddrs(list);
  return absl::OkStatus();
}

// The dpkg status database: stanzas of "Field: value" separated by blank
// lines; installed packages have Status "install ok installed". Install time:
// the mtime of the package's file list in info/.
absl::Status CollectDpkg(const CollectorContext& ctx, v1::InventoryReport* inv) {
  std::ifstream in(ctx.dpkg_dir + "/status");
  if (!in) return absl::OkStatus();  // not a dpkg system
  std::string line;
  std::map<std::string, std::string> stanza;
  std::string last_key;
  auto flush = [&] {
    if (absl::EndsWith(stanza["Status"], " installed") && !stanza["Package"].empty()) {
      auto* s = inv->add_software();
      s->set_name(stanza["Package"]);
      s->set_version(stanza["Version"]);
      s->set_architecture(stanza["Architecture"]);
      s->set_source("dpkg");
      struct stat st;
      for (const std::string& list :
           {absl::StrCat(ctx.dpkg_dir, "/info/", s->name(), ":", s->architecture(), ".list"),
            absl::StrCat(ctx.dpkg_dir, "/info/", s->name(), ".list")}) {
        if (stat(list.c_str(), &st) == 0) {
          s->set_install_time_unix(st.st_mtime);
          break;
        }
      }
    }
    stanza.clear();
  };
  while (std::getline(in, line)) {
    if (line.empty()) {
      flush();
      continue;
    }
    if (line[0] == ' ' || line[0] == '\t') continue;  // continuation of a long field
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    stanza[line.substr(0, colon)] =
        std::string(absl::StripAsciiWhitespace(absl::string_view(line).substr(colon + 1)));
  }
  flush();
  return absl::OkStatus();
}

absl::Status CollectRpm(const CollectorContext& ctx, v1::InventoryReport* inv) {
  if (ctx.rpm_command == "none" || ctx.rpm_command.empty()) return absl::OkStatus();
  std::string cmd =
      absl::StrCat("command -v ", ctx.rpm_command, " >/dev/null 2>&1 && ", ctx.rpm_command,
                   " -qa --qf '%{NAME}\\t%{VERSION}-%{RELEASE}\\t%{ARCH}\\t%{INSTALLTIME}\\n' "
                   "2>/dev/null");
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return absl::OkStatus();
  char buf[4096];
  std::set<std::pair<std::string, std::string>> seen;
  for (const auto& s : inv->software()) seen.insert({s.name(), s.architecture()});
  while (fgets(buf, sizeof buf, p)) {
    std::vector<std::string> f = absl::StrSplit(absl::StripTrailingAsciiWhitespace(buf), '\t');
    if (f.size() != 4 || !seen.insert({f[0], f[2]}).second) continue;
    auto* s = inv->add_software();
    s->set_name(f[0]);
    s->set_version(f[1]);
    s->set_architecture(f[2]);
    int64_t t = 0;
    if (absl::SimpleAtoi(f[3], &t)) s->set_install_time_unix(t);
    s->set_source("rpm");
  }
  pclose(p);
  return absl::OkStatus();
}

}  // namespace

std::string UnescapeMountField(std::string_view field) {
  std::string out;
  out.reserve(field.size());
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      const std::string_view oct = field.substr(i + 1, 3);
      if (std::all_of(oct.begin(), oct.end(), [](char c) { return c >= '0' && c <= '7'; })) {
        out.push_back(static_cast<char>((oct[0] - '0') * 64 + (oct[1] - '0') * 8 + (oct[2] - '0')));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

std::string AdapterOfInterface(std::string_view ifa_name) {
  return std::string(ifa_name.substr(0, ifa_name.find(':')));
}

const std::vector<Collector>& Collectors() {
  static const std::vector<Collector> kCollectors = {
      {"os", "OS name and version (os-release), kernel, architecture, hostname (uname)", CollectOs},
      {"processor", "CPU model, sockets, cores, threads (/proc/cpuinfo)", CollectCpu},
      {"system", "system and BIOS identity (/sys/class/dmi), virtualization, uptime, memory",
       CollectSystem},
      {"disk", "block devices (/sys/block) and mounted filesystems with free space", CollectDisks},
      {"network", "adapters (/sys/class/net): MAC, speed, IPv4/IPv6 addresses", CollectNetwork},
      {"dpkg", "installed Debian packages (the dpkg status database)", CollectDpkg},
      {"rpm", "installed RPM packages (rpm -qa), where rpm is present", CollectRpm},
  };
  return kCollectors;
}

v1::InventoryReport CollectInventory(const CollectorContext& ctx,
                                     std::vector<std::string>* errors) {
  v1::InventoryReport inv;
  inv.mutable_hardware();
  for (const auto& c : Collectors()) {
    absl::Status s = c.collect(ctx, &inv);
    if (!s.ok() && errors) errors->push_back(absl::StrCat(c.name, ": ", s.message()));
  }
  return inv;
}

std::vector<std::string> LocalAddresses() {
  std::vector<std::string> ips;
  CollectorContext ctx;
  v1::InventoryReport inv;
  for (const auto& c : Collectors()) {
    if (std::string(c.name) == "network") (void)c.collect(ctx, &inv);
  }
  for (const auto& a : inv.hardware().adapters()) {
    if (a.name() == "lo") continue;
    for (const auto& ip : a.ipv4()) ips.push_back(ip.substr(0, ip.find('/')));
    for (const auto& ip : a.ipv6()) ips.push_back(ip.substr(0, ip.find('/')));
  }
  return ips;
}

}  // namespace strata::agent
