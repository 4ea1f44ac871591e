// `init` and `check` of the installed binaries (common/setup/setup.h), run as
// an administrator runs them: real processes, a real PostgreSQL, real
// servers over mutual TLS.

#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "catch2/catch.hpp"
#include "common/setup/setup.h"
#include "tests/fixture/site_fixture.h"
#include "tests/fixture/testing.h"

namespace strata::testing {
namespace {

using Run = CommandResult;
Run Sh(const std::string& command) { return RunCommandWithStatus(command); }

std::string Bin(const std::string& dir, const std::string& name) {
  return absl::StrCat(BinaryDir(), "/", dir, "/", name);
}

std::string Pki(const std::string& file) { return absl::StrCat(TestPki(), "/", file); }

// --tls_ca/--tls_cert/--tls_key for ROLE-NAME of the test PKI.
std::string TlsFlags(const std::string& entity) {
  return absl::StrCat(" --tls_ca ", Pki("ca.pem"), " --tls_cert ", Pki(entity + ".pem"),
                      " --tls_key ", Pki(entity + ".key"));
}

}  // namespace

TEST_CASE(
    "init writes a commented configuration a primary starts from and links with; check "
    "passes against the running parent; init refuses to overwrite without --force",
    "[setup]") {
  TempDir dir;
  SiteProcess cas("CAS", v1::SITE_TYPE_CAS, dir, "");
  cas.Start();
  TestDatabase db("p01setup");
  const std::string conf = dir.path() + "/p01.conf";
  const std::string init = absl::StrCat(
      Bin("primary", "strata-primary"), " init ", conf, " --site_code P01 --database '",
      db.conninfo(), "' --parent ", cas.address(), " --listen unix:", dir.path(), "/p01.sock",
      " --content_library ", dir.path(), "/p01.content", TlsFlags("site-P01"));
  Run r = Sh(init);
  REQUIRE(r.code == 0);
  const std::string text = ReadWholeFile(conf);
  CHECK(absl::StrContains(text, "site_code: \"P01\""));
  CHECK(absl::StrContains(text, "# The CAS (host:port); leave it out for a standalone primary."));
  // Unset fields with a sensible value are shown commented out.
  CHECK(absl::StrContains(text, "# replication: { retention_seconds: 604800 }"));
  struct stat st;
  REQUIRE(::stat(conf.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0640);  // it names key files

  r = Sh(init);
  CHECK(r.code == 2);
  CHECK(absl::StrContains(r.out, "exists; give --force to replace it"));
  CHECK(ReadWholeFile(conf) == text);
  CHECK(Sh(init + " --force").code == 0);

  r = Sh(absl::StrCat(Bin("primary", "strata-primary"), " check --config ", conf));
  CHECK(r.code == 0);
  CHECK(absl::StrContains(r.out, "ok    configuration: valid"));
  CHECK(absl::StrContains(r.out, "ok    certificate " + Pki("site-P01.pem") + ": site/P01"));
  CHECK(absl::StrContains(r.out,
                          "wal_level = logical, max_replication_slots = 64, max_wal_senders = 64, "
                          "empty (the site server creates its schema)"));
  CHECK(absl::StrContains(
      r.out, "ok    parent site " + cas.address() + ": reachable over mutual TLS, serving"));
  CHECK(absl::StrContains(r.out, "all checks passed"));

  // The written file is what a real primary runs from.
  ChildProcess p01;
  p01.Start({Bin("primary", "strata-primary"), "--config", conf}, dir.path() + "/p01.log");
  CHECK(WaitFor([&] { return cas.LinkActive("P01"); }, std::chrono::seconds(60)));
  p01.Signal(SIGTERM);
  CHECK(p01.Wait(std::chrono::seconds(30)) == 0);
}

TEST_CASE(
    "a configuration init writes is 0640 whatever the umask, and group-owned by the service's "
    "group when root writes it",
    "[setup]") {
  TempDir dir;
  const std::string path = dir.path() + "/x.conf";
  const mode_t old = ::umask(077);
  REQUIRE(setup::WriteConfigFile(path, "a: 1\n", false, "nogroup").ok());
  ::umask(old);
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0640);
  const struct group* g = ::getgrnam("nogroup");
  REQUIRE(g != nullptr);
  if (::geteuid() == 0) CHECK(st.st_gid == g->gr_gid);
  CHECK(absl::IsAlreadyExists(setup::WriteConfigFile(path, "a: 2\n", false, "nogroup")));
  CHECK(ReadWholeFile(path) == "a: 1\n");
}

TEST_CASE(
    "check names each thing that is wrong and exits 1: a certificate of another site, a key "
    "not the certificate's, another CA, no database, no parent, no schema for a provider",
    "[setup]") {
  TempDir dir;
  const std::string primary = Bin("primary", "strata-primary");
  auto check = [&](const std::string& flags) {
    return Sh(absl::StrCat(primary, " check --site_code P01 --listen unix:", dir.path(),
                           "/p.sock --database 'host=", dir.path(),
                           "/nopg dbname=x' --parent unix:", dir.path(), "/noparent.sock", flags));
  };
  Run r = check(TlsFlags("site-P02"));
  CHECK(r.code == 1);
  CHECK(absl::StrContains(r.out, "names site/P02; this needs OU=site, CN=P01"));
  CHECK(absl::StrContains(r.out, "FAIL  database: "));
  CHECK(absl::StrContains(r.out, "FAIL  parent site unix:" + dir.path() + "/noparent.sock"));
  CHECK(absl::StrContains(r.out, "check(s) failed"));

  r = check(absl::StrCat(" --tls_ca ", Pki("ca.pem"), " --tls_cert ", Pki("site-P01.pem"),
                         " --tls_key ", Pki("site-P02.key")));
  CHECK(absl::StrContains(r.out, "the key " + Pki("site-P02.key") + " is not its key"));

  // A certificate for P01 from a CA the hierarchy does not know.
  const std::string other = dir.path() + "/otherpki";
  REQUIRE(Sh(SourceDir() + "/deploy/pki.sh " + other + " site/P01").code == 0);
  r = check(absl::StrCat(" --tls_ca ", Pki("ca.pem"), " --tls_cert ", other,
                         "/site-P01.pem --tls_key ", other, "/site-P01.key"));
  CHECK(absl::StrContains(r.out, "not trusted by " + Pki("ca.pem")));

  // A provider pointed at a database no site server has run on.
  TestDatabase empty("provsetup");
  r = Sh(absl::StrCat(Bin("provider", "strata-provider"), " check --database '", empty.conninfo(),
                      "' --listen unix:", dir.path(), "/prov.sock", TlsFlags("provider-P01")));
  CHECK(r.code == 1);
  CHECK(absl::StrContains(r.out, "ok    certificate " + Pki("provider-P01.pem")));
  CHECK(absl::StrContains(r.out, "no site schema: start the site server on this database first"));

  // A site database role without REPLICATION cannot stream its WAL.
  empty.Exec("DROP ROLE IF EXISTS strata_norepl");
  empty.Exec("CREATE ROLE strata_norepl LOGIN");
  r = Sh(absl::StrCat(primary, " check --site_code P01 --listen unix:", dir.path(),
                      "/p.sock --database '", empty.conninfo(), " user=strata_norepl'",
                      TlsFlags("site-P01")));
  empty.Exec("DROP ROLE strata_norepl");
  CHECK(r.code == 1);
  CHECK(absl::StrContains(r.out, "the role lacks REPLICATION"));

  // A configuration that does not validate: said, and still checked further.
  r = Sh(absl::StrCat(primary, " check --site_code p1 --listen unix:", dir.path(), "/p.sock",
                      " --database x", TlsFlags("site-P01")));
  CHECK(r.code == 1);
  CHECK(absl::StrContains(r.out, "FAIL  configuration: site_code: "));
}

TEST_CASE(
    "every role's init writes a file its own check reads back; the MP, DP and agent check their "
    "site server or MP over TLS",
    "[setup]") {
  TempDir dir;
  SiteProcess cas("CAS", v1::SITE_TYPE_CAS, dir, "");
  cas.Start();
  SiteProcess p01("P01", v1::SITE_TYPE_PRIMARY, dir, cas.address());
  p01.Start();
  const std::string d = dir.path();

  Run r = Sh(absl::StrCat(Bin("mp", "strata-mp"), " init ", d, "/mp.conf --name P01.mp1 --site ",
                          p01.address(), " --listen unix:", d, "/mp.sock --spool_dir ", d, "/spool",
                          TlsFlags("mp-P01.mp1")));
  REQUIRE(r.code == 0);
  r = Sh(absl::StrCat(Bin("mp", "strata-mp"), " check --config ", d, "/mp.conf"));
  CHECK(r.code == 0);
  CHECK(absl::StrContains(r.out, "ok    site server " + p01.address()));
  CHECK(absl::StrContains(r.out, "ok    spool " + d + "/spool: will be created"));
  // The written file is what a real MP runs from.
  ChildProcess mp;
  mp.Start({Bin("mp", "strata-mp"), "--config", d + "/mp.conf"}, d + "/mp.log");
  REQUIRE(
      WaitFor([&] { return Sh("test -S " + d + "/mp.sock").code == 0; }, std::chrono::seconds(30)));

  r = Sh(absl::StrCat(Bin("dp", "strata-dp"), " init ", d, "/dp.conf --name P01.dp1 --site ",
                      p01.address(), " --listen 127.0.0.1:0 --content_library ", d,
                      "/dplib --state_dir ", d, "/dpstate", TlsFlags("dp-P01.dp1")));
  REQUIRE(r.code == 0);
  r = Sh(absl::StrCat(Bin("dp", "strata-dp"), " check --config ", d, "/dp.conf"));
  CHECK(absl::StrContains(r.out, "ok    site server " + p01.address()));
  CHECK(absl::StrContains(r.out, "ok    nginx /usr/sbin/nginx: executable"));
  CHECK(r.code == 0);

  // An agent not registered yet reaches MPs without a certificate; the
  // second MP is not there.
  r = Sh(absl::StrCat(Bin("agent", "strata-agent"), " init ", d, "/agent.conf --mp unix:", d,
                      "/mp.sock,unix:", d, "/nomp.sock --ca ", Pki("ca.pem"), " --state_dir ", d,
                      "/agent"));
  REQUIRE(r.code == 0);
  CHECK(absl::StrContains(ReadWholeFile(d + "/agent.conf"),
                          "# enrollment_token_file: \"/etc/strata/enrollment-token\""));
  r = Sh(absl::StrCat(Bin("agent", "strata-agent"), " check --config ", d, "/agent.conf"));
  CHECK(r.code == 1);
  CHECK(absl::StrContains(
      r.out, "ok    management point unix:" + d + "/mp.sock: reachable over TLS, serving"));
  CHECK(absl::StrContains(r.out, "FAIL  management point unix:" + d + "/nomp.sock"));

  r = Sh(absl::StrCat(Bin("provider", "strata-provider"), " init ", d, "/prov.conf --database '",
                      p01.db().conninfo(), "' --listen unix:", d, "/prov.sock --site ",
                      p01.address(), TlsFlags("provider-P01")));
  REQUIRE(r.code == 0);
  r = Sh(absl::StrCat(Bin("provider", "strata-provider"), " check --config ", d, "/prov.conf"));
  CHECK(r.code == 0);
  CHECK(absl::StrContains(r.out, "site schema present"));

  r = Sh(absl::StrCat(Bin("secondary", "strata-secondary"), " init ", d,
                      "/s01.conf --site_code S01 "
                      "--database x --listen unix:",
                      d, "/s01.sock"));
  CHECK(r.code == 2);
  CHECK(absl::StrContains(r.out,
                          "parent_address: a secondary site needs the address of its primary"));
  CHECK(Sh("test -e " + d + "/s01.conf").code != 0);  // nothing written
}

}  // namespace strata::testing
