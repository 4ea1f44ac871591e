#pragma once

// A site server for the MP's unit tests (SiteClient): who is allowed, with
// which custom settings; lookups counted, and held when a test asks; and
// Connect streams whose down side the test writes and whose up side it
// reads.

#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "mp/site_client.h"

namespace strata::mp::testing {

class FakeStream final : public SiteStream {
 public:
  bool Write(const v1::MpUp& m) override {
    absl::MutexLock lock(&mu_);
    if (cancelled_) return false;
    up_.push_back(m);
    return true;
  }
  bool Read(v1::MpDown* m) override {
    absl::MutexLock lock(&mu_);
    auto ready = [this]()
                     ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return cancelled_ || !down_.empty(); };
    mu_.Await(absl::Condition(&ready));
    if (cancelled_) return false;
    *m = down_.front();
    down_.pop_front();
    return true;
  }
  void Cancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
  }
  absl::Status Finish() override { return absl::CancelledError("cancelled"); }

  // The test's side.
  void Send(const v1::MpDown& m) {
    absl::MutexLock lock(&mu_);
    down_.push_back(m);
  }
  // Waits up to `timeout` for an up message matching `pred`; copies it out.
  template <typename Pred>
  bool AwaitUp(Pred pred, v1::MpUp* out, absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto found = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (const auto& m : up_) {
        if (pred(m)) return true;
      }
      return false;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&found), timeout)) return false;
    for (const auto& m : up_) {
      if (pred(m)) *out = m;
    }
    return true;
  }

 private:
  absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<v1::MpDown> down_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::MpUp> up_ ABSL_GUARDED_BY(mu_);
};

class FakeSite final : public SiteClient {
 public:
  void Allow(const std::string& id, std::vector<std::string> settings = {}) {
    absl::MutexLock lock(&mu_);
    allowed_[id] = std::move(settings);
  }
  void Refuse(const std::string& id) {
    absl::MutexLock lock(&mu_);
    allowed_.erase(id);
  }
  void SetDown(bool down) {
    absl::MutexLock lock(&mu_);
    down_ = down;
  }
  // Lookups wait at their start until Release() (the answer is what the
  // site holds when they began).
  void HoldLookups() {
    absl::MutexLock lock(&mu_);
    hold_ = true;
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    hold_ = false;
  }
  // Waits until a held lookup is waiting.
  bool AwaitHeldLookup() {
    absl::MutexLock lock(&mu_);
    auto held = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return held_ > 0; };
    return mu_.AwaitWithTimeout(absl::Condition(&held), absl::Seconds(10));
  }
  int lookups() {
    absl::MutexLock lock(&mu_);
    return lookups_;
  }

  void Register(const v1::RegisterRequest*, v1::RegisterResponse* resp,
                std::function<void(grpc::Status)> done) override {
    resp->set_client_id("registered");
    done(grpc::Status::OK);
  }

  absl::StatusOr<Allowed> LookupClients(const std::vector<std::string>& ids) override {
    absl::MutexLock lock(&mu_);
    ++lookups_;
    if (down_) return absl::UnavailableError("site down");
    Allowed answer;
    for (const auto& id : ids) {
      auto it = allowed_.find(id);
      if (it != allowed_.end()) answer[id].settings = it->second;
    }
    ++held_;
    auto released = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !hold_; };
    mu_.Await(absl::Condition(&released));
    --held_;
    return answer;
  }

  void GetContentManifest(const v1::ContentManifestRequest*, v1::ContentManifestResponse*,
                          std::function<void(grpc::Status)> done) override {
    done(grpc::Status(grpc::StatusCode::NOT_FOUND, "the fake site holds no content"));
  }
  void RunbookWork(const v1::RunbookWorkRequest*, v1::RunbookWorkResponse*,
                   std::function<void(grpc::Status)> done) override {
    done(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "the fake site dispatches no runbooks"));
  }
  std::unique_ptr<SiteStream> Connect() override {
    auto s = std::make_unique<FakeStream>();
    absl::MutexLock lock(&mu_);
    streams_.push_back(s.get());
    return s;
  }
  // The newest stream the MP opened (null if none yet), waiting up to 10 s.
  FakeStream* stream() {
    absl::MutexLock lock(&mu_);
    auto any = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !streams_.empty(); };
    mu_.AwaitWithTimeout(absl::Condition(&any), absl::Seconds(10));
    return streams_.empty() ? nullptr : streams_.back();
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, std::vector<std::string>> allowed_ ABSL_GUARDED_BY(mu_);
  bool down_ ABSL_GUARDED_BY(mu_) = false;
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  int held_ ABSL_GUARDED_BY(mu_) = 0;
  int lookups_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<FakeStream*> streams_ ABSL_GUARDED_BY(mu_);
};

}  // namespace strata::mp::testing
