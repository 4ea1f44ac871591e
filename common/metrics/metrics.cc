#include "common/metrics/metrics.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <sys/resource.h>
#include <unistd.h>

#include <exception>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/base/files.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/base/version.h"
#include "common/net/tls.h"  // WriteAddressFile
#include "prometheus/collectable.h"
#include "prometheus/exposer.h"
#include "prometheus/metric_family.h"

namespace strata::metrics {
namespace {

// host:port, host being "localhost", an IPv4 address or [IPv6]: what
// CivetWeb takes as one listening port (its lists and suffixes refused).
absl::Status SplitAddress(const std::string& address, std::string* host, int* port,
                          bool* loopback) {
  const auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "metrics.listen_address \"", address,
        "\": one host:port, the host an IP address or localhost, e.g. 127.0.0.1:9250"));
  };
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(address.substr(colon + 1), port) || *port < 0 || *port > 65535 ||
      address.substr(colon + 1).find_first_not_of("0123456789") != std::string::npos) {
    return bad();
  }
  *host = address.substr(0, colon);
  if (*host == "localhost") {
    *loopback = true;
    return absl::OkStatus();
  }
  in_addr v4{};
  in6_addr v6{};
  if (inet_pton(AF_INET, host->c_str(), &v4) == 1) {
    *loopback = (ntohl(v4.s_addr) >> 24) == 127;
    return absl::OkStatus();
  }
  if (host->size() > 2 && host->front() == '[' && host->back() == ']' &&
      inet_pton(AF_INET6, host->substr(1, host->size() - 2).c_str(), &v6) == 1) {
    *loopback = IN6_IS_ADDR_LOOPBACK(&v6);
    return absl::OkStatus();
  }
  return bad();
}

// The credentials file: one line user:password.
absl::Status ReadCredentials(const std::string& path, std::string* user, std::string* password) {
  auto text = ReadFile(path);
  if (!text.ok()) return Annotate(text.status(), "metrics.credentials_file");
  std::string line(absl::StripAsciiWhitespace(*text));
  const size_t colon = line.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == line.size() ||
      line.find('\n') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics.credentials_file ", path, ": one line user:password"));
  }
  *user = line.substr(0, colon);
  *password = line.substr(colon + 1);
  return absl::OkStatus();
}

double ProcessStartSeconds() {
  // /proc/self/stat field 22: start time in clock ticks after boot.
  std::string stat = ReadFileOrEmpty("/proc/self/stat");
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return 0;
  std::vector<std::string> fields = absl::StrSplit(stat.substr(paren + 2), ' ');
  double ticks = 0;
  if (fields.size() < 20 || !absl::SimpleAtod(fields[19], &ticks)) return 0;
  double boot = 0;
  for (absl::string_view line : absl::StrSplit(ReadFileOrEmpty("/proc/stat"), '\n')) {
    if (absl::ConsumePrefix(&line, "btime ")) (void)absl::SimpleAtod(line, &boot);
  }
  return boot + ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

void AddProcess(Sample& s, const std::string& component, double start_seconds) {
  s.Gauge("strata_build_info", "The running version (value 1)", 1,
          {{"component", component}, {"version", kVersion}});
  int fds = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (readdir(d) != nullptr) ++fds;
    closedir(d);
    fds -= 3;  // ".", ".." and this directory's own descriptor
  }
  s.Gauge("process_open_fds", "Open file descriptors", fds);
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    s.Gauge("process_max_fds", "Open file descriptor limit (LimitNOFILE)",
            static_cast<double>(limit.rlim_cur));
  }
  std::vector<std::string> statm = absl::StrSplit(ReadFileOrEmpty("/proc/self/statm"), ' ');
  double pages = 0;
  if (statm.size() > 1 && absl::SimpleAtod(statm[1], &pages)) {
    s.Gauge("process_resident_memory_bytes", "Resident memory",
            pages * static_cast<double>(sysconf(_SC_PAGESIZE)));
  }
  s.Gauge("process_start_time_seconds", "Start time, seconds since the epoch", start_seconds);
}

prometheus::ClientMetric ToMetric(const Sample::Point& p, bool counter) {
  prometheus::ClientMetric m;
  for (const auto& [name, value] : p.labels) m.label.push_back({name, value});
  if (counter) {
    m.counter.value = p.value;
  } else {
    m.gauge.value = p.value;
  }
  return m;
}

}  // namespace

void Sample::Add(const std::string& name, const std::string& help, bool counter, double value,
                 const Labels& labels) {
  Family& f = families_[name];
  f.help = help;
  f.counter = counter;
  f.points.push_back({labels, value});
}

void Sample::Absorb(Sample&& other) {
  for (auto& [name, f] : other.families_) {
    Family& mine = families_[name];
    mine.help = f.help;
    mine.counter = f.counter;
    for (auto& p : f.points) mine.points.push_back(std::move(p));
  }
  other.families_.clear();
}

void Sample::Gauge(const std::string& name, const std::string& help, double value,
                   const Labels& labels) {
  Add(name, help, false, value, labels);
}

