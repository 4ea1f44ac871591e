// nginx as a DP runs it: the configuration nginx accepts, content served
// by hash over mutual TLS with ranges, clients without a certificate of the
// hierarchy refused, and nginx restarted when it dies.

#include "dp/nginx.h"
#include "dp/dp_server.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/content/download.h"
#include "common/content/hash.h"
#include "common/content/library.h"
#include "pki/authority.h"
#include "tests/fixture/testing.h"

using namespace strata;
using namespace strata::dp;
using strata::testing::TempDir;
using strata::testing::TestPki;
using strata::testing::WaitFor;

namespace {

v1::TlsConfig Tls(const std::string& pki, const std::string& entity) {
  v1::TlsConfig t;
  t.set_ca_file(pki + "/ca.pem");
  t.set_cert_file(pki + "/" + entity + ".pem");
  t.set_key_file(pki + "/" + entity + ".key");
  return t;
}

struct Served {
  TempDir dir;
  std::unique_ptr<content::Library> lib;
  Listener listener;
  std::unique_ptr<Nginx> nginx;

  explicit Served(const std::string& listen) {
    lib = std::move(*content::Library::Open(dir.path() + "/lib"));
    auto l = OpenListener(listen == "unix" ? "unix:" + dir.path() + "/dp.sock" : listen);
    REQUIRE(l.ok());
    listener = *l;
    NginxOptions o;
    o.state_dir = dir.path() + "/state";
    o.library = dir.path() + "/lib";
    o.cert_file = TestPki() + "/site-P01.pem";
    o.key_file = TestPki() + "/site-P01.key";
    o.ca_file = TestPki() + "/ca.pem";
    o.listen = listener.config_address;
    o.workers = 1;
    nginx = std::make_unique<Nginx>(o, listener.fd);
    auto s = nginx->Start();
    INFO(s.ToString());
    REQUIRE(s.ok());
  }
  ~Served() { nginx->Stop(); }
};

// Fetches `data`'s blob from `address` into a fresh library; the status.
absl::Status Fetch(const std::string& address, const v1::TlsConfig& tls, const std::string& data,
                   int64_t offset = 0, int64_t* received = nullptr) {
  TempDir d;
  auto lib = content::Library::Open(d.path() + "/lib");
  REQUIRE(lib.ok());
  const std::string hash = content::Sha256::Of(data);
  if (offset > 0) {
    auto w = (*lib)->OpenBlob(hash, static_cast<int64_t>(data.size()), 0);
    REQUIRE((*w)->Append(absl::string_view(data).substr(0, offset)).ok());
  }
  auto w = (*lib)->OpenBlob(hash, static_cast<int64_t>(data.size()), offset);
  REQUIRE(w.ok());
  auto source = content::HttpsBlobSource(address, tls, "the DP");
  REQUIRE(source.ok());
  int64_t got = 0;
  absl::Status s =
      (*source)->Fetch({hash, static_cast<int64_t>(data.size()), 0, {}}, **w, [&](int64_t n) {
        got += n;
        return true;
      });
  if (received) *received = got;
  UNSCOPED_INFO("fetch: " << s.ToString());
  if (!s.ok()) return s;
  return (*w)->Finish();
}

}  // namespace

TEST_CASE("nginx accepts the configuration a DP writes") {
  TempDir dir;
  NginxOptions o;
  o.state_dir = dir.path();
  o.library = dir.path() + "/lib";
  o.cert_file = TestPki() + "/site-P01.pem";
  o.key_file = TestPki() + "/site-P01.key";
  o.ca_file = TestPki() + "/ca.pem";
  o.listen = "127.0.0.1:1";
  std::ofstream(dir.path() + "/nginx.conf") << NginxConfig(o);
  ::mkdir((dir.path() + "/temp").c_str(), 0755);
  const std::string cmd = absl::StrCat("/usr/sbin/nginx -t -q -c ", dir.path(), "/nginx.conf -p ",
                                       dir.path(), "/ 2>", dir.path(), "/t.err");
  INFO(strata::testing::ReadWholeFile(dir.path() + "/t.err"));
  REQUIRE(std::system(cmd.c_str()) == 0);
}

