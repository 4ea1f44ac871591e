#pragma once

// An agent's notification stream: held to the first MP that answers, moved
// to the next when it fails (failover, as for the other calls), reconnected
// with jittered backoff (so that a fleet whose MP restarted does not come
// back in step). What the MP says is handed to the agent as the kind of
// work it asks for.
//
// Run() on one thread until Stop() (any thread).

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "strata/v1/client.grpc.pb.h"

namespace strata::agent {

class NotifyLoop {
 public:
  struct Hooks {
    std::function<std::vector<std::string>()> mps;  // in order of preference
    std::function<absl::StatusOr<std::unique_ptr<v1::ManagementPoint::Stub>>(const std::string&)>
        stub;
    std::function<bool()> has_identity;          // registered yet?
    std::function<std::string()> known_version;  // of the policy the agent holds
    // POLICY_CHANGED (also for a CONNECTED naming another policy version
    // than the agent's: a change made while no stream was held),
    // FULL_INVENTORY or RUN_NOW.
    std::function<void(v1::NotificationKind kind)> notified;
  };

  explicit NotifyLoop(Hooks hooks) : hooks_(std::move(hooks)) {}

  void Run();
  void Stop();

 private:
  bool stopping();
  // Waits up to `d`; false once stopping.
  bool Sleep(absl::Duration d);
  // Holds a stream to `mp` until it ends; true if the MP answered.
  bool Hold(const std::string& mp, v1::ManagementPoint::Stub& stub);

  const Hooks hooks_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* ctx_ ABSL_GUARDED_BY(mu_) = nullptr;  // the stream held now
};

}  // namespace strata::agent
