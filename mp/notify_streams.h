#pragma once

// Agents' notification streams at a management point (ManagementPoint.Notify,
// gRPC's callback API: no thread per stream). One stream per client, the
// newest replacing an older one; each a reactor that queues notifications
// (one write in flight, a kind already queued not queued twice) and deletes
// itself when gRPC is done with it. Streams are admitted up to a limit (one
// open file each: see open_files.h).
//
// Thread-safe. Locks: the registry's, then a stream's; the `version_of`
// function is called under a stream's lock and must not take the registry's.

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/support/server_callback.h"
#include "strata/v1/client.pb.h"

namespace strata::mp {

class NotifyStreams {
 public:
  // Runs its argument with OK once the client may hold a stream (or with
  // the refusal): ClientDirectory::Check.
  using Authorize = std::function<void(std::function<void(absl::Status)>)>;

  // `version_of(id)`: the policy version client `id` is served, carried by
  // CONNECTED and POLICY_CHANGED.
  NotifyStreams(int64_t max_streams, std::function<std::string(const std::string&)> version_of);

  // What a stream is told as it opens (CONNECTED first), asked once the
  // client is authorized.
  using Greeting = std::function<std::vector<v1::NotificationKind>()>;

  // A stream for client `id`: refused with RESOURCE_EXHAUSTED beyond the
  // limit; else held open once `authorize` allows it, and greeted.
  grpc::ServerWriteReactor<v1::Notification>* Open(const std::string& id,
                                                   const Authorize& authorize, Greeting greeting);
  // A stream that ends at once with `status`.
  static grpc::ServerWriteReactor<v1::Notification>* Refuse(const grpc::Status& status);

  void Push(const std::string& id, v1::NotificationKind kind);
  void Close(const std::string& id, const grpc::Status& status);
  void CloseAll(const grpc::Status& status);

  std::vector<std::string> Ids();
  int64_t held();  // registered (authorized) streams

 private:
  class Stream;
  void Unregister(const std::string& id, Stream* stream);
  void Release();

  const int64_t max_streams_;
  const std::function<std::string(const std::string&)> version_of_;
  absl::Mutex mu_;
  std::unordered_map<std::string, Stream*> streams_ ABSL_GUARDED_BY(mu_);
  // From admission (not authorization, which may take seconds) to the end.
  int64_t admitted_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace strata::mp
