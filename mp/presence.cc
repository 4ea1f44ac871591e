#include "mp/presence.h"

namespace strata::mp {

void Presence::Set(const std::string& id, bool online) {
  absl::MutexLock lock(&mu_);
  changes_[id] = online;
}

bool Presence::Pending() {
  absl::MutexLock lock(&mu_);
  return !changes_.empty();
}

void Presence::Take(v1::MpStatus* status, bool full,
                    const std::function<std::vector<std::string>()>& held) {
  std::map<std::string, bool> changes;
  {
    absl::MutexLock lock(&mu_);
    changes.swap(changes_);
  }
  status->set_full(full);
  if (full) {
    for (const auto& id : held()) status->add_online(id);
    return;
  }
  for (const auto& [id, online] : changes)
    (online ? status->add_online() : status->add_offline())->assign(id);
}

}  // namespace strata::mp
