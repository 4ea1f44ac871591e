#pragma once

// The management point's directory of clients: which agents may use it
// (looked up at the site in batches, cached, rechecked), the custom client
// settings that reach each, requests for a full inventory, and the site
// bundle those settings merge with. A client's policy is the bundle's
// default merged with its custom settings (common/policy); when the bundle
// or a client's settings change, only clients whose own policy version
// changed are told.
//
// While the site server is unreachable, a certificate from the site's CA
// is accepted provisionally (data is only spooled): the client is looked up
// again on its next call, and a refusal bites once the site is back.
//
// Thread-safe. Callbacks (Check's `then`, the hooks) run without the
// directory's locks held, on the lookup thread or the caller's.

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "mp/site_client.h"
#include "strata/v1/client.pb.h"

namespace strata::mp {

// A client and the custom client settings that reach it (sorted names).
using Assignment = std::pair<std::string, policy::Assigned>;

class ClientDirectory {
 public:
  struct Hooks {
    // A known client the site now refuses (revoked, blocked).
    std::function<void(const std::string& id)> refused;
    // Clients whose policy version changed.
    std::function<void(const std::vector<std::string>& ids)> policy_changed;
    // Clients holding a notification stream: those told of bundle changes.
    std::function<std::vector<std::string>()> listening;
  };

  ClientDirectory(SiteClient& site, absl::Duration recheck_every, Hooks hooks);
  ~ClientDirectory();

  void Start();  // the lookup thread
  // Answers everyone still waiting (Unavailable) and joins the thread.
  void Stop();

  // Runs `then` with OK once `id` may use the MP (at once when cached; OK
  // provisionally while the site is away), or with the refusal.
  void Check(const std::string& id, std::function<void(absl::Status)> then);
  // Confirmed by the site (not provisional).
  bool IsAllowed(const std::string& id);

  // --- policy -------------------------------------------------------------
  std::shared_ptr<const v1::SiteBundle> bundle();
  // A bundle saved by an earlier run, served until the site sends one.
  void LoadBundle(const v1::SiteBundle& b);
  // Replaces the bundle; returns false if its version is the one held.
  bool SetBundle(const v1::SiteBundle& b);
  policy::Assigned AssignedTo(const std::string& id);
  // The policy (version and settings) `id` is served now; none while the
  // client is not confirmed by the site or no bundle is held.
  std::optional<v1::PolicyResponse> PolicyOf(const std::string& id);
  // Custom settings pushed by the site for these clients.
  void ApplyPushed(const std::vector<Assignment>& changes);

  // --- lookups --------------------------------------------------------------
  // Every known client is looked up again at the next round (the site
  // stream started: changes made meanwhile are not lost).
  void RequestRecheck();
  // These clients are looked up again now (an administrator approved or
  // blocked them).
  void RecheckSoon(const std::vector<std::string>& ids);

  // --- full inventory requests ---------------------------------------------
  void RequestFullInventory(const std::string& id);
  bool HasFullRequest(const std::string& id);
  bool TakeFullRequest(const std::string& id);

 private:
  using Waiters = std::map<std::string, std::vector<std::function<void(absl::Status)>>>;
  void LookupLoop();
  void AnswerWaiters(Waiters batch);
  // Looks `ids` (all allowed already) up again; drops the refused.
  void Recheck(const std::vector<std::string>& ids);
  void BeginLookup(const std::vector<std::string>& ids);
  void EndLookup(const Allowed* answer, const std::vector<std::string>& ids);
  void UpdateAssignments(const std::vector<Assignment>& changes, bool pushed);

  SiteClient& site_;
  const absl::Duration recheck_every_;
  const Hooks hooks_;
  std::thread thread_;
  bool provisional_logged_ = false;  // lookup thread only

  // Orders SetBundle and UpdateAssignments: each compares versions under the
  // bundle the other leaves, so no change of either goes untold. Taken
  // before mu_.
  absl::Mutex policy_mu_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<const v1::SiteBundle> bundle_ ABSL_GUARDED_BY(mu_);
  std::unordered_set<std::string> allowed_ ABSL_GUARDED_BY(mu_);
  Waiters waiting_ ABSL_GUARDED_BY(mu_);
  std::unordered_set<std::string> full_requests_ ABSL_GUARDED_BY(mu_);
  // Clients with custom settings: their names, sorted (the others: none).
  std::unordered_map<std::string, policy::Assigned> assignments_ ABSL_GUARDED_BY(mu_);
  // A lookup under way (one at a time, on the lookup thread): its answer is
  // older than anything the site pushes meanwhile, so for those clients the
  // push stands (EndLookup).
  bool lookup_under_way_ ABSL_GUARDED_BY(mu_) = false;
  std::unordered_set<std::string> looking_up_ ABSL_GUARDED_BY(mu_);
  std::unordered_set<std::string> pushed_during_lookup_ ABSL_GUARDED_BY(mu_);
  bool recheck_all_ ABSL_GUARDED_BY(mu_) = false;
  std::set<std::string> recheck_soon_ ABSL_GUARDED_BY(mu_);
};

}  // namespace strata::mp
