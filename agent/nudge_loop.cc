#include "agent/nudge_loop.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/ssl.h>

#include <csignal>
#include <mutex>  // std::call_once

#include "common/base/log.h"
#include "common/base/version.h"
#include "common/nudge/client.h"
#include "common/nudge/reconnect.h"
#include "common/nudge/tls_context.h"

namespace strata::agent {

NudgeLoop::NudgeLoop(Hooks hooks) : hooks_(std::move(hooks)) {
  static std::once_flag once;
  std::call_once(once, [] {
    evthread_use_pthreads();
    signal(SIGPIPE, SIG_IGN);  // an MP gone mid-write: an error, not the end of the agent
  });
}

NudgeLoop::~NudgeLoop() {
  for (auto& [address, session] : sessions_) SSL_SESSION_free(static_cast<SSL_SESSION*>(session));
}

void NudgeLoop::Stop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  if (base_) event_base_loopexit(base_, nullptr);
}

bool NudgeLoop::stopping() {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

bool NudgeLoop::Sleep(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
  return !mu_.AwaitWithTimeout(absl::Condition(&stop), d);
}

void NudgeLoop::Run() {
  nudge::Reconnect reconnect;
  size_t next = 0;
  while (!stopping()) {
    if (!hooks_.has_identity()) {
      if (!Sleep(absl::Seconds(1))) break;
      continue;
    }
    // MPs whose nudge address is known (service location tells it).
    std::vector<std::pair<std::string, std::string>> mps;
    for (auto& mp : hooks_.mps()) {
      if (!mp.second.empty()) mps.push_back(std::move(mp));
    }
    if (mps.empty()) {
      hooks_.locate();
      if (!Sleep(absl::FromChrono(reconnect.Next()))) break;
      continue;
    }
    const auto& [mp, address] = mps[next % mps.size()];
    bool welcomed = false;
    absl::Status ended = Hold(mp, address, &welcomed);
    if (held_.exchange(false)) hooks_.channel(false);
    if (stopping()) break;
    LogInfo("agent.nudge_channel_ended", {{"mp", mp}, {"error", ended}});
    std::chrono::milliseconds wait;
    if (ended.code() == absl::StatusCode::kPermissionDenied) {
      wait = reconnect.Refused();  // revoked, blocked, replaced: the longest wait
    } else if (welcomed) {
      reconnect.Welcomed();
      wait = reconnect.Next();
    } else {
      ++next;
      if (next % mps.size() != 0) continue;  // the next MP at once
      hooks_.locate();                       // an MP not dialled yet may answer
      wait = reconnect.Next();
    }
    if (!Sleep(absl::FromChrono(wait))) break;
  }
}

absl::Status NudgeLoop::Hold(const std::string& mp, const std::string& address, bool* welcomed) {
  auto pem = hooks_.identity();
  if (!pem.ok()) return pem.status();
  auto ctx = nudge::MakeClientContext(*pem);
  if (!ctx.ok()) return ctx.status();
  event_base* base = event_base_new();
  if (base == nullptr) return absl::InternalError("event_base_new failed");
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      event_base_free(base);
      return absl::OkStatus();
    }
    base_ = base;
  }
  absl::Status ended;
  nudge::Connection* conn = nullptr;
  nudge::Connection::Handlers handlers;
  handlers.welcome = [&](const v1::NudgeWelcome& w) {
    {
      absl::MutexLock lock(&mu_);
      reports_blocked_ = false;
    }
    *welcomed = true;
    held_ = true;
    hooks_.channel(true);
    // The session to resume next time (a quick handshake after a restart).
    if (SSL_SESSION* session = conn->Session()) {
      auto& slot = sessions_[address];
      if (slot) SSL_SESSION_free(static_cast<SSL_SESSION*>(slot));
      slot = session;
    }
    LogInfo("agent.nudge_connected",
            {{"mp", mp}, {"nudge", address}, {"version", w.policy_version()}});
    if (!w.policy_version().empty() && w.policy_version() != hooks_.known_version()) {
      // Changed while no channel was held: not a nudge, the same work.
      LogInfo("agent.policy_changed_meanwhile", {{"held", hooks_.known_version()}});
      hooks_.notified(
          v1::NOTIFICATION_KIND_POLICY_CHANGED, 0,
          w.has_policy() && w.policy().version() == w.policy_version() ? &w.policy() : nullptr);
    }
  };
  handlers.nudge = [&](const v1::Nudge& n) {
    switch (n.kind()) {
      case v1::NOTIFICATION_KIND_POLICY_CHANGED:
      case v1::NOTIFICATION_KIND_FULL_INVENTORY:
      case v1::NOTIFICATION_KIND_RUN_NOW:
      case v1::NOTIFICATION_KIND_WORK_WAITING:
        break;
      default:
        return;  // a kind newer than this agent
    }
    LogInfo("agent.nudged", {{"kind", v1::NotificationKind_Name(n.kind()).substr(18)},
                             {"spread_ms", n.spread_ms()}});
    const bool with_policy = n.kind() == v1::NOTIFICATION_KIND_POLICY_CHANGED && n.has_policy() &&
                             !n.policy().version().empty();
    hooks_.notified(n.kind(), std::clamp(n.spread_ms(), 0, 10 * 60 * 1000),
                    with_policy ? &n.policy() : nullptr);
  };
  handlers.acked = [&](int64_t seq) {
    absl::MutexLock lock(&mu_);
    if (pending_) Finish(*pending_, seq);
  };
  handlers.closed = [&](const absl::Status& s) {
    ended = s;
    event_base_loopbreak(base);
  };
  {
    nudge::Connection connection(base, ctx->get(), handlers);
    conn = &connection;
    conn_ = &connection;
    v1::NudgeHello hello;
    hello.set_policy_version(hooks_.known_version());
    hello.set_agent_version(kVersion);
    auto it = sessions_.find(address);
    ended = connection.Start(
        address, hello, it == sessions_.end() ? nullptr : static_cast<SSL_SESSION*>(it->second));
    if (ended.ok()) event_base_dispatch(base);
    conn_ = nullptr;
  }
  {
    absl::MutexLock lock(&mu_);
    base_ = nullptr;
    if (pending_) Finish(*pending_, absl::UnavailableError("the nudge channel ended"));
  }
  event_base_free(base);
  return ended;
}

