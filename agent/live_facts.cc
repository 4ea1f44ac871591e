#include "agent/live_facts.h"

#include <arpa/inet.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <utmpx.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "agent/detection.h"
#include "agent/runner.h"
#include "common/base/files.h"
#include "common/base/status.h"
#include "common/content/hash.h"

namespace strata::agent {
namespace {

namespace fs = std::filesystem;
using collections::DeviceFacts;
using collections::FactRow;

constexpr int64_t kMaxHashBytes = 256 << 20;  // files hashed at most this big
constexpr size_t kMaxCmdline = 1024;

class Reader {
 public:
  explicit Reader(const LiveContext& ctx) : ctx_(ctx) {}

  absl::Status Due() const {
    if (absl::Now() < ctx_.deadline) return absl::OkStatus();
    return absl::DeadlineExceededError("its time on this device ran out");
  }

  absl::Status Add(DeviceFacts& f, const std::string& cls, FactRow row) const {
    auto& rows = f[cls];
    if (rows.size() >= ctx_.max_rows_per_class)
      return absl::ResourceExhaustedError(
          absl::StrCat(cls, ": more than ", ctx_.max_rows_per_class, " rows on this device"));
    rows.push_back(std::move(row));
    return absl::OkStatus();
  }

  std::string UserName(uid_t uid) {
    auto it = users_.find(uid);
    if (it != users_.end()) return it->second;
    std::vector<char> buf(16384);
    passwd pw{};
    passwd* found = nullptr;
    std::string name = getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) == 0 && found
                           ? std::string(pw.pw_name)
                           : absl::StrCat(uid);
    return users_[uid] = name;
  }

  absl::Status Processes(DeviceFacts& f) {
    const long page_kb = sysconf(_SC_PAGESIZE) / 1024;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/proc", ec)) {
      RETURN_IF_ERROR(Due());
      const std::string pid = e.path().filename().string();
      if (pid.empty() || !absl::ascii_isdigit(pid[0])) continue;
      const std::string text = ReadFileOrEmpty(e.path().string() + "/stat");
      const size_t open = text.find('('), close = text.rfind(')');
      if (open == std::string::npos || close == std::string::npos || close + 2 > text.size())
        continue;  // gone meanwhile
      std::vector<std::string> fields =
          absl::StrSplit(text.substr(close + 2), ' ', absl::SkipEmpty());
      if (fields.size() < 22) continue;
      struct stat st {};
      if (stat(e.path().c_str(), &st) != 0) continue;
      std::string cmdline = ReadFileOrEmpty(e.path().string() + "/cmdline");
      if (cmdline.size() > kMaxCmdline) cmdline.resize(kMaxCmdline);
      for (char& c : cmdline)
        if (c == '\0') c = ' ';
      while (!cmdline.empty() && cmdline.back() == ' ') cmdline.pop_back();
      int64_t rss = 0;
      (void)absl::SimpleAtoi(fields[21], &rss);
      RETURN_IF_ERROR(Add(f, "process",
                          {{"pid", pid},
                           {"ppid", fields[1]},
                           {"name", text.substr(open + 1, close - open - 1)},
                           {"cmdline", inventory_clean(cmdline)},
                           {"user", UserName(st.st_uid)},
                           {"state", fields[0]},
                           {"rss_mb", absl::StrCat(rss * page_kb / 1024)},
                           {"threads", fields[17]}}));
    }
    return absl::OkStatus();
  }

  // Which process holds each socket inode (/proc/*/fd).
  std::map<std::string, std::pair<std::string, std::string>> SocketOwners() {
    std::map<std::string, std::pair<std::string, std::string>> out;
    std::error_code ec;
    for (const auto& p : fs::directory_iterator("/proc", ec)) {
      if (!Due().ok()) break;
      const std::string pid = p.path().filename().string();
      if (pid.empty() || !absl::ascii_isdigit(pid[0])) continue;
      std::string comm = ReadFileOrEmpty(p.path().string() + "/comm");
      while (!comm.empty() && comm.back() == '\n') comm.pop_back();
      std::error_code fec;
      for (const auto& fd : fs::directory_iterator(p.path() / "fd", fec)) {
        std::error_code lec;
        const std::string target = fs::read_symlink(fd.path(), lec).string();
        if (!lec && target.rfind("socket:[", 0) == 0)
          out.emplace(target.substr(8, target.size() - 9), std::make_pair(pid, comm));
      }
    }
    return out;
  }

  // A hex field of /proc/net ("" or a malformed one: false).
  static bool Hex(const std::string& text, uint32_t* out) {
    if (text.empty() || text.size() > 8) return false;
    char* end = nullptr;
    const unsigned long v = std::strtoul(text.c_str(), &end, 16);
    if (end != text.c_str() + text.size()) return false;
    *out = static_cast<uint32_t>(v);
    return true;
  }

