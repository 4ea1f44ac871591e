#pragma once

// strata-agent: registers with a management point, holds its nudge channel
// (nudge_loop.h), fetches policy when nudged or on schedule, and reports
// inventory (first full, then deltas), heartbeats and state messages
// through a durable outbound queue.
//
// State directory (one per agent; 0711: a job running as a named user may
// pass through to its own folder; nobody else lists it, and its files are
// the agent's own, content in cache/ aside, which is no secret):
//   client_id, client.key, client.pem   identity (key 0600)
//   site                                the site it registered with (device.site)
//   policy.pb                           last policy (settings + version)
//   inventory.pb                        the inventory last queued (delta base)
//   seq                                 last report sequence used
//   schedule                            last run of each schedule
//   mps                                 management points from service location
//                                       ("address nudge_address" per line)
//   queue/<seq>.pb                      reports not yet acknowledged
//   cache/                              downloaded content (content_cache.h)
//   deployments/<id>.pb                 the install engine's journal (install_engine.h)
//   runs/<id>/                          a deployment's job: content/, output.log, exit
//   reboot_pending                      deployments whose install wants a reboot
//   requests/<id>                       strata-agent install NAME, until the engine takes it
//   scripts/<run>.pb, scripts/<run>/    a script run's record, its folder while it runs
//                                       (script_engine.h)
//   live/<query>.done, live/work/       live queries answered; the commands they run
//                                       (live_query_engine.h)

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "agent/agent_config.h"
#include "common/base/version.h"
#include "strata/v1/client.pb.h"
#include "strata/v1/config.pb.h"

namespace strata::agent {

class Agent {
 public:
  explicit Agent(v1::AgentConfig config);
  ~Agent();

  // One cycle with everything due now: register, locate, policy, inventory,
  // heartbeat, send the queue. OK when the queue was delivered.
  absl::Status RunOnce();
  // Runs until Stop(): schedules from policy with splay, the notification
  // channel, retries with backoff and failover to the next MP.
  absl::Status Run();
  void Stop();
  // A content version (`version` 0: the newest) and the DPs to download it
  // from, asked of an MP (failover). FailedPrecondition before registration.
  absl::StatusOr<v1::ContentLocation> GetContent(const std::string& package, int64_t version);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

int AgentMain(int argc, char** argv);

}  // namespace strata::agent