void NudgeLoop::Finish(PendingReports& p, absl::StatusOr<int64_t> result) {
  if (p.done) return;
  p.done = true;
  p.result = std::move(result);
}

void NudgeLoop::SendOnLoop(const v1::ReportRequest& reports) {
  const bool sent = conn_ != nullptr && conn_->SendReports(reports);
  absl::MutexLock lock(&mu_);
  if (!sent && pending_) Finish(*pending_, absl::UnavailableError("no nudge channel held"));
}

absl::StatusOr<int64_t> NudgeLoop::SendReports(const v1::ReportRequest& reports,
                                               absl::Duration timeout) {
  struct Post {
    NudgeLoop* self;
    v1::ReportRequest reports;
  };
  absl::MutexLock lock(&mu_);
  if (base_ == nullptr || !held_) return absl::UnavailableError("no nudge channel held");
  if (reports_blocked_) return absl::UnavailableError("the channel missed an acknowledgement");
  auto pending = std::make_shared<PendingReports>();
  pending_ = pending;
  // On the loop's thread (the Connection is not thread-safe). A loop that
  // ends first never runs it: the wait below ends with the channel.
  if (event_base_once(
          base_, -1, EV_TIMEOUT,
          [](evutil_socket_t, short, void* arg) {
            std::unique_ptr<Post> post(static_cast<Post*>(arg));
            post->self->SendOnLoop(post->reports);
          },
          new Post{this, reports}, nullptr) != 0) {
    pending_.reset();
    return absl::UnavailableError("the nudge loop took no work");
  }
  auto done = [&pending]() { return pending->done; };
  if (!mu_.AwaitWithTimeout(absl::Condition(&done), timeout)) {
    pending_.reset();
    reports_blocked_ = true;
    return absl::DeadlineExceededError("the MP did not acknowledge the reports in time");
  }
  pending_.reset();
  return pending->result;
}

}  // namespace strata::agent
