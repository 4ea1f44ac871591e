#include "agent/notify_loop.h"

#include "common/base/backoff.h"
#include "common/base/log.h"
#include "common/net/tls.h"

namespace strata::agent {

void NotifyLoop::Stop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  if (ctx_) ctx_->TryCancel();
}

bool NotifyLoop::stopping() {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

bool NotifyLoop::Sleep(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
  return !mu_.AwaitWithTimeout(absl::Condition(&stop), d);
}

void NotifyLoop::Run() {
  Backoff backoff(std::chrono::seconds(1), std::chrono::seconds(60), /*jitter=*/true);
  size_t next = 0;
  while (!stopping()) {
    if (!hooks_.has_identity()) {
      if (!Sleep(absl::Seconds(1))) break;
      continue;
    }
    auto mps = hooks_.mps();
    if (mps.empty()) return;  // the configuration requires one; nothing to hold
    const std::string mp = mps[next % mps.size()];
    auto stub = hooks_.stub(mp);
    bool answered = stub.ok() && Hold(mp, **stub);
    if (answered) {
      backoff.Reset();
    } else {
      ++next;
      if (next % mps.size() != 0) continue;  // the next MP at once
    }
    if (!Sleep(absl::FromChrono(backoff.Next()))) break;
  }
}

bool NotifyLoop::Hold(const std::string& mp, v1::ManagementPoint::Stub& stub) {
  grpc::ClientContext ctx;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return false;
    ctx_ = &ctx;
  }
  bool answered = false;
  auto reader = stub.Notify(&ctx, v1::NotifyRequest());
  v1::Notification n;
  while (reader->Read(&n)) {
    answered = true;
    v1::NotificationKind kind = n.kind();
    if (kind == v1::NOTIFICATION_KIND_CONNECTED) {
      LogInfo("agent.notify_connected", {{"mp", mp}, {"version", n.detail()}});
      // The MP's policy version: a change made while no stream was held
      // (before the first, between two) is not missed.
      if (n.detail().empty() || n.detail() == hooks_.known_version()) continue;
      kind = v1::NOTIFICATION_KIND_POLICY_CHANGED;
    } else if (kind != v1::NOTIFICATION_KIND_POLICY_CHANGED &&
               kind != v1::NOTIFICATION_KIND_FULL_INVENTORY &&
               kind != v1::NOTIFICATION_KIND_RUN_NOW) {
      continue;
    }
    LogInfo("agent.notified", {{"kind", v1::NotificationKind_Name(n.kind())}});
    hooks_.notified(kind);
  }
  grpc::Status s = reader->Finish();
  {
    absl::MutexLock lock(&mu_);
    ctx_ = nullptr;
  }
  if (!stopping()) {
    LogInfo("agent.notify_stream_ended", {{"mp", mp}, {"error", FromGrpcStatus(s)}});
  }
  return answered;
}

}  // namespace strata::agent