TEST_CASE(
    "a DP's nginx serves blobs by hash over mutual TLS, with ranges, on port 0 and "
    "unix sockets") {
  for (const std::string listen : {"127.0.0.1:0", "unix"}) {
    INFO(listen);
    Served dp(listen);
    const std::string data(3 << 20, 'z');
    REQUIRE(dp.lib->PutBlob(content::Sha256::Of(data), data).ok());
    const auto agent = Tls(TestPki(), "admin-alice");
    int64_t got = 0;
    REQUIRE(Fetch(dp.listener.bound_address, agent, data, 0, &got).ok());
    CHECK(got == static_cast<int64_t>(data.size()));
    // Resumed: only the rest travels.
    REQUIRE(Fetch(dp.listener.bound_address, agent, data, 1000000, &got).ok());
    CHECK(got == static_cast<int64_t>(data.size()) - 1000000);
    // Not held: NotFound, nothing written.
    CHECK(Fetch(dp.listener.bound_address, agent, "other").code() == absl::StatusCode::kNotFound);
  }
}

TEST_CASE("a DP refuses clients without a certificate of the hierarchy") {
  Served dp("127.0.0.1:0");
  const std::string data = "content";
  REQUIRE(dp.lib->PutBlob(content::Sha256::Of(data), data).ok());
  // No client certificate at all.
  v1::TlsConfig none;
  none.set_ca_file(TestPki() + "/ca.pem");
  CHECK_FALSE(Fetch(dp.listener.bound_address, none, data).ok());
  // A certificate of another CA.
  TempDir other;
  const std::string cmd =
      absl::StrCat(STRATA_SOURCE_DIR, "/deploy/pki.sh ", other.path(), " admin/mallory >/dev/null");
  REQUIRE(std::system(cmd.c_str()) == 0);
  v1::TlsConfig foreign = Tls(other.path(), "admin-mallory");
  foreign.set_ca_file(TestPki() + "/ca.pem");
  absl::Status s = Fetch(dp.listener.bound_address, foreign, data);
  CHECK(s.code() == absl::StatusCode::kPermissionDenied);
  CHECK(Fetch(dp.listener.bound_address, Tls(TestPki(), "admin-alice"), data).ok());
}

TEST_CASE("nginx killed is restarted on the same address") {
  Served dp("127.0.0.1:0");
  const std::string data = "content";
  REQUIRE(dp.lib->PutBlob(content::Sha256::Of(data), data).ok());
  const pid_t first = dp.nginx->pid();
  REQUIRE(first > 0);
  ::kill(first, SIGKILL);
  REQUIRE(WaitFor([&] { return dp.nginx->pid() > 0 && dp.nginx->pid() != first; },
                  std::chrono::seconds(10)));
  REQUIRE(WaitFor(
      [&] { return Fetch(dp.listener.bound_address, Tls(TestPki(), "admin-alice"), data).ok(); },
      std::chrono::seconds(10)));
}