void Sample::Counter(const std::string& name, const std::string& help, double value,
                     const Labels& labels) {
  Add(name, help, true, value, labels);
}

absl::Status ValidateMetricsConfig(const v1::MetricsConfig& config) {
  if (config.listen_address().empty()) return absl::OkStatus();
  std::string host;
  int port = 0;
  bool loopback = false;
  if (absl::Status s = SplitAddress(config.listen_address(), &host, &port, &loopback); !s.ok()) {
    return s;
  }
  if (!config.credentials_file().empty()) {
    std::string user, password;
    return ReadCredentials(config.credentials_file(), &user, &password);
  }
  if (!loopback) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metrics.listen_address ", config.listen_address(),
        " is reachable from other hosts: set metrics.credentials_file (user:password for the "
        "scraper), or listen on 127.0.0.1 and scrape on this host"));
  }
  return absl::OkStatus();
}

// A scrape: the server's figures and the process's, as prometheus-cpp's
// families. Collect() runs on CivetWeb's threads.
class Endpoint::Impl : public prometheus::Collectable {
 public:
  Impl(std::string component, CollectFn collect)
      : component_(std::move(component)),
        collect_(std::move(collect)),
        start_seconds_(ProcessStartSeconds()) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    // CivetWeb's worker threads have small stacks (a site's collect opens a
    // database connection; under AddressSanitizer a scrape overflowed one):
    // the figures are read on a thread of our own.
    Sample s;
    std::thread reader([&] {
      AddProcess(s, component_, start_seconds_);
      if (collect_) collect_(s);
    });
    reader.join();
    std::vector<prometheus::MetricFamily> out;
    for (const auto& [name, f] : s.families()) {
      prometheus::MetricFamily family;
      family.name = name;
      family.help = f.help;
      family.type = f.counter ? prometheus::MetricType::Counter : prometheus::MetricType::Gauge;
      for (const auto& p : f.points) family.metric.push_back(ToMetric(p, f.counter));
      out.push_back(std::move(family));
    }
    return out;
  }

  std::shared_ptr<Impl> self;  // the exposer holds a weak_ptr to this
  std::unique_ptr<prometheus::Exposer> exposer;

 private:
  std::string component_;
  CollectFn collect_;
  double start_seconds_;
};

Endpoint::Endpoint(std::unique_ptr<Impl> impl, std::string bound_address)
    : impl_(std::move(impl)), bound_address_(std::move(bound_address)) {}

Endpoint::~Endpoint() {
  // Stop serving (CivetWeb's threads end) before the collect function's
  // owner goes away.
  if (impl_) impl_->exposer.reset();
}

absl::StatusOr<std::unique_ptr<Endpoint>> Endpoint::Start(const v1::MetricsConfig& config,
                                                          const std::string& component,
                                                          CollectFn collect) {
  if (config.listen_address().empty()) return std::unique_ptr<Endpoint>();
  if (absl::Status s = ValidateMetricsConfig(config); !s.ok()) return s;
  std::string user, password;
  if (!config.credentials_file().empty()) {
    RETURN_IF_ERROR(ReadCredentials(config.credentials_file(), &user, &password));
  }
  std::string host;
  int port = 0;
  bool loopback = false;
  RETURN_IF_ERROR(SplitAddress(config.listen_address(), &host, &port, &loopback));
  // CivetWeb names localhost by address.
  const std::string bind =
      host == "localhost" ? absl::StrCat("127.0.0.1:", port) : config.listen_address();
  auto impl = std::make_unique<Impl>(component, std::move(collect));
  try {
    impl->exposer = std::make_unique<prometheus::Exposer>(
        std::vector<std::string>{"listening_ports", bind, "num_threads", "2"});
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("metrics: cannot listen on ", config.listen_address(), ": ", e.what()));
  }
  // Credentials first: no scrape is answered without them.
  if (!user.empty()) {
    impl->exposer->RegisterAuth(
        [user, password](const std::string& u, const std::string& p) {
          return u.size() == user.size() && p.size() == password.size() &&
                 CRYPTO_memcmp(u.data(), user.data(), u.size()) == 0 &&
                 CRYPTO_memcmp(p.data(), password.data(), p.size()) == 0;
        },
        "Strata metrics");
  }
  // The exposer holds collectables by weak_ptr: a shared_ptr that does not
  // own (the Endpoint does).
  impl->self = std::shared_ptr<Impl>(impl.get(), [](Impl*) {});
  impl->exposer->RegisterCollectable(impl->self);
  std::vector<int> ports = impl->exposer->GetListeningPorts();
  const std::string bound = absl::StrCat(host, ":", ports.empty() ? port : ports.front());
  WriteAddressFile(config.address_file(), bound);
  LogInfo("metrics.listening", {{"address", bound}, {"auth", user.empty() ? "none" : "basic"}});
  return std::unique_ptr<Endpoint>(new Endpoint(std::move(impl), bound));
}

}  // namespace strata::metrics
