#include "mp/register_limit.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace strata::mp {
namespace {

// Sources remembered at most; beyond, those whose bucket is full again
// (nothing to remember) are forgotten.
constexpr size_t kMaxSources = 10000;

}  // namespace

RegisterLimit::RegisterLimit(int per_source_per_minute, int total_per_minute)
    : per_source_(per_source_per_minute), total_(total_per_minute) {
  all_ = Bucket{total_, absl::Now()};
}

double RegisterLimit::Refill(Bucket& b, double per_minute, absl::Time now) {
  const double elapsed = std::max(0.0, absl::ToDoubleSeconds(now - b.at));
  b.tokens = std::min(per_minute, b.tokens + elapsed * per_minute / 60.0);
  b.at = now;
  return b.tokens >= 1 ? 0 : (1 - b.tokens) * 60.0 / per_minute;
}

absl::Status RegisterLimit::TakeAt(const std::string& source, absl::Time now) {
  absl::MutexLock lock(&mu_);
  Bucket* mine = nullptr;
  if (per_source_ >= 0) {
    auto [it, added] = sources_.try_emplace(source, Bucket{per_source_, now});
    mine = &it->second;
    if (added && sources_.size() > kMaxSources) {
      for (auto s = sources_.begin(); s != sources_.end();) {
        if (s->first != source && Refill(s->second, per_source_, now) == 0 &&
            s->second.tokens >= per_source_) {
          s = sources_.erase(s);
        } else {
          ++s;
        }
      }
      mine = &sources_.find(source)->second;
    }
    if (const double wait = Refill(*mine, per_source_, now); wait > 0) {
      return absl::ResourceExhaustedError(
          absl::StrCat("too many registrations from ", source, " (at most ", per_source_,
                       " a minute from one address); retry in ", std::ceil(wait), " s"));
    }
  }
  if (total_ >= 0) {
    if (const double wait = Refill(all_, total_, now); wait > 0) {
      return absl::ResourceExhaustedError(absl::StrCat("this management point takes at most ",
                                                       total_, " registrations a minute; retry in ",
                                                       std::ceil(wait), " s"));
    }
    all_.tokens -= 1;
  }
  if (mine) mine->tokens -= 1;
  return absl::OkStatus();
}

std::string SourceOf(const std::string& grpc_peer) {
  if (absl::StartsWith(grpc_peer, "ipv4:")) {
    return grpc_peer.substr(5, grpc_peer.rfind(':') - 5);
  }
  if (absl::StartsWith(grpc_peer, "ipv6:[")) {
    return grpc_peer.substr(6, grpc_peer.find(']') - 6);
  }
  return "local";
}

}  // namespace strata::mp
