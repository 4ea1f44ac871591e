#pragma once

// Makes a server's Shutdown() safe to call more than once and from two
// threads at a time (a signal handler's thread and the destructor, say): the
// first caller does the work; every later caller waits until it is done, so
// no caller returns while the object is still being torn down.

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace strata {

class ShutdownGuard {
 public:
  // True for the first caller, who must call Done() when finished; later
  // callers block until then and get false.
  bool Begin() {
    {
      absl::MutexLock lock(&mu_);
      if (!started_) {
        started_ = true;
        return true;
      }
    }
    done_.WaitForNotification();
    return false;
  }
  // Last thing the first caller does: a waiting caller may destroy the owner.
  void Done() { done_.Notify(); }

 private:
  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  absl::Notification done_;
};

}  // namespace strata
