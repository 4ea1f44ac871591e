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

std::string ContentVersion(const std::string& bytes) {
  uint64_t h = 14695981039346656037ull;  // the 64-bit offset basis
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return absl::StrFormat("%016x", h);
}

}  // namespace strata::policy
