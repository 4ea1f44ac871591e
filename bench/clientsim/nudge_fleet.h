#pragma once

// Simulated agents' nudge channels: thousands of nudge::Connection on one
// libevent loop thread, each with its own client certificate, opened
// `concurrency` handshakes at a time, redialled after they end with the
// agent's own policy (nudge::Reconnect: spread after a held channel ends,
// backoff after a failed dial). On POLICY_CHANGED a client takes the policy
// the nudge carries, as the agent does; or, to measure what that saves
// (set_fetch_over_grpc), waits a random part of the nudge's spread and
// fetches it over gRPC. Used by strata-clientsim (bench/mp) and the
// integration tests.
//
// Thread-safe: the public calls post to the loop or read atomics.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "bench/clientsim/sim_client.h"
#include "common/nudge/client.h"

struct event_base;
struct event;

namespace strata::sim {

class NudgeFleet {
 public:
  // `clients` outlive the fleet.
  NudgeFleet(std::string nudge_address, std::vector<SimClient*> clients, int concurrency);
  ~NudgeFleet();

  // Opens every channel (redialling those that end from then on).
  void OpenAll();
  // Closes every channel and stops redialling.
  void CloseAll();

  int held() const { return held_.load(); }
  int64_t welcomes() const { return welcomes_.load(); }
  int64_t resumed() const { return resumed_.load(); }

  // Sends client `i`'s reports up its held channel, as an agent sends small
  // ones; `done` (on the loop's thread) says whether the MP acknowledged
  // them (false: no channel, or it ended first).
  void SendReports(size_t i, v1::ReportRequest reports, std::function<void(bool)> done);

  // Called (on the loop's thread) with the client's index when a
  // WORK_WAITING nudge reaches it (runbook workers).
  void set_on_work_waiting(std::function<void(size_t)> fn);

  // Ignore the policy a nudge carries and fetch it over gRPC instead.
  void set_fetch_over_grpc(bool on) { fetch_over_grpc_ = on; }

  // Per client: the wall-clock ms of the last welcome, of the last
  // POLICY_CHANGED, and of the new policy held after it, from the nudge or
  // fetched (0: none).
  struct Times {
    int64_t welcomed_ms = 0;
    int64_t policy_changed_ms = 0;
    int64_t fetched_ms = 0;
    int deployments = 0;                 // application deployments in the policy held
    std::string script_run, live_query;  // the last of each in a policy held ("": none)
  };
  std::vector<Times> times();
  // Forgets the POLICY_CHANGED and fetch times (before a measurement).
  void ResetPolicyTimes();
  int64_t fetch_failures() const { return fetch_failures_.load(); }
  // Why channels ended, by message (first few kinds), and how often.
  std::map<std::string, int> end_reasons();

 private:
  struct Member;
  void Post(std::function<void()> fn);
  static void OnWake(int, short, void* self);
  static void OnTick(int, short, void* self);
  void Dial(Member& m);
  void Ended(Member& m, const absl::Status& why);
  void Fetch(Member& m, int spread_ms);
  // What a policy held names (its deployments, the newest script run and
  // live query).
  static void Hold(Member& m, const v1::PolicyResponse& policy);
  void DialDue();

  const std::string address_;
  const int concurrency_;
  event_base* base_;
  event* wake_;
  event* tick_;
  std::thread thread_;
  std::vector<std::unique_ptr<Member>> members_;  // the loop's
  int dialing_ = 0;                               // the loop's
  // Connections that ended, freed on the next tick (they end inside their
  // own callbacks). The loop's.
  std::vector<std::unique_ptr<nudge::Connection>> dead_;
  bool open_ = false;  // the loop's

  std::atomic<bool> fetch_over_grpc_{false};
  std::atomic<int> held_{0};
  std::atomic<int64_t> welcomes_{0}, resumed_{0}, fetch_failures_{0};
  absl::Mutex mu_;
  std::vector<std::function<void()>> posted_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> end_reasons_ ABSL_GUARDED_BY(mu_);
  std::function<void(size_t)> on_work_waiting_ ABSL_GUARDED_BY(mu_);
  int fetches_in_flight_ ABSL_GUARDED_BY(mu_) = 0;  // gRPC calls the destructor waits for
};

}  // namespace strata::sim
