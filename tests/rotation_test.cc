// A production PKI run as an administrator runs it: strata-pki makes the
// root (passphrase-protected), the sites' certificates, a renewal and
// revocations; real site servers over mutual TLS honour the CRL and pick up
// a renewed certificate without a restart.

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "catch2/catch.hpp"
#include "common/net/pki.h"
#include "tests/fixture/site_fixture.h"
#include "tests/fixture/testing.h"

namespace strata::testing {
namespace {

CommandResult Sh(const std::string& command) { return RunCommandWithStatus(command); }

struct RootCa {
  std::string root;   // the offline CA folder
  std::string hosts;  // the certificates as installed on the hosts
  std::string pki;    // strata-pki with --dir and --passphrase-file

  explicit RootCa(const TempDir& dir) {
    root = dir.path() + "/root";
    hosts = dir.path() + "/hosts";
    REQUIRE(Sh("mkdir -p " + hosts).code == 0);
    const std::string pass = dir.path() + "/passphrase";
    REQUIRE(Sh("echo 'a passphrase for the test root' > " + pass).code == 0);
    pki = absl::StrCat(BinaryDir(), "/pki/strata-pki --dir ", root, " --passphrase-file ", pass);
    CommandResult r = Sh(pki + " init --name 'Strata Test Root'");
    INFO(r.out);
    REQUIRE(r.code == 0);
    Publish();
  }
  // Copies the CRL to the hosts, as an admin's deployment would.
  void Publish() { REQUIRE(Sh("cp " + root + "/crl.pem " + hosts + "/crl.pem").code == 0); }
  // Issues site/CODE for localhost (sites listen on unix sockets here).
  std::string Issue(const std::string& code) {
    CommandResult r = Sh(
        absl::StrCat(pki, " issue site ", code, " --dns localhost --out ", hosts, "/site-", code));
    INFO(r.out);
    REQUIRE(r.code == 0);
    return Serial(code);
  }
  std::string Serial(const std::string& code) const {
    auto info = InspectCertificate(ReadWholeFile(absl::StrCat(hosts, "/site-", code, ".pem")));
    REQUIRE(info.ok());
    return info->serial_hex;
  }
  // --force: a renewed certificate's old serial, whose key lives on.
  void Revoke(const std::string& serial) {
    CommandResult r = Sh(absl::StrCat(pki, " revoke ", serial, " --reason superseded --force"));
    INFO(r.out);
    REQUIRE(r.code == 0);
    Publish();
  }
  SiteOptions Options(const std::string& code) const {
    SiteOptions options;
    v1::TlsConfig tls;
    tls.set_ca_file(root + "/root.pem");
    tls.set_cert_file(absl::StrCat(hosts, "/site-", code, ".pem"));
    tls.set_key_file(absl::StrCat(hosts, "/site-", code, ".key"));
    tls.set_crl_file(hosts + "/crl.pem");
    tls.set_refresh_seconds(1);
    options.tls = tls;
    return options;
  }
};

}  // namespace

TEST_CASE(
    "a site's certificate renewed while it runs: its link reconnects with the new one, the old "
    "one is revoked, and a revoked site is refused",
    "[pki]") {
  TempDir dir;
  RootCa ca(dir);
  ca.Issue("CAS");
  const std::string first = ca.Issue("P01");
  SiteProcess cas("CAS", v1::SITE_TYPE_CAS, dir, "", ca.Options("CAS"));
  cas.Start();
  SiteProcess p01("P01", v1::SITE_TYPE_PRIMARY, dir, cas.address(), ca.Options("P01"));
  p01.Start();
  REQUIRE(WaitFor([&] { return cas.LinkActive("P01"); }, std::chrono::seconds(30)));

  // Renewed at the root (same key), installed on P01's host while it runs.
  const std::string hosts = ca.hosts;
  CommandResult r = Sh(
      absl::StrCat(ca.pki, " renew ", hosts, "/site-P01.pem --out ", dir.path(), "/renewed.pem"));
  INFO(r.out);
  REQUIRE(r.code == 0);
  r = Sh(absl::StrCat(BinaryDir(), "/pki/strata-pki install ", dir.path(), "/renewed.pem --cert ",
                      hosts, "/site-P01.pem --key ", hosts, "/site-P01.key --ca ", ca.root,
                      "/root.pem"));
  INFO(r.out);
  REQUIRE(r.code == 0);
  const std::string renewed = ca.Serial("P01");
  REQUIRE(renewed != first);
  REQUIRE(WaitFor([&] { return absl::StrContains(p01.LogText(), "site.tls_changed"); },
                  std::chrono::seconds(20)));
  REQUIRE(WaitFor([&] { return cas.LinkActive("P01"); }, std::chrono::seconds(30)));

  // The old certificate is revoked; the CAS restarts, so P01 must connect
  // anew: it does, with the renewed certificate.
  ca.Revoke(first);
  cas.Kill9();
  cas.Start();
  CHECK(WaitFor([&] { return cas.LinkActive("P01"); }, std::chrono::seconds(30)));

  // A site whose certificate is revoked is refused in the handshake.
  const std::string p02_serial = ca.Issue("P02");
  ca.Revoke(p02_serial);
  SiteProcess p02("P02", v1::SITE_TYPE_PRIMARY, dir, cas.address(), ca.Options("P02"));
  p02.Start();  // it serves; its link to the CAS does not come up
  CHECK(WaitFor([&] { return absl::StrContains(cas.LogText(), "tls.peer_revoked"); },
                std::chrono::seconds(30)));
  CHECK(absl::StrContains(cas.LogText(), "OU=site/CN=P02"));
  CHECK_FALSE(cas.LinkActive("P02"));
  CHECK(cas.LinkActive("P01"));

  // The index tells what happened.
  r = Sh(ca.pki + " list");
  CHECK(r.code == 0);
  CHECK(absl::StrContains(r.out, first));
  CHECK(absl::StrContains(r.out, "revoked"));
  CHECK(absl::StrContains(r.out, renewed));
}

TEST_CASE("strata-pki refuses bad input with a clear message and a non-zero exit", "[pki]") {
  TempDir dir;
  RootCa ca(dir);
  const std::string pki = BinaryDir() + "/pki/strata-pki";
  // A second root in the same folder.
  CommandResult r = Sh(ca.pki + " init --name Again");
  CHECK(r.code != 0);
  CHECK(absl::StrContains(r.out, "already holds a root"));
  // The wrong passphrase.
  REQUIRE(Sh("echo wrong-passphrase-here > " + dir.path() + "/wrong").code == 0);
  r = Sh(absl::StrCat(pki, " issue --dir ", ca.root, " --passphrase-file ", dir.path(),
                      "/wrong admin alice"));
  CHECK(r.code == 1);
  CHECK(absl::StrContains(r.out, "wrong passphrase"));
  // No passphrase source without a terminal.
  r = Sh(absl::StrCat(pki, " issue --dir ", ca.root, " admin alice </dev/null"));
  CHECK(r.code == 2);
  CHECK(absl::StrContains(r.out, "--passphrase-file"));
  // A server certificate without the names clients reach it by.
  r = Sh(ca.pki + " issue mp P01.mp1");
  CHECK(r.code == 2);
  CHECK(absl::StrContains(r.out, "--dns"));
  r = Sh(ca.pki + " issue site P09 --ip 10.0.0.300");
  CHECK(r.code == 2);
  CHECK(absl::StrContains(r.out, "not an IP address"));
  // An unknown role or reason.
  CHECK(Sh(ca.pki + " issue sitex P01 --dns a").code != 0);
  CHECK(Sh(ca.pki + " revoke 01 --reason because").code != 0);
  // Installing a certificate for another key changes nothing.
  ca.Issue("P01");
  ca.Issue("P02");
  const std::string before = ReadWholeFile(ca.hosts + "/site-P01.pem");
  r = Sh(absl::StrCat(pki, " install ", ca.hosts, "/site-P02.pem --cert ", ca.hosts,
                      "/site-P01.pem --key ", ca.hosts, "/site-P01.key --ca ", ca.root,
                      "/root.pem"));
  CHECK(r.code == 2);
  CHECK(absl::StrContains(r.out, "is not a certificate for the key"));
  CHECK(ReadWholeFile(ca.hosts + "/site-P01.pem") == before);
  // Nothing was recorded for the refused requests: two certificates issued.
  r = Sh(ca.pki + " list | grep -c site/");
  CHECK(absl::StripAsciiWhitespace(r.out) == "2");
}

}  // namespace strata::testing
