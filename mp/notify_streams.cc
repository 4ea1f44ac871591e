#include "mp/notify_streams.h"

#include <deque>

#include "absl/strings/str_cat.h"
#include "common/net/tls.h"

namespace strata::mp {
namespace {

constexpr size_t kMaxQueuedNotifications = 8;

class Refused final : public grpc::ServerWriteReactor<v1::Notification> {
 public:
  explicit Refused(const grpc::Status& s) { Finish(s); }
  void OnDone() override { delete this; }
};

}  // namespace

// One agent's stream.
class NotifyStreams::Stream final : public grpc::ServerWriteReactor<v1::Notification> {
 public:
  Stream(NotifyStreams* owner, std::string id) : owner_(owner), id_(std::move(id)) {}

  void Push(v1::NotificationKind kind) {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    for (auto k : queue_) {
      if (k == kind) return;
    }
    if (queue_.size() >= kMaxQueuedNotifications) return;
    queue_.push_back(kind);
    if (!writing_) WriteNextLocked();
  }

  void Close(const grpc::Status& status) {
    absl::MutexLock lock(&mu_);
    FinishLocked(status);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed"));
      return;
    }
    if (!queue_.empty() && !finished_) WriteNextLocked();
  }

  // Until the client is authorized, a cancellation only records itself: the
  // authorization callback still holds this stream and finishes it then.
  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      if (checking_) {
        cancelled_ = true;
        return;
      }
    }
    Close(grpc::Status::CANCELLED);
  }

  // Called once by the authorization callback; false if the stream ended.
  bool Authorized(const absl::Status& s) {
    absl::MutexLock lock(&mu_);
    checking_ = false;
    if (!s.ok() || cancelled_) {
      FinishLocked(cancelled_ ? grpc::Status::CANCELLED : ToGrpcStatus(s));
      return false;
    }
    return true;
  }

  void OnDone() override {
    owner_->Unregister(id_, this);
    owner_->Release();
    delete this;
  }

 private:
  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    current_.set_kind(queue_.front());
    queue_.pop_front();
    current_.clear_detail();
    if (current_.kind() == v1::NOTIFICATION_KIND_CONNECTED ||
        current_.kind() == v1::NOTIFICATION_KIND_POLICY_CHANGED) {
      current_.set_detail(owner_->version_of_(id_));
    }
    writing_ = true;
    StartWrite(&current_);
  }

  NotifyStreams* const owner_;
  const std::string id_;
  absl::Mutex mu_;
  std::deque<v1::NotificationKind> queue_ ABSL_GUARDED_BY(mu_);
  v1::Notification current_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool checking_ ABSL_GUARDED_BY(mu_) = true;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

NotifyStreams::NotifyStreams(int64_t max_streams,
                             std::function<std::string(const std::string&)> version_of)
    : max_streams_(max_streams), version_of_(std::move(version_of)) {}

grpc::ServerWriteReactor<v1::Notification>* NotifyStreams::Refuse(const grpc::Status& status) {
  return new Refused(status);
}

grpc::ServerWriteReactor<v1::Notification>* NotifyStreams::Open(const std::string& id,
                                                                const Authorize& authorize,
                                                                Greeting greeting) {
  {
    // Each stream is a connection, hence an open file: beyond the limit the
    // agent is told to come back later (it polls meanwhile).
    absl::MutexLock lock(&mu_);
    if (admitted_ >= max_streams_) {
      return Refuse(grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat("this management point holds ", admitted_,
                       " notification streams, all its open-file limit allows; retry later")));
    }
    ++admitted_;
  }
  auto* stream = new Stream(this, id);
  authorize([this, stream, id, greeting = std::move(greeting)](absl::Status s) {
    // Until Authorized() the stream cannot finish (see OnCancel). It is
    // registered and authorized under the registry's lock, so no Close()
    // (a newer stream, a refusal, shutdown) can reach it in between; once
    // registered, its OnDone unregisters it.
    bool open;
    {
      absl::MutexLock lock(&mu_);
      if (s.ok()) {
        Stream*& slot = streams_[id];
        if (slot) {
          slot->Close(grpc::Status(grpc::StatusCode::ABORTED, "replaced by a newer stream"));
        }
        slot = stream;
      }
      open = stream->Authorized(s);
      if (!open && s.ok()) {
        auto it = streams_.find(id);
        if (it != streams_.end() && it->second == stream) streams_.erase(it);
      }
    }
    if (!open) return;
    for (auto kind : greeting()) Push(id, kind);
  });
  return stream;
}

void NotifyStreams::Push(const std::string& id, v1::NotificationKind kind) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(id);
  if (it != streams_.end()) it->second->Push(kind);
}

void NotifyStreams::Close(const std::string& id, const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(id);
  if (it != streams_.end()) it->second->Close(status);
}

void NotifyStreams::CloseAll(const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  for (auto& [id, s] : streams_) s->Close(status);
}

std::vector<std::string> NotifyStreams::Ids() {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> ids;
  ids.reserve(streams_.size());
  for (const auto& [id, _] : streams_) ids.push_back(id);
  return ids;
}

int64_t NotifyStreams::held() {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(streams_.size());
}

void NotifyStreams::Unregister(const std::string& id, Stream* stream) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(id);
  if (it != streams_.end() && it->second == stream) streams_.erase(it);
}

void NotifyStreams::Release() {
  absl::MutexLock lock(&mu_);
  --admitted_;
}

}  // namespace strata::mp
