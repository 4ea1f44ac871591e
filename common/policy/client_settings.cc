#include "common/policy/client_settings.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace strata::policy {

v1::ClientSettings EffectiveSettings(const v1::SiteBundle& bundle,
                                     const std::vector<std::string>& assigned) {
  v1::ClientSettings out = bundle.settings();
  if (assigned.empty()) return out;
  std::vector<const v1::CustomClientSettings*> applicable;
  for (const auto& custom : bundle.custom_settings()) {
    if (std::find(assigned.begin(), assigned.end(), custom.name()) != assigned.end()) {
      applicable.push_back(&custom);
    }
  }
  // Lowest priority first: each one applied overrides those before it.
  std::sort(applicable.begin(), applicable.end(), [](const auto* a, const auto* b) {
    if (a->priority() != b->priority()) return a->priority() > b->priority();
    return a->name() > b->name();
  });
  for (const auto* c : applicable) {
    if (c->has_policy_poll_seconds()) out.set_policy_poll_seconds(c->policy_poll_seconds());
    if (c->has_inventory_seconds()) out.set_inventory_seconds(c->inventory_seconds());
    if (c->has_heartbeat_seconds()) out.set_heartbeat_seconds(c->heartbeat_seconds());
    if (c->has_splay_seconds()) out.set_splay_seconds(c->splay_seconds());
  }
  return out;
}

std::string PolicyVersion(const v1::ClientSettings& s) {
  return ContentVersion(
      absl::StrCat("poll=", s.policy_poll_seconds(), ";inventory=", s.inventory_seconds(),
                   ";heartbeat=", s.heartbeat_seconds(), ";splay=", s.splay_seconds()));
}

namespace {

// The items of `all` (sorted by name) named in `names`, in order.
template <typename List, typename Fn>
void ForNamed(const List& all, const std::vector<std::string>& names, Fn fn) {
  for (const auto& name : names) {
    auto it = std::lower_bound(all.begin(), all.end(), name,
                               [](const auto& x, const std::string& n) { return x.name() < n; });
    if (it != all.end() && it->name() == name) fn(*it);
  }
}

// What versions a client's deployments and windows; `each` sees every one.
template <typename Fn>
std::string Revisions(const v1::SiteBundle& bundle, const Assigned& assigned, Fn each) {
  std::string out;
  ForNamed(bundle.deployments(), assigned.deployments, [&](const v1::DeploymentPolicy& d) {
    each(d);
    absl::StrAppend(&out, d.name(), "=", d.revision(), ";");
  });
  ForNamed(bundle.windows(), assigned.windows, [&](const v1::MaintenanceWindow& w) {
    each(w);
    absl::StrAppend(&out, "w:", w.name(), "=", w.start(), w.utc() ? "Z" : "", "+",
                    w.duration_minutes(), "/", w.recurrence(), ";");
  });
  // A run never changes: its id names it.
  ForNamed(bundle.script_runs(), assigned.script_runs, [&](const v1::ScriptRunPolicy& r) {
    each(r);
    absl::StrAppend(&out, "r:", r.name(), ";");
  });
  ForNamed(bundle.live_queries(), assigned.live_queries, [&](const v1::LiveQueryPolicy& q) {
    each(q);
    absl::StrAppend(&out, "q:", q.name(), ";");
  });
  // A group is its name to the worker (the site holds its limits).
  for (const auto& g : assigned.runbook_worker_groups) absl::StrAppend(&out, "g:", g, ";");
  return out;
}

std::string Combined(const std::string& settings_version, const std::string& revisions) {
  if (revisions.empty()) return settings_version;
  return absl::StrCat(settings_version, "-", ContentVersion(revisions));
}

struct AddTo {
  v1::PolicyResponse& out;
  void operator()(const v1::DeploymentPolicy& d) const { *out.add_deployments() = d; }
  void operator()(const v1::MaintenanceWindow& w) const { *out.add_windows() = w; }
  void operator()(const v1::ScriptRunPolicy& r) const { *out.add_script_runs() = r; }
  void operator()(const v1::LiveQueryPolicy& q) const { *out.add_live_queries() = q; }
};

}  // namespace

void ToProto(Assigned assigned, v1::ClientAssignment* out) {
  for (auto& n : assigned.settings) out->add_settings(std::move(n));
  for (auto& n : assigned.deployments) out->add_deployments(std::move(n));
  for (auto& n : assigned.windows) out->add_windows(std::move(n));
  for (auto& n : assigned.script_runs) out->add_script_runs(std::move(n));
  for (auto& n : assigned.live_queries) out->add_live_queries(std::move(n));
  for (auto& n : assigned.runbook_worker_groups) out->add_runbook_worker_groups(std::move(n));
}

Assigned FromProto(const v1::ClientAssignment& a) {
  Assigned out;
  out.settings.assign(a.settings().begin(), a.settings().end());
  out.deployments.assign(a.deployments().begin(), a.deployments().end());
  out.windows.assign(a.windows().begin(), a.windows().end());
  out.script_runs.assign(a.script_runs().begin(), a.script_runs().end());
  out.live_queries.assign(a.live_queries().begin(), a.live_queries().end());
  out.runbook_worker_groups.assign(a.runbook_worker_groups().begin(),
                                   a.runbook_worker_groups().end());
  return out;
}

v1::PolicyResponse ClientPolicy(const v1::SiteBundle& bundle, const Assigned& assigned) {
  v1::PolicyResponse out;
  *out.mutable_settings() = EffectiveSettings(bundle, assigned.settings);
  const std::string revisions = Revisions(bundle, assigned, AddTo{out});
  for (const auto& g : assigned.runbook_worker_groups) out.add_runbook_worker_groups(g);
  out.set_version(Combined(PolicyVersion(out.settings()), revisions));
  return out;
}

std::string ClientPolicyVersion(const v1::SiteBundle& bundle, const Assigned& assigned) {
  const std::string revisions = Revisions(bundle, assigned, [](const auto&) {});
  return Combined(PolicyVersion(EffectiveSettings(bundle, assigned.settings)), revisions);
}

std::string ContentVersion(const std::string& bytes) {
  uint64_t h = 14695981039346656037ull;  // the 64-bit offset basis
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return absl::StrFormat("%016x", h);
}

}  // namespace strata::policy
