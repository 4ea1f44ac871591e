#include "dp/nginx.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netdb.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

extern char** environ;

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/base/backoff.h"
#include "common/base/files.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/net/revocation.h"

namespace strata::dp {
namespace {

absl::Status Errno(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

// Kills every process of group `pgid` that is nginx (workers an earlier
// master left behind keep its group).
void KillNginxGroup(pid_t pgid) {
  if (pgid <= 1) return;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return;
  while (struct dirent* e = ::readdir(d)) {
    int pid = 0;
    if (!absl::SimpleAtoi(e->d_name, &pid)) continue;
    std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
    std::string line;
    std::getline(stat, line);
    // pid (comm) state ppid pgrp ...
    size_t close = line.rfind(')');
    if (close == std::string::npos || line.find("(nginx)") == std::string::npos) continue;
    std::vector<std::string> f = absl::StrSplit(line.substr(close + 2), ' ');
    int group = 0;
    if (f.size() > 2 && absl::SimpleAtoi(f[2], &group) && group == pgid) ::kill(pid, SIGKILL);
  }
  ::closedir(d);
}

int OpenFilesLimit() {
  struct rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_max == RLIM_INFINITY) return 65536;
  return static_cast<int>(std::min<rlim_t>(rl.rlim_max, 65536));
}

}  // namespace

// Non-blocking, as nginx makes its own: an inherited socket is used as it
// comes, and a worker accepting several connections at once would block.
absl::StatusOr<Listener> OpenListener(const std::string& address) {
  Listener l;
  if (absl::StartsWith(address, "unix:")) {
    const std::string path = address.substr(5);
    struct sockaddr_un sa {};
    if (path.empty() || path.size() >= sizeof(sa.sun_path))
      return absl::InvalidArgumentError(
          absl::StrCat("listen_address ", address, ": a unix socket path of 1-107 bytes"));
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
    l.fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (l.fd < 0) return Errno("socket");
    ::unlink(path.c_str());
    if (::bind(l.fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
        ::listen(l.fd, 4096) != 0) {
      absl::Status s = Errno(absl::StrCat("cannot listen on ", address));
      ::close(l.fd);
      return s;
    }
    ::chmod(path.c_str(), 0666);  // clients of any user
    l.config_address = address;
    l.bound_address = address;
    return l;
  }
  size_t colon = address.rfind(':');
  if (colon == std::string::npos)
    return absl::InvalidArgumentError(
        absl::StrCat("listen_address ", address, ": host:port or unix:/path"));
  std::string host = address.substr(0, colon);
  const std::string port = address.substr(colon + 1);
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]"))
    host = host.substr(1, host.size() - 2);
  struct addrinfo hints {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  struct addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res);
      rc != 0)
    return absl::InvalidArgumentError(
        absl::StrCat("listen_address ", address, ": ", ::gai_strerror(rc)));
  l.fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int one = 1;
  ::setsockopt(l.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (l.fd < 0 || ::bind(l.fd, res->ai_addr, res->ai_addrlen) != 0 || ::listen(l.fd, 4096) != 0) {
    absl::Status s = Errno(absl::StrCat("cannot listen on ", address));
    ::freeaddrinfo(res);
    if (l.fd >= 0) ::close(l.fd);
    return s;
  }
  const bool v6 = res->ai_family == AF_INET6;
  ::freeaddrinfo(res);
  struct sockaddr_storage ss {};
  socklen_t len = sizeof ss;
  ::getsockname(l.fd, reinterpret_cast<sockaddr*>(&ss), &len);
  char ip[INET6_ADDRSTRLEN] = {};
  int bound_port = 0;
  if (v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
    bound_port = ntohs(a->sin6_port);
    l.config_address = absl::StrCat("[", ip, "]:", bound_port);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
    bound_port = ntohs(a->sin_port);
    l.config_address = absl::StrCat(ip, ":", bound_port);
  }
  l.bound_address =
      absl::StrCat(host.empty() ? "localhost" : address.substr(0, colon), ":", bound_port);
  return l;
}

std::string NginxConfig(const NginxOptions& o, const std::vector<std::string>& revoked_serials) {
  const int files = OpenFilesLimit();
  std::string c = absl::StrCat(
      "# Written by strata-dp at each start: change the DP's configuration, not this file.\n",
      "daemon off;\nmaster_process on;\n", "worker_processes ",
      o.workers > 0 ? std::to_string(o.workers) : "auto", ";\n");
  // Only a master running as root switches its workers' user: to the DP's
  // own unless told otherwise (nginx's default, nobody, cannot read a
  // library only its owner may enter).
  if (::geteuid() == 0) {
    std::string user = o.user;
    if (user.empty()) {
      struct passwd* pw = ::getpwuid(::geteuid());
      user = pw != nullptr ? pw->pw_name : "root";
    }
    absl::StrAppend(&c, "user ", user, ";\n");
  }
  absl::StrAppend(
      &c, "pid \"", o.state_dir, "/nginx.pid\";\n", "error_log stderr warn;\n",
      "worker_rlimit_nofile ", files, ";\n", "events {\n  worker_connections ",
      std::max(64, files - 64), ";\n  multi_accept on;\n}\n", "http {\n", "  access_log off;\n",
      "  server_tokens off;\n", "  sendfile on;\n  tcp_nopush on;\n", "  keepalive_timeout 65;\n",
      "  types { }\n  default_type application/octet-stream;\n", "  client_max_body_size 1k;\n");
  for (const char* t : {"client_body", "proxy", "fastcgi", "uwsgi", "scgi"})
    absl::StrAppend(&c, "  ", t, "_temp_path \"", o.state_dir, "/temp/", t, "\";\n");
  if (!revoked_serials.empty()) {
    absl::StrAppend(&c, "  # Revoked certificates (tls.crl_file).\n",
                    "  map $ssl_client_serial $strata_revoked {\n    default 0;\n");
    for (const std::string& serial : revoked_serials) absl::StrAppend(&c, "    ", serial, " 1;\n");
    absl::StrAppend(&c, "  }\n");
  }
  absl::StrAppend(
      &c, "  server {\n", "    listen ", o.listen, " ssl;\n", "    ssl_protocols TLSv1.3;\n",
      "    ssl_certificate \"", o.cert_file, "\";\n", "    ssl_certificate_key \"", o.key_file,
      "\";\n",
      "    # Only certificates of the hierarchy: agents (leaf, site issuing CA, root) and site "
      "systems.\n",
      "    ssl_client_certificate \"", o.ca_file, "\";\n", "    ssl_verify_client on;\n",
      "    ssl_verify_depth 2;\n", "    ssl_session_cache shared:strata_dp:10m;\n",
      "    ssl_session_timeout 1h;\n",
      "    # Kernel TLS (sendfile through TLS) where the kernel and OpenSSL allow.\n",
      "    ssl_conf_command Options KTLS;\n",
      revoked_serials.empty() ? "" : "    if ($strata_revoked) { return 403; }\n",
      "    location ~ \"^/content/sha256/([0-9a-f]{2})([0-9a-f]{62})$\" {\n",
      "      limit_except GET { deny all; }\n", "      alias \"", o.library, "/sha256/$1/$1$2\";\n",
      "      add_header Cache-Control \"public, max-age=31536000, immutable\";\n", "    }\n",
      "    location / { return 404; }\n", "  }\n}\n");
  return c;
}

absl::StatusOr<pid_t> Nginx::Spawn() {
  // Everything the child needs is made before fork(): after it, only
  // async-signal-safe calls.
  const std::string conf = o_.state_dir + "/nginx.conf";
  const std::string prefix = o_.state_dir + "/";
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e)
    if (!absl::StartsWith(*e, "NGINX=")) env.emplace_back(*e);
  env.push_back(absl::StrCat("NGINX=", listen_fd_, ";"));
  std::vector<char*> envp;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  const char* argv[] = {o_.binary.c_str(), "-c", conf.c_str(), "-p", prefix.c_str(), nullptr};
  static constexpr char kExecFailed[] = "strata-dp: cannot run nginx\n";
  pid_t pid = ::fork();
  if (pid < 0) return Errno("fork");
  if (pid == 0) {
    ::setpgid(0, 0);
    // The DP gone, nginx's master is told to stop: it stops its workers
    // too (a killed master would leave them serving, orphaned).
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::fcntl(listen_fd_, F_SETFD, 0);  // inherited by nginx
    ::execve(argv[0], const_cast<char* const*>(argv), envp.data());
    (void)!::write(2, kExecFailed, sizeof kExecFailed - 1);
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  return pid;
}

absl::Status Nginx::Start() {
  for (const char* sub : {"", "/temp"})
    if (::mkdir((o_.state_dir + sub).c_str(), 0755) != 0 && errno != EEXIST)
      return Errno(absl::StrCat("cannot create ", o_.state_dir, sub));
  const std::string pid_file = o_.state_dir + "/nginx.pid";
  // Workers of an nginx whose DP was killed still hold the group of their
  // master (the pid file's).
  if (auto old = ReadFile(pid_file); old.ok()) {
    int old_pid = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(*old), &old_pid)) KillNginxGroup(old_pid);
    ::unlink(pid_file.c_str());
  }
  RETURN_IF_ERROR(WriteConfig());
  loaded_stamp_ = FilesStamp();
  ASSIGN_OR_RETURN(pid_t pid, Spawn());
  for (int i = 0; i < 200; ++i) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid)
      return absl::InternalError(absl::StrCat("nginx (", o_.binary, ") exited at start with ",
                                              WIFEXITED(status)
                                                  ? absl::StrCat("code ", WEXITSTATUS(status))
                                                  : absl::StrCat("signal ", WTERMSIG(status)),
                                              "; its messages are above"));
    auto written = ReadFile(pid_file);
    if (written.ok() && absl::StripAsciiWhitespace(*written) == std::to_string(pid)) {
      {
        absl::MutexLock lock(&mu_);
        pid_ = pid;
      }
      LogInfo("dp.nginx_started", {{"pid", static_cast<int64_t>(pid)}});
      supervisor_ = std::thread([this] { Supervise(); });
      return absl::OkStatus();
    }
    ::usleep(50000);
  }
  ::kill(-pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return absl::InternalError("nginx did not start within 10 s");
}

