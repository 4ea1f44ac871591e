// The MP's client directory against a fake site: lookups and the cache,
// provisional acceptance while the site is away, rechecks, pushes racing a
// lookup, and who is told of a policy change.

#include "mp/client_directory.h"

#include <catch2/catch.hpp>
#include <future>

#include "mp/tests/fake_site.h"

namespace strata::mp {

// An assignment of custom client settings only.
policy::Assigned SettingsOnly(std::vector<std::string> settings) {
  policy::Assigned a;
  a.settings = std::move(settings);
  return a;
}
namespace {

// The policy version a client is served ("" while not confirmed).
std::string VersionOf(strata::mp::ClientDirectory& dir, const std::string& id) {
  auto policy = dir.PolicyOf(id);
  return policy ? policy->version() : std::string();
}

using testing::FakeSite;

constexpr char kA[] = "00000000-0000-4000-8000-00000000000a";
constexpr char kB[] = "00000000-0000-4000-8000-00000000000b";

absl::Status CheckNow(ClientDirectory& dir, const std::string& id) {
  std::promise<absl::Status> p;
  auto f = p.get_future();
  dir.Check(id, [&p](absl::Status s) { p.set_value(s); });
  if (f.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    return absl::DeadlineExceededError("no answer");
  }
  return f.get();
}

// Hooks recording what the directory said.
struct Recorder {
  absl::Mutex mu;
  std::vector<std::string> refused ABSL_GUARDED_BY(mu);
  std::vector<std::string> told ABSL_GUARDED_BY(mu);
  std::vector<std::string> listening = {kA, kB};

  ClientDirectory::Hooks Hooks() {
    ClientDirectory::Hooks h;
    h.refused = [this](const std::string& id) {
      absl::MutexLock lock(&mu);
      refused.push_back(id);
    };
    h.policy_changed = [this](const std::vector<std::string>& ids) {
      absl::MutexLock lock(&mu);
      told.insert(told.end(), ids.begin(), ids.end());
    };
    h.listening = [this] { return listening; };
    return h;
  }
  bool AwaitRefused(const std::string& id) {
    absl::MutexLock lock(&mu);
    auto seen = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return std::count(refused.begin(), refused.end(), id) > 0;
    };
    return mu.AwaitWithTimeout(absl::Condition(&seen), absl::Seconds(10));
  }
  std::vector<std::string> Told() {
    absl::MutexLock lock(&mu);
    return std::exchange(told, {});
  }
};

v1::SiteBundle Bundle(const std::string& version, int64_t fast_poll) {
  v1::SiteBundle b;
  b.set_version(version);
  b.mutable_settings()->set_policy_poll_seconds(3600);
  b.mutable_settings()->set_inventory_seconds(86400);
  b.mutable_settings()->set_heartbeat_seconds(86400);
  auto* fast = b.add_custom_settings();
  fast->set_name("fast");
  fast->set_priority(1);
  fast->set_policy_poll_seconds(fast_poll);
  return b;
}

}  // namespace

TEST_CASE("a client is looked up at the site once, then allowed from the cache") {
  FakeSite site;
  site.Allow(kA);
  Recorder rec;
  ClientDirectory dir(site, absl::Hours(1), rec.Hooks());
  dir.Start();
  CHECK(CheckNow(dir, kA).ok());
  CHECK(dir.IsAllowed(kA));
  CHECK(CheckNow(dir, kA).ok());
  CHECK(site.lookups() == 1);
  // One the site does not know is refused, saying why.
  absl::Status s = CheckNow(dir, kB);
  CHECK(s.code() == absl::StatusCode::kPermissionDenied);
  CHECK_THAT(std::string(s.message()), Catch::Contains("unknown, not approved or revoked"));
  dir.Stop();
}

TEST_CASE("while the site is away a client is allowed provisionally, and looked up once back") {
  FakeSite site;
  site.SetDown(true);
  Recorder rec;
  ClientDirectory dir(site, absl::Hours(1), rec.Hooks());
  dir.Start();
  CHECK(CheckNow(dir, kA).ok());   // provisionally
  CHECK_FALSE(dir.IsAllowed(kA));  // not confirmed
  site.SetDown(false);             // back, and it does not know kA
  CHECK(CheckNow(dir, kA).code() == absl::StatusCode::kPermissionDenied);
  CHECK(site.lookups() == 2);
  dir.Stop();
}

TEST_CASE("a client blocked at the site is dropped at once when the site says so") {
  FakeSite site;
  site.Allow(kA);
  Recorder rec;
  ClientDirectory dir(site, absl::Hours(1), rec.Hooks());
  dir.Start();
  REQUIRE(CheckNow(dir, kA).ok());
  site.Refuse(kA);
  dir.RecheckSoon({kA});  // the site's access_changed
  CHECK(rec.AwaitRefused(kA));
  CHECK_FALSE(dir.IsAllowed(kA));
  dir.Stop();
}

TEST_CASE("a push made while a lookup is under way stands over the lookup's older answer") {
  FakeSite site;
  site.Allow(kA, {});  // the lookup will say: no custom settings
  Recorder rec;
  ClientDirectory dir(site, absl::Hours(1), rec.Hooks());
  dir.SetBundle(Bundle("v1", 60));
  dir.Start();
  site.HoldLookups();
  std::promise<absl::Status> answered;
  dir.Check(kA, [&](absl::Status s) { answered.set_value(s); });
  REQUIRE(site.AwaitHeldLookup());
  dir.ApplyPushed({{kA, SettingsOnly({"fast"})}});  // the site's newer word
  site.Release();
  REQUIRE(answered.get_future().get().ok());
  CHECK(dir.AssignedTo(kA).settings == std::vector<std::string>{"fast"});
  dir.Stop();
}

TEST_CASE("a bundle change tells only the clients whose own policy changed") {
  FakeSite site;
  site.Allow(kA, {"fast"});
  site.Allow(kB, {});
  Recorder rec;
  ClientDirectory dir(site, absl::Hours(1), rec.Hooks());
  dir.Start();
  CHECK(dir.SetBundle(Bundle("v1", 60)));
  REQUIRE(CheckNow(dir, kA).ok());
  REQUIRE(CheckNow(dir, kB).ok());
  rec.Told();
  CHECK_FALSE(dir.SetBundle(Bundle("v1", 60)));  // the same version: nothing
  CHECK(dir.SetBundle(Bundle("v2", 30)));        // only "fast" changed: A's policy
  CHECK(rec.Told() == std::vector<std::string>{kA});
  CHECK(VersionOf(dir, kA) != VersionOf(dir, kB));
  // A pushed assignment that changes B's policy tells B.
  dir.ApplyPushed({{kB, SettingsOnly({"fast"})}});
  CHECK(rec.Told() == std::vector<std::string>{kB});
  CHECK(VersionOf(dir, kA) == VersionOf(dir, kB));
  dir.Stop();
}

}  // namespace strata::mp
