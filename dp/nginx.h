#pragma once

// nginx as a distribution point's web server. The DP writes its
// configuration (TLS 1.3, client certificates required and verified against
// the hierarchy CA, sendfile, kernel TLS where the kernel and OpenSSL allow,
// immutable content-addressed URLs /content/sha256/<hex> mapped onto the
// library's blobs), opens the listening socket itself and hands it to nginx
// (nginx takes inherited sockets from the NGINX environment variable), so a
// port 0 gets a free port and a restarted nginx keeps the address. nginx
// runs in its own process group, is restarted with backoff when it exits,
// and stops with the DP: its master gets SIGTERM as the parent-death signal
// and stops its workers (workers of a master killed outright are killed by
// the supervisor, or at the DP's next start).

#include <sys/types.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace strata::dp {

// A listening socket opened for nginx.
struct Listener {
  int fd = -1;
  std::string config_address;  // as nginx's listen directive names it
  std::string bound_address;   // as clients dial it: host:port or unix:/path
};
// `address`: host:port (port 0: any free port) or unix:/path.
absl::StatusOr<Listener> OpenListener(const std::string& address);

struct NginxOptions {
  std::string binary = "/usr/sbin/nginx";
  std::string state_dir;  // nginx.conf, nginx.pid, temp folders
  std::string library;    // the content library's root
  std::string cert_file, key_file, ca_file;
  std::string crl_file;  // tls.crl_file: its serials are refused (403)
  std::string listen;    // Listener::config_address
  int workers = 0;       // 0: one per core
  std::string user;      // worker processes' user (default: the DP's own)
};

// The configuration text for `o` (pure: tested on its own), refusing
// client certificates with these serials (as $ssl_client_serial prints
// them). nginx's own ssl_crl cannot be used: it wants a CRL from every CA
// of a chain, and the sites' issuing CAs publish none.
std::string NginxConfig(const NginxOptions& o,
                        const std::vector<std::string>& revoked_serials = {});

class Nginx {
 public:
  Nginx(NginxOptions options, int listen_fd) : o_(std::move(options)), listen_fd_(listen_fd) {}
  ~Nginx() { Stop(); }

  // Writes the configuration, starts nginx, waits (up to 10 s) until it
  // serves; Internal with nginx's exit code if it does not start.
  absl::Status Start();
  // Stops nginx (SIGTERM, then SIGKILL after 5 s) and its supervision.
  void Stop();
  pid_t pid();
  // Rewrites the configuration and has nginx reload it (SIGHUP: new
  // workers take new connections, old ones finish their transfers) when a
  // file it reads (certificate, key, CA, CRL) changed since the last
  // (re)load: a renewed certificate is served, and a revoked one refused,
  // without a restart. Returns whether it reloaded.
  absl::StatusOr<bool> ReloadIfChanged();

 private:
  absl::StatusOr<pid_t> Spawn();
  void Supervise();

  // Modification times of the files nginx reads, as last loaded.
  std::string FilesStamp() const;
  // Writes nginx.conf, with the CRL's serials; InvalidArgument when the CRL
  // does not verify (nginx keeps what it runs).
  absl::Status WriteConfig();

  const NginxOptions o_;
  const int listen_fd_;
  std::string loaded_stamp_;
  absl::Mutex mu_;
  pid_t pid_ ABSL_GUARDED_BY(mu_) = -1;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Notification stop_;
  std::thread supervisor_;
};

}  // namespace strata::dp