void Nginx::Supervise() {
  Backoff backoff(std::chrono::seconds(1), std::chrono::seconds(30));
  while (true) {
    pid_t pid;
    {
      absl::MutexLock lock(&mu_);
      pid = pid_;
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    KillNginxGroup(pid);
    {
      absl::MutexLock lock(&mu_);
      pid_ = -1;
      if (stopping_) return;
    }
    LogWarning("dp.nginx_exited", {{"pid", static_cast<int64_t>(pid)},
                                   {"code", WIFEXITED(status) ? WEXITSTATUS(status) : -1},
                                   {"signal", WIFSIGNALED(status) ? WTERMSIG(status) : 0}});
    while (true) {
      if (stop_.WaitForNotificationWithTimeout(absl::FromChrono(backoff.Next()))) return;
      auto spawned = Spawn();
      if (spawned.ok()) {
        absl::MutexLock lock(&mu_);
        if (stopping_) {
          ::kill(-*spawned, SIGKILL);
          ::waitpid(*spawned, nullptr, 0);
          return;
        }
        pid_ = *spawned;
        LogInfo("dp.nginx_restarted", {{"pid", static_cast<int64_t>(pid_)}});
        break;
      }
      LogError("dp.nginx_not_restarted", {{"error", spawned.status()}});
    }
  }
}

void Nginx::Stop() {
  pid_t pid;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    pid = pid_;
  }
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (!supervisor_.joinable()) return;
  if (pid > 0) {
    ::kill(-pid, SIGTERM);  // fast shutdown: clients resume elsewhere
    for (int i = 0; i < 100; ++i) {
      {
        absl::MutexLock lock(&mu_);
        if (pid_ < 0) break;
      }
      ::usleep(50000);
    }
    ::kill(-pid, SIGKILL);
  }
  supervisor_.join();
}