TEST_CASE("a renewed certificate makes nginx reload, and it serves on") {
  Served dp("127.0.0.1:0");
  const std::string data = "content";
  REQUIRE(dp.lib->PutBlob(content::Sha256::Of(data), data).ok());
  auto unchanged = dp.nginx->ReloadIfChanged();
  REQUIRE(unchanged.ok());
  CHECK_FALSE(*unchanged);
  // The served certificate's file, rewritten (a renewal): a reload.
  TempDir renewed;
  const std::string cert = renewed.path() + "/cert.pem";
  const std::string key = renewed.path() + "/cert.key";
  std::filesystem::copy_file(TestPki() + "/site-P01.pem", cert);
  std::filesystem::copy_file(TestPki() + "/site-P01.key", key);
  NginxOptions o;
  o.state_dir = renewed.path() + "/state";
  o.library = dp.dir.path() + "/lib";
  o.cert_file = cert;
  o.key_file = key;
  o.ca_file = TestPki() + "/ca.pem";
  o.listen = dp.listener.config_address;
  o.workers = 1;
  dp.nginx->Stop();
  Nginx nginx(o, dp.listener.fd);
  REQUIRE(nginx.Start().ok());
  const pid_t pid = nginx.pid();
  REQUIRE_FALSE(*nginx.ReloadIfChanged());
  ::usleep(20000);
  std::filesystem::copy_file(TestPki() + "/site-P02.pem", cert,
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(TestPki() + "/site-P02.key", key,
                             std::filesystem::copy_options::overwrite_existing);
  auto reloaded = nginx.ReloadIfChanged();
  REQUIRE(reloaded.ok());
  CHECK(*reloaded);
  CHECK(nginx.pid() == pid);  // the same master: no restart
  REQUIRE(WaitFor(
      [&] { return Fetch(dp.listener.bound_address, Tls(TestPki(), "admin-alice"), data).ok(); },
      std::chrono::seconds(10)));
  nginx.Stop();
}

TEST_CASE("a second DP started with the same state folder is refused; the first runs on") {
  TempDir dir;
  v1::DpConfig c;
  c.set_name("P01.dp1");
  c.set_site_address("unix:" + dir.path() + "/no-site.sock");
  c.set_listen_address("unix:" + dir.path() + "/dp.sock");
  c.set_content_library(dir.path() + "/lib");
  c.set_state_dir(dir.path() + "/state");
  *c.mutable_tls() = Tls(TestPki(), "dp-P01.dp1");
  auto first = std::make_unique<DpServer>(c);
  absl::Status s = first->Start();
  INFO(s.ToString());
  REQUIRE(s.ok());
  c.set_listen_address("unix:" + dir.path() + "/dp2.sock");
  DpServer second(c);
  s = second.Start();
  CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
  CHECK(s.message().find("another strata-dp runs with state_dir") != std::string::npos);
  CHECK(std::filesystem::exists(dir.path() + "/dp.sock"));  // the first still serves
  first->Shutdown();
  first.reset();
  // Gone, it leaves no lock behind.
  DpServer third(c);
  s = third.Start();
  INFO(s.ToString());
  CHECK(s.ok());
  third.Shutdown();
}

TEST_CASE("a certificate revoked in the CRL is refused by nginx after its reload; others serve") {
  TempDir dir;
  auto root = strata::pki::Authority::Create(dir.path() + "/root", "DP Test Root", 365,
                                             "a passphrase for this test");
  REQUIRE(root.ok());
  auto issue = [&](const std::string& role, const std::string& name) {
    strata::CertificateSpec spec;
    spec.role = role;
    spec.name = name;
    spec.server = role == "dp";
    if (spec.server) spec.ip_addresses = {"127.0.0.1"};
    auto issued = (*root)->Issue(spec);
    REQUIRE(issued.ok());
    std::ofstream(dir.path() + "/" + name + ".pem") << issued->cert_pem;
    std::ofstream(dir.path() + "/" + name + ".key") << issued->key_pem;
    return issued->serial_hex;
  };
  issue("dp", "dp1");
  const std::string alice = issue("admin", "alice");
  issue("admin", "bob");
  auto tls = [&](const std::string& name) {
    v1::TlsConfig t;
    t.set_ca_file(dir.path() + "/root/root.pem");
    t.set_cert_file(dir.path() + "/" + name + ".pem");
    t.set_key_file(dir.path() + "/" + name + ".key");
    return t;
  };
  auto lib = std::move(*content::Library::Open(dir.path() + "/lib"));
  const std::string data = "content";
  REQUIRE(lib->PutBlob(content::Sha256::Of(data), data).ok());
  auto listener = OpenListener("127.0.0.1:0");
  REQUIRE(listener.ok());
  NginxOptions o;
  o.state_dir = dir.path() + "/state";
  o.library = dir.path() + "/lib";
  o.cert_file = dir.path() + "/dp1.pem";
  o.key_file = dir.path() + "/dp1.key";
  o.ca_file = dir.path() + "/root/root.pem";
  o.crl_file = dir.path() + "/root/crl.pem";
  o.listen = listener->config_address;
  o.workers = 1;
  Nginx nginx(o, listener->fd);
  REQUIRE(nginx.Start().ok());
  REQUIRE(Fetch(listener->bound_address, tls("alice"), data).ok());

  ::usleep(20000);  // a new modification time for the CRL
  REQUIRE((*root)->Revoke(alice, "keyCompromise").ok());
  auto reloaded = nginx.ReloadIfChanged();
  REQUIRE(reloaded.ok());
  CHECK(*reloaded);
  CHECK_THAT(strata::testing::ReadWholeFile(o.state_dir + "/nginx.conf"), Catch::Contains(alice));
  CHECK(WaitFor([&] { return !Fetch(listener->bound_address, tls("alice"), data).ok(); },
                std::chrono::seconds(10)));
  CHECK(Fetch(listener->bound_address, tls("bob"), data).ok());
  nginx.Stop();
}
