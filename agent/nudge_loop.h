#pragma once

// An agent's nudge channel (common/nudge): one light TLS connection held to
// the first MP whose nudge address it knows (service location hands it
// out), moved to the next when it fails, redialled with the spread and
// backoff of nudge::Reconnect. What the MP says is handed to the agent as
// the kind of work it asks for, with the spread to wait before fetching.
// A welcome naming another policy version than the agent's is a change made
// while it held no channel: it is handed on as POLICY_CHANGED (with the
// policy, which the MP sends along). While no
// channel is held, held() is false and the agent polls more often.
//
// Run() on one thread (it runs a libevent loop) until Stop() (any thread).

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/net/tls.h"
#include "strata/v1/client.pb.h"

struct event_base;
namespace strata::nudge {
class Connection;
}

namespace strata::agent {

class NudgeLoop {
 public:
  struct Hooks {
    // MPs in order of preference, each with its nudge address ("" while
    // not known).
    std::function<std::vector<std::pair<std::string, std::string>>()> mps;
    std::function<bool()> has_identity;                    // registered yet?
    std::function<absl::StatusOr<ChannelPem>()> identity;  // CA, certificate, key
    std::function<std::string()> known_version;            // of the policy the agent holds
    // POLICY_CHANGED, FULL_INVENTORY, RUN_NOW or WORK_WAITING; fetch after
    // a random wait of up to `spread_ms`. `policy`: the new policy itself
    // when the MP sent it along (then there is nothing to fetch), or null.
    std::function<void(v1::NotificationKind kind, int spread_ms, const v1::PolicyResponse* policy)>
        notified;
    // The channel was welcomed (true) or ended (false).
    std::function<void(bool held)> channel;
    // Service location over gRPC (failing over between MPs), which learns
    // the nudge address of the MP that answers: called when no MP's nudge
    // address is known, and after a round of failed dials.
    std::function<void()> locate;
  };

  explicit NudgeLoop(Hooks hooks);
  ~NudgeLoop();

  void Run();
  void Stop();
  bool held() const { return held_.load(); }

  // Sends small reports up on the held channel (any thread) and waits for
  // the MP's acknowledgement: the seq it spooled through; Unavailable when
  // no channel is held or it ended, DeadlineExceeded after `timeout`.
  absl::StatusOr<int64_t> SendReports(const v1::ReportRequest& reports, absl::Duration timeout);

 private:
  bool stopping();
  // Waits up to `d`; false once stopping.
  bool Sleep(absl::Duration d);
  // Holds a channel to `mp` at `address` until it ends; the status it
  // ended with (OK when stopped).
  absl::Status Hold(const std::string& mp, const std::string& address, bool* welcomed);

  struct PendingReports {
    bool done = false;
    absl::StatusOr<int64_t> result = absl::UnavailableError("not sent");
  };
  static void Finish(PendingReports& p, absl::StatusOr<int64_t> result);
  void SendOnLoop(const v1::ReportRequest& reports);

  const Hooks hooks_;
  std::atomic<bool> held_{false};
  nudge::Connection* conn_ = nullptr;      // the connection held now (Run's thread)
  std::map<std::string, void*> sessions_;  // SSL_SESSION* by nudge address (Run's thread)
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  event_base* base_ ABSL_GUARDED_BY(mu_) = nullptr;               // of the channel held now
  std::shared_ptr<PendingReports> pending_ ABSL_GUARDED_BY(mu_);  // reports awaiting their ack
  // An ack did not come in time: the channel takes no more reports until
  // the next one is welcomed (a late ack must not stand for a newer batch).
  bool reports_blocked_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace strata::agent
