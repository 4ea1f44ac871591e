#pragma once

// Each server's counters for an existing monitoring stack: a Prometheus
// scrape endpoint (text format, GET /metrics) served by prometheus-cpp's
// pull library (CivetWeb), not a hand-written exporter.
//
// Figures are read when scraped: a server gives a Collect function that
// fills a Sample from what it already keeps (link status, spool depth,
// channels held, queue lengths); the endpoint adds the process's own
// (open files and their limit, resident memory, start time, version).
//
// Admin-only: the endpoint binds `metrics.listen_address` (none by
// default). A loopback address serves a scraper on the host; any other
// address requires HTTP basic-auth credentials (`credentials_file`, one
// line user:password, readable only by root and the service), and the
// server refuses to start without them. CivetWeb's own TLS is not used: it
// loads OpenSSL by an unversioned name at run time, which a host without
// libssl-dev lacks (docs/operations.md: scrape locally, or through a TLS
// proxy).

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "strata/v1/config.pb.h"

namespace strata::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

// The figures of one scrape, grouped by metric name.
class Sample {
 public:
  void Gauge(const std::string& name, const std::string& help, double value,
             const Labels& labels = {});
  // Monotonic totals; `name` ends in _total.
  void Counter(const std::string& name, const std::string& help, double value,
               const Labels& labels = {});

  struct Point {
    Labels labels;
    double value;
  };
  struct Family {
    std::string help;
    bool counter = false;
    std::vector<Point> points;
  };
  const std::map<std::string, Family>& families() const { return families_; }
  // Adds `other`'s figures to these.
  void Absorb(Sample&& other);

 private:
  void Add(const std::string& name, const std::string& help, bool counter, double value,
           const Labels& labels);
  std::map<std::string, Family> families_;
};

using CollectFn = std::function<void(Sample&)>;

// InvalidArgument for a listen address that is not host:port, or a
// non-loopback address without credentials_file.
absl::Status ValidateMetricsConfig(const v1::MetricsConfig& config);

class Endpoint {
 public:
  // Serves `collect`'s figures, labelled component="mp" etc. in
  // strata_build_info, until destroyed. With an empty listen address,
  // returns nullptr (no endpoint). Writes the bound address to
  // config.address_file() if set.
  static absl::StatusOr<std::unique_ptr<Endpoint>> Start(const v1::MetricsConfig& config,
                                                         const std::string& component,
                                                         CollectFn collect);
  ~Endpoint();
  const std::string& bound_address() const { return bound_address_; }

  class Impl;

 private:
  explicit Endpoint(std::unique_ptr<Impl> impl, std::string bound_address);
  std::unique_ptr<Impl> impl_;
  std::string bound_address_;
};

}  // namespace strata::metrics