absl::Status Nginx::WriteConfig() {
  std::vector<std::string> revoked;
  if (!o_.crl_file.empty()) {
    ASSIGN_OR_RETURN(std::shared_ptr<RevocationList> list,
                     RevocationList::Open(o_.crl_file, o_.ca_file));
    revoked = list->serials();
  }
  return WriteFileDurably(o_.state_dir + "/nginx.conf", NginxConfig(o_, revoked), 0644);
}

std::string Nginx::FilesStamp() const {
  std::string stamp;
  for (const std::string* f : {&o_.cert_file, &o_.key_file, &o_.ca_file, &o_.crl_file}) {
    struct stat st;
    if (::stat(f->c_str(), &st) == 0)
      absl::StrAppend(&stamp, st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec, "/", st.st_size, ";");
  }
  return stamp;
}

absl::StatusOr<bool> Nginx::ReloadIfChanged() {
  const std::string stamp = FilesStamp();
  if (stamp == loaded_stamp_) return false;
  RETURN_IF_ERROR(WriteConfig());
  absl::MutexLock lock(&mu_);
  if (pid_ <= 0) return false;  // the supervisor's restart reads the files anew
  if (::kill(pid_, SIGHUP) != 0) return Errno("cannot signal nginx");
  loaded_stamp_ = stamp;
  LogInfo("dp.nginx_reloaded", {{"pid", static_cast<int64_t>(pid_)}});
  return true;
}

pid_t Nginx::pid() {
  absl::MutexLock lock(&mu_);
  return pid_;
}

}  // namespace strata::dp