  // An address of /proc/net as text ("" if malformed).
  static std::string Address(const std::string& hex, bool v6) {
    char text[INET6_ADDRSTRLEN] = {};
    if (!v6) {
      in_addr in{};
      // /proc writes the address's bytes in the host's order.
      if (hex.size() != 8 || !Hex(hex, &in.s_addr)) return "";
      inet_ntop(AF_INET, &in, text, sizeof(text));
      return text;
    }
    if (hex.size() != 32) return "";
    in6_addr in{};
    for (int w = 0; w < 4; ++w) {
      uint32_t word = 0;
      if (!Hex(hex.substr(w * 8, 8), &word)) return "";
      std::memcpy(&in.s6_addr[w * 4], &word, 4);
    }
    inet_ntop(AF_INET6, &in, text, sizeof(text));
    return text;
  }

  absl::Status Sockets(DeviceFacts& f) {
    const auto owners = SocketOwners();
    RETURN_IF_ERROR(Due());
    f["socket"];  // none listening is an answer too
    for (const char* proto : {"tcp", "tcp6", "udp", "udp6"}) {
      std::istringstream in(ReadFileOrEmpty(absl::StrCat("/proc/net/", proto)));
      std::string line;
      std::getline(in, line);  // the header
      const bool tcp = proto[0] == 't', v6 = absl::EndsWith(proto, "6");
      while (std::getline(in, line)) {
        std::vector<std::string> c = absl::StrSplit(line, ' ', absl::SkipEmpty());
        if (c.size() < 10) continue;
        // TCP: LISTEN (0A); UDP: bound, no peer (07).
        if (c[3] != (tcp ? "0A" : "07")) continue;
        std::pair<std::string, std::string> local = absl::StrSplit(c[1], ':');
        uint32_t port = 0;
        if (!Hex(local.second, &port)) continue;
        FactRow row{{"protocol", proto},
                    {"address", Address(local.first, v6)},
                    {"port", absl::StrCat(port)}};
        auto owner = owners.find(c[9]);
        if (owner != owners.end()) {
          row["pid"] = owner->second.first;
          row["process"] = owner->second.second;
        }
        RETURN_IF_ERROR(Add(f, "socket", std::move(row)));
      }
    }
    return absl::OkStatus();
  }

  absl::Status Users(DeviceFacts& f) {
    f["user"];
    setutxent();
    while (utmpx* u = getutxent()) {
      if (u->ut_type != USER_PROCESS) continue;
      absl::Status s =
          Add(f, "user",
              {{"name", std::string(u->ut_user, strnlen(u->ut_user, sizeof(u->ut_user)))},
               {"tty", std::string(u->ut_line, strnlen(u->ut_line, sizeof(u->ut_line)))},
               {"host", std::string(u->ut_host, strnlen(u->ut_host, sizeof(u->ut_host)))},
               {"login_unix", absl::StrCat(u->ut_tv.tv_sec)}});
      if (!s.ok()) {
        endutxent();
        return s;
      }
    }
    endutxent();
    return absl::OkStatus();
  }

  // A command's stdout (at most the runner's 64 KiB: enough for the
  // counts it is read for), killed at the deadline.
  absl::StatusOr<std::string> Command(const std::string& what, const std::string& command) {
    RETURN_IF_ERROR(Due());
    std::error_code ec;
    fs::create_directories(ctx_.work_dir, ec);
    RunSpec spec;
    spec.command = command;
    spec.dir = ctx_.work_dir;
    spec.output_path = ctx_.work_dir + "/stderr";
    spec.stdout_path = ctx_.work_dir + "/stdout";
    spec.exit_path = ctx_.work_dir + "/exit";
    spec.timeout = ctx_.deadline - absl::Now();
    unlink(spec.output_path.c_str());
    ASSIGN_OR_RETURN(RunResult r, Run(spec, nullptr));
    if (r.timed_out) return absl::DeadlineExceededError(absl::StrCat(what, " took too long"));
    if (!r.exited || r.exit_code != 0)
      return absl::FailedPreconditionError(
          absl::StrCat(what, ": exit ", r.exit_code, ": ", FileTail(spec.output_path, 300)));
    return FileTail(spec.stdout_path, kMaxOutputBytes);
  }

