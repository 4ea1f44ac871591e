#include "mp/client_directory.h"

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/policy/client_settings.h"

namespace strata::mp {
namespace {

constexpr size_t kLookupBatch = 5000;

std::string VersionOf(const v1::SiteBundle& bundle, const policy::Assigned& assigned) {
  return policy::ClientPolicyVersion(bundle, assigned);
}

}  // namespace

ClientDirectory::ClientDirectory(SiteClient& site, absl::Duration recheck_every, Hooks hooks)
    : site_(site), recheck_every_(recheck_every), hooks_(std::move(hooks)) {}

ClientDirectory::~ClientDirectory() { Stop(); }

void ClientDirectory::Start() {
  thread_ = std::thread([this] { LookupLoop(); });
}

void ClientDirectory::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  // Anyone still waiting gets an answer.
  Waiters left;
  {
    absl::MutexLock lock(&mu_);
    left.swap(waiting_);
  }
  for (auto& [id, callbacks] : left) {
    for (auto& cb : callbacks) cb(absl::UnavailableError("management point stopping"));
  }
}

void ClientDirectory::Check(const std::string& id, std::function<void(absl::Status)> then) {
  absl::Status s;
  {
    absl::MutexLock lock(&mu_);
    if (!allowed_.count(id)) {
      if (!stopping_) {
        waiting_[id].push_back(std::move(then));
        return;
      }
      s = absl::UnavailableError("management point stopping");
    }
  }
  then(s);  // outside the lock: `then` may take a stream's
}

bool ClientDirectory::IsAllowed(const std::string& id) {
  absl::MutexLock lock(&mu_);
  return allowed_.count(id) > 0;
}

void ClientDirectory::LookupLoop() {
  absl::Time next_recheck = absl::Now() + recheck_every_;
  while (true) {
    Waiters batch;
    std::vector<std::string> soon;
    bool all = false;
    {
      absl::MutexLock lock(&mu_);
      auto work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !waiting_.empty() || recheck_all_ || !recheck_soon_.empty();
      };
      mu_.AwaitWithTimeout(absl::Condition(&work), absl::Milliseconds(200));
      if (stopping_) return;
      while (!waiting_.empty() && batch.size() < kLookupBatch) {
        batch.insert(waiting_.extract(waiting_.begin()));
      }
      all = std::exchange(recheck_all_, false);
      for (const auto& id : recheck_soon_) {
        if (allowed_.count(id)) soon.push_back(id);
      }
      recheck_soon_.clear();
    }
    if (!batch.empty()) AnswerWaiters(std::move(batch));
    if (!soon.empty()) Recheck(soon);
    if (all || absl::Now() >= next_recheck) {
      std::vector<std::string> ids;
      {
        absl::MutexLock lock(&mu_);
        ids.assign(allowed_.begin(), allowed_.end());
      }
      Recheck(ids);
      next_recheck = absl::Now() + recheck_every_;
    }
  }
}

void ClientDirectory::AnswerWaiters(Waiters batch) {
  std::vector<std::string> ids;
  for (auto& [id, _] : batch) ids.push_back(id);
  BeginLookup(ids);
  absl::StatusOr<Allowed> allowed = site_.LookupClients(ids);
  LogDebug("mp.clients_looked_up", {{"clients", ids.size()},
                                    {"allowed", allowed.ok() ? allowed->size() : 0},
                                    {"error", allowed.status()}});
  EndLookup(allowed.ok() ? &*allowed : nullptr, ids);
  if (allowed.ok()) provisional_logged_ = false;
  for (auto& [id, callbacks] : batch) {
    absl::Status s;
    if (!allowed.ok()) {
      // The site is away: provisionally allowed (see the header).
      if (!provisional_logged_) {
        LogWarning("mp.clients_unverified", {{"error", allowed.status()}});
        provisional_logged_ = true;
      }
    } else if (!allowed->count(id)) {
      s = absl::PermissionDeniedError(absl::StrCat(
          "client ", id, " is unknown, not approved or revoked at this site; register again"));
    } else {
      absl::MutexLock lock(&mu_);
      allowed_.insert(id);
    }
    for (auto& cb : callbacks) cb(s);
  }
}

void ClientDirectory::Recheck(const std::vector<std::string>& ids) {
  BeginLookup({});  // `ids` are all allowed already
  absl::StatusOr<Allowed> allowed = site_.LookupClients(ids);
  EndLookup(allowed.ok() ? &*allowed : nullptr, ids);
  if (!allowed.ok()) return;  // keep the cache while the site is away
  std::vector<std::string> dropped;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& id : ids) {
      if (!allowed->count(id) && allowed_.erase(id) > 0) dropped.push_back(id);
    }
  }
  for (const auto& id : dropped) {
    LogInfo("mp.client_revoked", {{"client", id}});
    if (hooks_.refused) hooks_.refused(id);
  }
}

void ClientDirectory::BeginLookup(const std::vector<std::string>& ids) {
  absl::MutexLock lock(&mu_);
  lookup_under_way_ = true;
  looking_up_.insert(ids.begin(), ids.end());
}

