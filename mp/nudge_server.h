#pragma once

// The management point's nudge channel: a listener of its own beside the
// gRPC service, on which every agent holds one light mutual-TLS connection
// that only says "check now" (policy changed, send a full inventory, run
// now, work waiting); the agent then fetches over gRPC. Configuration
// Manager's client notification channel (TCP 10123) plays the same part.
//
// Built on libevent (bufferevent_openssl): one event loop thread, no thread
// or gRPC stream per client, OpenSSL's buffers released while a connection
// is idle. Per connection: TLS 1.3 handshake (the client certificate must
// chain to the hierarchy CA and name an agent) and the agent's hello done
// within `hello_timeout` of the accept (a deadline: slow-loris), the client
// looked up (ClientDirectory::Check), a welcome
// with the policy it is served (the settings too when its hello named
// another version) and what it missed, then nudges and pongs. Policy rides
// the channel because it is a few dozen bytes and a fleet fetching it over
// gRPC at once costs the MP a TLS connection each (bench/mp measures both);
// for the same reason small reports may come up on it (a fleet reporting a
// deployment's state at once), acknowledged once spooled. A client silent for
// three keep-alives is dropped.
//
// Connections beyond `max_clients` are closed at once (the agent polls
// meanwhile); an accept() that fails (out of open files) pauses the
// listener for a second instead of spinning.
//
// Thread-safe: Push, Close, Ids and counts may be called from any thread;
// the hooks run on the loop thread (authorize's `then` from any thread).

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "strata/v1/client.pb.h"
#include "strata/v1/config.pb.h"

namespace strata::mp {

class NudgeServer {
 public:
  struct Options {
    std::string listen_address;  // host:port (0: any) or unix:/path
    v1::TlsConfig tls;           // the MP's certificate
    int64_t max_clients = 1000;
    int keepalive_s = 120;
    absl::Duration hello_timeout = absl::Seconds(10);
    // The spread of fetches after a nudge to many clients at once.
    int fetches_per_second = 200;
  };
  struct Hooks {
    // Runs `then` with OK once client `id` may hold a channel, or with the
    // refusal (ClientDirectory::Check).
    std::function<void(const std::string& id, std::function<void(absl::Status)> then)> authorize;
    // The policy client `id` is served (welcome, POLICY_CHANGED); none
    // while the site has not confirmed the client.
    std::function<std::optional<v1::PolicyResponse>(const std::string& id)> policy;
    // Whether the site asked `id` for a full inventory (told on welcome).
    std::function<bool(const std::string& id)> full_requested;
    // Reports `id` sent on its channel: `done` (from any thread) with the
    // seq acknowledged once they are durably spooled, or the refusal
    // (AgentService::Accept: the same checks as the gRPC Report).
    std::function<void(const std::string& id, const v1::ReportRequest& reports,
                       std::function<void(absl::StatusOr<int64_t>)> done)>
        report;
    // Client `id` now holds a channel (true), or no longer does (false).
    std::function<void(const std::string& id, bool online)> presence;
  };
  struct Counts {
    int64_t held = 0;          // welcomed, holding the channel
    int64_t connecting = 0;    // handshake, hello or lookup under way
    int64_t refused_full = 0;  // closed at accept: at max_clients
    int64_t refused = 0;       // bad certificate, unknown or revoked client, bad frames
    int64_t nudges_sent = 0;
    int64_t reports_received = 0;  // reports acknowledged on channels
  };

  static absl::StatusOr<std::unique_ptr<NudgeServer>> Start(Options options, Hooks hooks);
  ~NudgeServer();  // Stop("management point stopping")

  // Says goodbye to every client, stops listening and joins the loop.
  void Stop(const std::string& reason);

  // "host:port" or "unix:/path", as clients dial it.
  const std::string& bound_address() const;

  // Nudges these clients (those holding the channel; RUN_NOW and
  // WORK_WAITING for a client not holding it are kept, bounded, and told
  // when it next connects). POLICY_CHANGED carries each client's policy.
  void Push(std::vector<std::string> ids, v1::NotificationKind kind);
  // Ends client `id`'s channel with a goodbye (revoked, blocked).
  void Close(const std::string& id, const std::string& reason);

  std::vector<std::string> Ids();
  int64_t held();
  Counts counts();

 private:
  class Impl;
  explicit NudgeServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The nudge listen address an MP listening for gRPC on `grpc_listen` uses
// unless configured: unix:PATH -> unix:PATH.nudge; host:0 -> host:0;
// host:port -> host:10123 (Configuration Manager's notification port).
std::string DefaultNudgeAddress(const std::string& grpc_listen);

}  // namespace strata::mp