  absl::Status Services(DeviceFacts& f) {
    ASSIGN_OR_RETURN(std::string out,
                     Command("service: systemctl",
                             "systemctl list-units --type=service --all --no-legend --plain "
                             "--no-pager"));
    f["service"];
    for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
      std::vector<std::string> c = absl::StrSplit(line, absl::MaxSplits(' ', 4), absl::SkipEmpty());
      if (c.size() < 4) continue;
      std::string name = c[0];
      if (absl::EndsWith(name, ".service")) name.resize(name.size() - 8);
      RETURN_IF_ERROR(Add(
          f, "service",
          {{"name", name},
           {"load", c[1]},
           {"active", c[2]},
           {"sub", c[3]},
           {"description", c.size() > 4 ? absl::StrCat(absl::StripAsciiWhitespace(c[4])) : ""}}));
    }
    return absl::OkStatus();
  }

  absl::Status Files(DeviceFacts& f, const std::vector<std::string>& paths) {
    f["file"];
    for (const auto& path : paths) {
      RETURN_IF_ERROR(Due());
      FactRow row{{"path", path}};
      struct stat st {};
      if (path.empty() || path[0] != '/' || stat(path.c_str(), &st) != 0) {
        row["exists"] = "false";
        RETURN_IF_ERROR(Add(f, "file", std::move(row)));
        continue;
      }
      row["exists"] = "true";
      row["size"] = absl::StrCat(st.st_size);
      row["mode"] = absl::StrFormat("%04o", st.st_mode & 07777);
      row["owner"] = UserName(st.st_uid);
      row["mtime_unix"] = absl::StrCat(st.st_mtime);
      if (S_ISREG(st.st_mode) && st.st_size <= kMaxHashBytes) {
        auto digest = content::HashFile(path);
        if (digest.ok()) row["sha256"] = digest->sha256;
      }
      RETURN_IF_ERROR(Add(f, "file", std::move(row)));
    }
    return absl::OkStatus();
  }

  absl::Status Updates(DeviceFacts& f) {
    FactRow row;
    struct stat st {};
    row["reboot_required"] = stat("/var/run/reboot-required", &st) == 0 ? "true" : "false";
    if (stat("/var/lib/apt/lists", &st) == 0)
      row["lists_age_days"] =
          absl::StrCat((absl::ToUnixSeconds(absl::Now()) - st.st_mtime) / 86400);
    ASSIGN_OR_RETURN(std::string out, Command("os_update: apt-get",
                                              "apt-get -s -o Debug::NoLocking=1 -q dist-upgrade"));
    int pending = 0, security = 0;
    for (absl::string_view line : absl::StrSplit(out, '\n')) {
      if (!absl::StartsWith(line, "Inst ")) continue;
      ++pending;
      if (absl::StrContains(line, "-security")) ++security;
    }
    row["pending"] = absl::StrCat(pending);
    row["security"] = absl::StrCat(security);
    return Add(f, "os_update", std::move(row));
  }

  static std::string inventory_clean(const std::string& s) {
    std::string out;
    for (unsigned char c : s) out.push_back(c < 0x20 || c == 0x7f ? ' ' : static_cast<char>(c));
    return out;
  }

 private:
  const LiveContext& ctx_;
  std::map<uid_t, std::string> users_;
};

}  // namespace

absl::StatusOr<DeviceFacts> LiveFacts(const collections::LiveQuerySpec& spec,
                                      const LiveContext& ctx) {
  DeviceFacts f;
  Reader r(ctx);
  // The inventory's collectors run when a class of theirs is asked; the
  // device's own row needs only its name.
  bool inventory = false;
  for (const auto& c : spec.classes)
    inventory = inventory || !(c == "device" || c == "process" || c == "socket" || c == "user" ||
                               c == "service" || c == "file" || c == "os_update");
  if (inventory) {
    std::vector<std::string> errors;
    const v1::InventoryReport inv = CollectInventory(ctx.collectors, &errors);
    f = FactsOf(inv, ctx.site);
    RETURN_IF_ERROR(r.Due());
  } else {
    std::string name = ctx.collectors.hostname;
    if (name.empty()) {
      utsname u{};
      if (uname(&u) == 0) name = u.nodename;
    }
    f["device"] = {{{"name", name}, {"site", ctx.site}, {"active", "true"}}};
  }
  if (spec.classes.count("process")) RETURN_IF_ERROR(r.Processes(f));
  if (spec.classes.count("socket")) RETURN_IF_ERROR(r.Sockets(f));
  if (spec.classes.count("user")) RETURN_IF_ERROR(r.Users(f));
  if (spec.classes.count("service")) RETURN_IF_ERROR(r.Services(f));
  if (spec.classes.count("file")) RETURN_IF_ERROR(r.Files(f, spec.file_paths));
  if (spec.classes.count("os_update")) RETURN_IF_ERROR(r.Updates(f));
  return f;
}

}  // namespace strata::agent