void ClientDirectory::EndLookup(const Allowed* answer, const std::vector<std::string>& ids) {
  std::unordered_set<std::string> pushed;
  {
    absl::MutexLock lock(&mu_);
    pushed.swap(pushed_during_lookup_);
    looking_up_.clear();
    lookup_under_way_ = false;
  }
  if (answer == nullptr) return;
  std::vector<Assignment> changes;
  for (const auto& id : ids) {
    auto it = answer->find(id);
    if (it == answer->end()) {
      changes.emplace_back(id, policy::Assigned());  // refused: nothing to keep
    } else if (!pushed.count(id)) {
      changes.emplace_back(id, it->second);
    }
  }
  UpdateAssignments(changes, /*pushed=*/false);
}

// --- policy -----------------------------------------------------------------

std::shared_ptr<const v1::SiteBundle> ClientDirectory::bundle() {
  absl::MutexLock lock(&mu_);
  return bundle_;
}

void ClientDirectory::LoadBundle(const v1::SiteBundle& b) {
  absl::MutexLock lock(&mu_);
  if (!bundle_) bundle_ = std::make_shared<v1::SiteBundle>(b);
}

bool ClientDirectory::SetBundle(const v1::SiteBundle& b) {
  std::vector<std::string> notify;
  size_t listening = 0;
  {
    absl::MutexLock policy_lock(&policy_mu_);
    std::shared_ptr<const v1::SiteBundle> before;
    {
      absl::MutexLock lock(&mu_);
      if (bundle_ && bundle_->version() == b.version()) return false;
      before = bundle_;
      bundle_ = std::make_shared<v1::SiteBundle>(b);
    }
    // Only clients whose own settings changed are told (a boundary or a
    // site system changes the bundle, not their policy).
    const std::vector<std::string> ids =
        hooks_.listening ? hooks_.listening() : std::vector<std::string>();
    listening = ids.size();
    for (const auto& id : ids) {
      const auto assigned = AssignedTo(id);
      if (before && VersionOf(*before, assigned) == VersionOf(b, assigned)) continue;
      notify.push_back(id);
    }
  }
  if (hooks_.policy_changed && !notify.empty()) hooks_.policy_changed(notify);
  LogInfo("mp.bundle_changed",
          {{"version", b.version()}, {"streams", listening}, {"told", notify.size()}});
  return true;
}

policy::Assigned ClientDirectory::AssignedTo(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = assignments_.find(id);
  return it == assignments_.end() ? policy::Assigned() : it->second;
}

std::optional<v1::PolicyResponse> ClientDirectory::PolicyOf(const std::string& id) {
  auto b = bundle();
  if (!b || !IsAllowed(id)) return std::nullopt;
  return policy::ClientPolicy(*b, AssignedTo(id));
}

void ClientDirectory::ApplyPushed(const std::vector<Assignment>& changes) {
  UpdateAssignments(changes, /*pushed=*/true);
}

// Applies changed assignments; a client whose effective settings change is
// told at once, no other. Pushed by the site (`pushed`): kept for clients
// this MP serves or is looking up; the others get theirs when they are
// first looked up.
void ClientDirectory::UpdateAssignments(const std::vector<Assignment>& changes, bool pushed) {
  std::vector<std::string> notify;
  {
    absl::MutexLock policy_lock(&policy_mu_);
    absl::MutexLock lock(&mu_);
    for (const auto& [id, names] : changes) {
      if (pushed) {
        if (!allowed_.count(id) && !looking_up_.count(id)) continue;
        if (lookup_under_way_) pushed_during_lookup_.insert(id);
      }
      auto it = assignments_.find(id);
      const policy::Assigned none;
      const policy::Assigned& before = it == assignments_.end() ? none : it->second;
      if (before == names) continue;
      if (bundle_ && VersionOf(*bundle_, before) != VersionOf(*bundle_, names)) {
        notify.push_back(id);
      }
      if (names.empty()) {
        assignments_.erase(id);
      } else {
        assignments_[id] = names;
      }
    }
  }
  if (notify.empty()) return;
  if (hooks_.policy_changed) hooks_.policy_changed(notify);
  LogInfo("mp.client_settings_changed", {{"clients", notify.size()}});
}

// --- lookups and requests ------------------------------------------------------

void ClientDirectory::RequestRecheck() {
  absl::MutexLock lock(&mu_);
  recheck_all_ = true;
}

void ClientDirectory::RecheckSoon(const std::vector<std::string>& ids) {
  absl::MutexLock lock(&mu_);
  recheck_soon_.insert(ids.begin(), ids.end());
}

void ClientDirectory::RequestFullInventory(const std::string& id) {
  absl::MutexLock lock(&mu_);
  full_requests_.insert(id);
}

bool ClientDirectory::HasFullRequest(const std::string& id) {
  absl::MutexLock lock(&mu_);
  return full_requests_.count(id) > 0;
}

bool ClientDirectory::TakeFullRequest(const std::string& id) {
  absl::MutexLock lock(&mu_);
  return full_requests_.erase(id) > 0;
}

}  // namespace strata::mp
