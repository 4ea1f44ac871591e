#pragma once

// The agent's live queries: each query its policy names is answered once,
// before its expiry, from what the machine shows now (live_facts.h), on a
// thread of its own: the rows its select picks (collections::SelectRows),
// at most the query's rows and bytes; a query that runs past its time limit
// or reads too many rows is stopped and reported too costly. Answers go up
// through the agent's durable queue (small ones up the nudge channel). A
// marker per answered query (state_dir/live/<id>.done, kept 2 days) keeps a
// restarted agent from answering again.

#include <atomic>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "agent/collectors.h"
#include "strata/v1/client.pb.h"

namespace strata::agent {

struct LiveQueryEngineOptions {
  std::string state_dir;
  CollectorContext collectors;
  std::function<std::string()> site;  // the site the agent registered with (device.site)
  std::function<absl::Status(v1::ClientReport)> report;
};

class LiveQueryEngine {
 public:
  explicit LiveQueryEngine(LiveQueryEngineOptions options);
  ~LiveQueryEngine();

  void SetQueries(std::vector<v1::LiveQueryPolicy> queries);
  void Start();
  void Stop();
  // Answers every query due, on the caller's thread.
  void RunPass();
  // The answer to `q` now (no marker, no report).
  v1::LiveQueryAnswer Answer(const v1::LiveQueryPolicy& q) const;

 private:
  void Loop();
  std::string Marker(const std::string& id) const;
  void Prune();

  const LiveQueryEngineOptions options_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<v1::LiveQueryPolicy> queries_ ABSL_GUARDED_BY(mu_);
  bool changed_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace strata::agent
