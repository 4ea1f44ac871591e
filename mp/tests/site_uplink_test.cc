// The MP's link to its site against a fake site: the spool goes up in
// batches and is dropped once acknowledged; what the site sends reaches its
// handlers; the status says how many clients the MP holds.

#include "mp/site_uplink.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <future>

#include "mp/tests/fake_site.h"

namespace strata::mp {
namespace {

using testing::FakeSite;
using testing::FakeStream;

struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/strata-uplink-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string path;
};

std::string Record(int64_t seq) {
  v1::ClientReport r;
  r.set_client_id("00000000-0000-4000-8000-000000000001");
  r.set_seq(seq);
  r.mutable_heartbeat()->set_hostname("h");
  return r.SerializeAsString();
}

void AppendAndWait(Spool& spool, std::vector<std::string> records) {
  std::promise<absl::Status> done;
  spool.Append(std::move(records), [&](absl::Status s, int64_t) { done.set_value(s); });
  REQUIRE(done.get_future().get().ok());
}

UplinkOptions Options() {
  UplinkOptions o;
  o.hello.set_name("P01.mp1");
  o.hello.set_address("unix:/nowhere");
  o.hello.set_version("test");
  o.site_address = "fake";
  o.batch_max_reports = 2;
  o.status_every = absl::Milliseconds(100);
  return o;
}

}  // namespace

TEST_CASE("spooled reports go up in batches after a hello, and go once acknowledged") {
  TempDir dir;
  auto spool = Spool::Open(dir.path, Spool::Options());
  REQUIRE(spool.ok());
  AppendAndWait(**spool, {Record(1), Record(2), Record(3)});
  FakeSite site;
  SiteUplink uplink(site, **spool, Options(), UplinkHandlers());
  uplink.Start();
  FakeStream* stream = site.stream();
  REQUIRE(stream != nullptr);
  v1::MpUp up;
  REQUIRE(stream->AwaitUp([](const v1::MpUp& m) { return m.has_hello(); }, &up));
  CHECK(up.hello().name() == "P01.mp1");
  CHECK(up.hello().version() == "test");
  // Two reports, then the third (batch_max_reports 2); two batches in flight.
  REQUIRE(stream->AwaitUp([](const v1::MpUp& m) { return m.batch().spool_seq() == 3; }, &up));
  CHECK(up.batch().reports_size() == 1);
  CHECK((*spool)->acknowledged() == 0);
  v1::MpDown ack;
  ack.set_acked_spool_seq(3);
  stream->Send(ack);
  for (int i = 0; i < 100 && (*spool)->acknowledged() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK((*spool)->acknowledged() == 3);
  uplink.Stop();
}

TEST_CASE("what the site sends reaches the handlers; the status counts the MP's clients") {
  TempDir dir;
  auto spool = Spool::Open(dir.path, Spool::Options());
  REQUIRE(spool.ok());
  FakeSite site;
  absl::Mutex mu;
  std::vector<bool> bundles_first;
  std::vector<std::string> access;
  std::vector<std::string> requests;
  UplinkHandlers h;
  h.bundle = [&](const v1::SiteBundle&, bool first) {
    absl::MutexLock lock(&mu);
    bundles_first.push_back(first);
  };
  h.access_changed = [&](const std::vector<std::string>& ids) {
    absl::MutexLock lock(&mu);
    access.insert(access.end(), ids.begin(), ids.end());
  };
  h.request = [&](const v1::ClientRequest& r) {
    absl::MutexLock lock(&mu);
    requests.push_back(r.client_id());
  };
  h.clients_connected = [] { return int64_t{42}; };
  SiteUplink uplink(site, **spool, Options(), h);
  uplink.Start();
  FakeStream* stream = site.stream();
  REQUIRE(stream != nullptr);
  v1::MpDown m;
  m.mutable_bundle()->set_version("b1");
  stream->Send(m);
  m.mutable_bundle()->set_version("b2");
  stream->Send(m);
  m.Clear();
  m.mutable_access_changed()->add_client_ids("c1");
  m.mutable_access_changed()->add_client_ids("c2");
  stream->Send(m);
  m.Clear();
  m.mutable_request()->set_client_id("c3");
  stream->Send(m);
  v1::MpUp up;
  REQUIRE(stream->AwaitUp([](const v1::MpUp& u) { return u.has_status(); }, &up));
  CHECK(up.status().clients_connected() == 42);
  {
    absl::MutexLock lock(&mu);
    auto all = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return !requests.empty(); };
    REQUIRE(mu.AwaitWithTimeout(absl::Condition(&all), absl::Seconds(10)));
    CHECK(bundles_first == std::vector<bool>{true, false});
    CHECK(access == std::vector<std::string>{"c1", "c2"});
    CHECK(requests == std::vector<std::string>{"c3"});
  }
  uplink.Stop();
}

}  // namespace strata::mp
