#pragma once

// A few connections to one database shared by request handlers: a handler
// borrows one for the length of With(); a connection that broke is dropped.
// Thread-safe.

#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/store/database.h"

namespace strata::store {

class ConnectionPool {
 public:
  explicit ConnectionPool(std::string conninfo, size_t max_idle = 8)
      : conninfo_(std::move(conninfo)), max_idle_(max_idle) {}

  template <typename Fn>
  absl::Status With(Fn&& fn) {
    ConnectionPtr conn;
    {
      absl::MutexLock lock(&mu_);
      if (!idle_.empty()) {
        conn = std::move(idle_.back());
        idle_.pop_back();
      }
    }
    if (!conn) {
      auto opened = Connection::Open(conninfo_);
      if (!opened.ok()) return opened.status();
      conn = std::move(*opened);
    }
    absl::Status s = fn(*conn);
    if (conn->IsOpen() && s.code() != absl::StatusCode::kUnavailable) {
      absl::MutexLock lock(&mu_);
      if (idle_.size() < max_idle_) idle_.push_back(std::move(conn));
    }
    return s;
  }

 private:
  const std::string conninfo_;
  const size_t max_idle_;
  absl::Mutex mu_;
  std::vector<ConnectionPtr> idle_ ABSL_GUARDED_BY(mu_);
};

}  // namespace strata::store
