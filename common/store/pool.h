#pragma once

// A few connections to one database shared by request handlers: a handler
// borrows one for the length of With(); a connection that broke is dropped.
// Thread-safe.

#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
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
      std::lock_guard<std::mutex> lock(mu_);
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
      std::lock_guard<std::mutex> lock(mu_);
      if (idle_.size() < max_idle_) idle_.push_back(std::move(conn));
    }
    return s;
  }

 private:
  const std::string conninfo_;
  const size_t max_idle_;
  std::mutex mu_;
  std::vector<ConnectionPtr> idle_;
};

}  // namespace strata::store
