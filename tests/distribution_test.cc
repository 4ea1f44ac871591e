// Content across the hierarchy: packages made at the CAS from a folder
// reach every site's content library (stored once, only changes moving),
// bad input is refused with nothing written, validation finds and repairs
// a corrupted blob, and distribution points hold and serve what is
// distributed to them.

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <ctime>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/content/hash.h"
#include "common/content/manifest.h"
#include "common/net/tls.h"
#include "strata/v1/admin/packages.grpc.pb.h"
#include "tests/fixture/content_fixture.h"

using namespace strata;
using namespace strata::testing;
using std::chrono::seconds;

TEST_CASE(
    "a package made at the CAS reaches every site's library, blobs stored once, only "
    "changes moving",
    "[content]") {
  ContentHierarchy h;
  const std::string src = h.dir.path() + "/tools";
  const std::string big = RandomBytes(4 << 20, 1);
  WriteFile(src + "/bin/deep/tool.sh", "#!/bin/sh\necho tool\n");
  WriteFile(src + "/docs/a/b/readme.txt", "read me\n");
  WriteFile(src + "/empty", "");
  WriteFile(src + "/data/big.bin", big);
  ::chmod((src + "/bin/deep/tool.sh").c_str(), 0755);

  CtlRun r = h.Ctl({"create", "package", "Tools", "--source", src, "--description", "Admin tools"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("package \"Tools\" version 1 created: 4 files") != std::string::npos);
  REQUIRE(h.InstalledEverywhere("Tools", 1));
  for (SiteProcess* s : h.sites()) RequireHeld(*s, src);
  CHECK(BytesFetched(*h.s01, "Tools", 1) == static_cast<int64_t>(big.size() + 20 + 8));
  CHECK(Eventually(h.cas->db(),
                   "SELECT count(*) FROM audit_log WHERE object_type = 'package' AND action = "
                   "'create' AND object_name = 'Tools'",
                   "1"));

  // A second package sharing the big file: stored once, not sent again.
  const std::string src2 = h.dir.path() + "/more";
  WriteFile(src2 + "/copy-of-big.bin", big);
  WriteFile(src2 + "/new.txt", "only here\n");
  r = h.Ctl({"create", "package", "More", "--source", src2});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("(10 B sent") != std::string::npos);
  REQUIRE(h.InstalledEverywhere("More", 1));
  CHECK(BytesFetched(*h.p01, "More", 1) == 10);
  CHECK(BlobCount(*h.p01) == 5);  // tool, readme, empty, big, new

  // A new version: only the changed file travels; the old version goes.
  WriteFile(src + "/docs/a/b/readme.txt", "read me, version two\n");
  r = h.Ctl({"update", "package", "Tools", "--source", src});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("version 2 made") != std::string::npos);
  CHECK(r.out.find("(21 B sent") != std::string::npos);
  REQUIRE(h.InstalledEverywhere("Tools", 2));
  for (SiteProcess* s : {h.p01.get(), h.p02.get(), h.s01.get()}) {
    INFO(s->code());
    CHECK(BytesFetched(*s, "Tools", 2) == 21);
    RequireHeld(*s, src);
  }
  CHECK(Eventually(h.cas->db(),
                   "SELECT count(*) FROM content_status WHERE package = 'Tools' AND "
                   "version = 1",
                   "0"));

  // The status view from the CAS names every site.
  r = h.Ctl({"get", "content-status", "Tools", "-o", "csv"});
  REQUIRE(r.exit_code == 0);
  for (const char* site :
       {"CAS,site,installed", "P01,site,installed", "P02,site,installed", "S01,site,installed"})
    CHECK(r.out.find(site) != std::string::npos);
  for (const char* order : {"name", "size", "created"}) {
    INFO(order);
    CHECK(h.Ctl({"get", "packages", "--sort-by", order, "-o", "csv"}).exit_code == 0);
  }
  r = h.Ctl({"describe", "package", "Tools"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("docs/a/b/readme.txt") != std::string::npos);

  // Deleted: every library releases it (collected after the grace period).
  REQUIRE(h.Ctl({"delete", "package", "More"}).exit_code == 0);
  CHECK(Eventually(h.s01->db(), "SELECT count(*) FROM package_files WHERE package = 'More'", "0"));
  CHECK(Eventually(h.cas->db(), "SELECT count(*) FROM content_status WHERE package = 'More'", "0"));
  // Made again under the same name (version 1 again, other files): every
  // site holds the new files, not what it held under that version before.
  const std::string src3 = h.dir.path() + "/more-again";
  WriteFile(src3 + "/other.txt", "something else entirely\n");
  r = h.Ctl({"create", "package", "More", "--source", src3});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  REQUIRE(h.InstalledEverywhere("More", 1));
  for (SiteProcess* s : h.sites()) RequireHeld(*s, src3);
}

TEST_CASE(
    "a site or DP whose content link's hours are not now waits, queued, and takes the content "
    "once an admin changes the link",
    "[content]") {
  // Twelve hours from now, local time: certainly not now.
  time_t t = ::time(nullptr);
  struct tm local;
  ::localtime_r(&t, &local);
  const std::string later = std::to_string((local.tm_hour + 12) % 24);
  ContentHierarchy h;
  DpProcess dp("P01.dp1", h.dir, h.p01->address());
  dp.Start();
  REQUIRE(h.DpsOnline(1));
  // Refused, nothing written: an unknown target, hours that do not parse.
  CtlRun r = h.Ctl({"set", "content-link", "X99", "--hours", later});
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("no site or distribution point \"X99\"") != std::string::npos);
  r = h.Ctl({"set", "content-link", "S01", "--hours", "25"});
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("outside 0-23") != std::string::npos);
  CHECK(h.cas->db().ScalarInt("SELECT count(*) FROM content_links") == 0);
  // Set at the CAS, applied at the secondary and by P01's DP.
  for (const char* target : {"S01", "P01.dp1"}) {
    r = h.Ctl(
        {"set", "content-link", target, "--hours", later, "--max-bytes-per-second", "50000000"});
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
  }
  r = h.Ctl({"get", "content-links", "-o", "csv"});
  CHECK(r.out.find("P01.dp1,dp,50000000," + later) != std::string::npos);
  CHECK(r.out.find("S01,site,50000000," + later) != std::string::npos);
  REQUIRE(Eventually(h.s01->db(), "SELECT count(*) FROM content_links", "2"));
  const std::string src = h.dir.path() + "/src";
  WriteFile(src + "/file", RandomBytes(100000, 9));
  REQUIRE(h.Ctl({"create", "package", "Night", "--source", src}).exit_code == 0);
  REQUIRE(h.Ctl({"distribute", "package", "Night", "--dp", "P01.dp1"}).exit_code == 0);
  REQUIRE(Eventually(h.cas->db(),
                     "SELECT count(*) FROM content_status WHERE package = 'Night' AND location "
                     "= 'site' AND state = 'installed'",
                     "3", seconds(60)));
  REQUIRE(Eventually(h.cas->db(),
                     "SELECT string_agg(site_code || ' ' || location || ' ' || state || ' ' || "
                     "(error LIKE '%outside the hours%'), ', ' ORDER BY site_code) FROM "
                     "content_status WHERE package = 'Night' AND state <> 'installed'",
                     "P01 P01.dp1 queued true, S01 site queued true", seconds(30)));
  CHECK(BlobCount(*h.s01) == 0);
  CHECK(dp.LogText().find("dp.link_changed") != std::string::npos);
  // The admin lets S01's content move at any hour; P01.dp1's link goes, so
  // its own configuration (any hour) decides again. No restart.
  REQUIRE(h.Ctl({"set", "content-link", "S01"}).exit_code == 0);
  REQUIRE(h.Ctl({"delete", "content-link", "P01.dp1"}).exit_code == 0);
  CHECK(Eventually(h.cas->db(),
                   "SELECT state FROM content_status WHERE package = 'Night' AND site_code = "
                   "'S01'",
                   "installed", seconds(60)));
  RequireHeld(*h.s01, src);
  CHECK(DpState(*h.cas, "P01.dp1", "Night", 1, "installed"));
  RequireServed(dp, src);
  CHECK(h.Ctl({"delete", "content-link", "P01.dp1"}).exit_code != 0);  // gone already
}

TEST_CASE("bad content is refused and nothing is written", "[content]") {
  ContentHierarchy h;
  const std::string src = h.dir.path() + "/src";
  WriteFile(src + "/ok.txt", "fine\n");
  WriteFile(h.dir.path() + "/secret", "outside\n");
  REQUIRE(::symlink((h.dir.path() + "/secret").c_str(), (src + "/escape").c_str()) == 0);
  const int64_t before = BlobCount(*h.cas);

  // A symlink out of the source folder.
  CtlRun r = h.Ctl({"create", "package", "Escape", "--source", src});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("points out of the source folder") != std::string::npos);
  ::unlink((src + "/escape").c_str());

  // Made below the top of the hierarchy.
  r = h.Ctl({"create", "package", "Low", "--source", src}, h.pv_p01.get());
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("packages are made at the top of the hierarchy (CAS)") != std::string::npos);

  // An administrator without package.create.
  REQUIRE(h.Ctl({"set", "admin", "bob", "--role", "Read-only Analyst"}).exit_code == 0);
  r = h.Ctl({"create", "package", "Bobs", "--source", src}, nullptr, "bob");
  CHECK(r.exit_code == 3);
  CHECK(h.Ctl({"get", "packages"}, nullptr, "bob").exit_code == 0);

  // Straight to the API: a path out of the package, an absolute path, bytes
  // that are not the blob they claim to be.
  auto channel = MakeChannel(h.pv_cas->address(), [] {
    v1::TlsConfig t;
    t.set_ca_file(TestPki() + "/ca.pem");
    t.set_cert_file(TestPki() + "/admin-alice.pem");
    t.set_key_file(TestPki() + "/admin-alice.key");
    return t;
  }());
  REQUIRE(channel.ok());
  auto stub = v1::PackageService::NewStub(*channel);
  for (const char* bad : {"../../etc/cron.d/x", "/etc/passwd", "a/../../b"}) {
    v1::PackageUpload up;
    up.set_name("Evil");
    up.set_new_package(true);
    auto* f = up.mutable_manifest()->add_files();
    f->set_path(bad);
    f->set_size(5);
    f->set_sha256(content::Sha256().HexDigest());
    grpc::ClientContext ctx;
    v1::UploadPlan plan;
    grpc::Status s = stub->PlanPackageUpload(&ctx, up, &plan);
    INFO(bad);
    CHECK(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    grpc::ClientContext ctx2;
    v1::Package out;
    CHECK(stub->CommitPackageVersion(&ctx2, up, &out).error_code() ==
          grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    content::Sha256 h256;
    h256.Update("the real bytes");
    grpc::ClientContext ctx;
    v1::PutBlobResult res;
    auto w = stub->UploadBlob(&ctx, &res);
    v1::PutBlobChunk c;
    c.set_sha256(h256.HexDigest());
    c.set_size(14);
    c.set_data("other bytes!!!");
    w->Write(c);
    w->WritesDone();
    CHECK(w->Finish().error_code() == grpc::StatusCode::DATA_LOSS);
  }
  CHECK(BlobCount(*h.cas) == before);
  {
    // A commit naming a blob the library holds, with another size.
    const std::string data = "the real bytes";
    const std::string hash = content::Sha256::Of(data);
    grpc::ClientContext ctx;
    v1::PutBlobResult res;
    auto w = stub->UploadBlob(&ctx, &res);
    v1::PutBlobChunk c;
    c.set_sha256(hash);
    c.set_size(static_cast<int64_t>(data.size()));
    c.set_data(data);
    w->Write(c);
    w->WritesDone();
    REQUIRE(w->Finish().ok());
    v1::PackageUpload up;
    up.set_name("Liar");
    up.set_new_package(true);
    auto* f = up.mutable_manifest()->add_files();
    f->set_path("f");
    f->set_size(15);
    f->set_sha256(hash);
    grpc::ClientContext ctx2;
    v1::Package out;
    grpc::Status s = stub->CommitPackageVersion(&ctx2, up, &out);
    CHECK(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(s.error_message().find("in the content library has 14 bytes") != std::string::npos);
  }
  CHECK(h.cas->db().ScalarInt("SELECT count(*) FROM packages") == 0);
  CHECK(h.cas->db().ScalarInt("SELECT count(*) FROM package_files") == 0);
}

TEST_CASE("validation finds a corrupted blob at a site, reports it at the CAS, and repairs it",
          "[content]") {
  ContentHierarchy h(/*validation_seconds=*/2);
  const std::string src = h.dir.path() + "/src";
  WriteFile(src + "/bin/tool", "the real tool\n");
  WriteFile(src + "/other", "other\n");
  REQUIRE(h.Ctl({"create", "package", "Tools", "--source", src}).exit_code == 0);
  REQUIRE(h.InstalledEverywhere("Tools", 1));
  content::Sha256 d;
  d.Update("the real tool\n");
  const std::string hash = d.HexDigest();
  const std::string blob =
      absl::StrCat(h.p01->content_library(), "/sha256/", hash.substr(0, 2), "/", hash);
  ::chmod(blob.c_str(), 0644);
  WriteFile(blob, "the evil tool\n");
  REQUIRE(Eventually(h.cas->db(),
                     absl::StrCat("SELECT files FROM content_validation_failures WHERE site_code "
                                  "= 'P01' AND location = 'site' AND sha256 = '",
                                  hash, "'"),
                     "Tools version 1: bin/tool", seconds(30)));
  REQUIRE(Eventually(h.cas->db(),
                     "SELECT count(*) FROM content_validation_failures WHERE repaired_at IS NOT "
                     "NULL",
                     "1", seconds(30)));
  RequireHeld(*h.p01, src);
  CtlRun r = h.Ctl({"get", "content-status", "Tools"});
  CHECK(r.out.find("validation failures") != std::string::npos);
}

TEST_CASE(
    "distribution points at every site hold what is distributed to them and their "
    "groups, serve it over mutual TLS, and report to the CAS",
    "[content][dp]") {
  ContentHierarchy h;
  DpProcess dp_p01("P01.dp1", h.dir, h.p01->address());
  DpProcess dp_p02("P02.dp1", h.dir, h.p02->address());
  DpProcess dp_s01("S01.dp1", h.dir, h.s01->address());
  for (DpProcess* dp : {&dp_p01, &dp_p02, &dp_s01}) dp->Start();
  REQUIRE(h.DpsOnline(3));

  const std::string src = h.dir.path() + "/tools";
  WriteFile(src + "/bin/tool.sh", "#!/bin/sh\necho tool\n");
  WriteFile(src + "/share/doc/readme", "read me\n");
  WriteFile(src + "/empty", "");
  WriteFile(src + "/data.bin", RandomBytes(2 << 20, 3));
  REQUIRE(h.Ctl({"create", "package", "Tools", "--source", src}).exit_code == 0);
  CtlRun r = h.Ctl({"create", "dp-group", "Branches", "--dp", "S01.dp1"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  r = h.Ctl({"distribute", "package", "Tools", "--dp", "P01.dp1", "--dp", "P02.dp1", "--dp-group",
             "Branches"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  for (const char* dp : {"P01.dp1", "P02.dp1", "S01.dp1"})
    REQUIRE(DpState(*h.cas, dp, "Tools", 1, "installed"));
  for (DpProcess* dp : {&dp_p01, &dp_p02, &dp_s01}) RequireServed(*dp, src);

  // A pull-DP added to the group later takes the group's content from its
  // source DP, over HTTPS.
  DpProcess pull("P01.dp2", h.dir, h.p01->address());
  pull.add_config(absl::StrCat("pull_from: \"", dp_p01.address(), "\"\n"));
  pull.Start();
  REQUIRE(Eventually(h.cas->db(),
                     "SELECT count(*) FROM site_systems WHERE role = 'dp' AND name = 'P01.dp2'",
                     "1", seconds(30)));
  REQUIRE(h.Ctl({"update", "dp-group", "Branches", "--add-dp", "P01.dp2"}).exit_code == 0);
  REQUIRE(DpState(*h.cas, "P01.dp2", "Tools", 1, "installed"));
  RequireServed(pull, src);
  CHECK(pull.LogText().find("source=\"source DP " + dp_p01.address()) != std::string::npos);
  CHECK(DpBytesFetched(pull, "Tools", 1) == (2 << 20) + 20 + 8);

  r = h.Ctl({"get", "content-status", "Tools", "-o", "csv"});
  REQUIRE(r.exit_code == 0);
  for (const char* line : {"P01,P01.dp1,installed", "P01,P01.dp2,installed",
                           "P02,P02.dp1,installed", "S01,S01.dp1,installed"})
    CHECK(r.out.find(line) != std::string::npos);
  r = h.Ctl({"get", "dps", "-o", "csv"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("S01.dp1,S01,online") != std::string::npos);
  CHECK(r.out.find("Branches") != std::string::npos);

  // A new version: each DP takes only the changed file.
  WriteFile(src + "/share/doc/readme", "read me again\n");
  REQUIRE(h.Ctl({"update", "package", "Tools", "--source", src}).exit_code == 0);
  for (const char* dp : {"P01.dp1", "P01.dp2", "P02.dp1", "S01.dp1"})
    REQUIRE(DpState(*h.cas, dp, "Tools", 2, "installed"));
  for (DpProcess* dp : {&dp_p01, &pull, &dp_p02, &dp_s01}) {
    INFO(dp->name());
    CHECK(DpBytesFetched(*dp, "Tools", 2) == 14);
    RequireServed(*dp, src);
  }

  // A blob corrupted on a DP's disk: validation on demand finds it, the DP
  // fetches the good bytes again, the CAS sees both.
  const std::string hash = content::Sha256::Of("#!/bin/sh\necho tool\n");
  const std::string blob = absl::StrCat(dp_p02.library(), "/sha256/", hash.substr(0, 2), "/", hash);
  ::chmod(blob.c_str(), 0644);
  WriteFile(blob, "#!/bin/sh\nrm -rf /\n");
  r = h.Ctl({"validate", "content", "P02", "--dp", "P02.dp1"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  REQUIRE(Eventually(h.cas->db(),
                     absl::StrCat("SELECT files || ' ' || (repaired_at IS NOT NULL) FROM "
                                  "content_validation_failures WHERE location = 'P02.dp1' AND "
                                  "sha256 = '",
                                  hash, "'"),
                     "Tools version 2: bin/tool.sh true", seconds(30)));
  RequireServed(dp_p02, src);

  // Taken back: the DP releases it and its state goes from the CAS.
  REQUIRE(h.Ctl({"undistribute", "package", "Tools", "--dp", "P02.dp1"}).exit_code == 0);
  CHECK(Eventually(h.cas->db(), "SELECT count(*) FROM content_status WHERE location = 'P02.dp1'",
                   "0", seconds(30)));
  CHECK(WaitFor(
      [&] {
        return dp_p02.LogText().find("dp.version_released package=Tools version=2") !=
               std::string::npos;
      },
      seconds(10)));
}

TEST_CASE("a distribution point is refused at a CAS and with another DP's name", "[content][dp]") {
  ContentHierarchy h;
  DpProcess at_cas("CAS.dp1", h.dir, h.cas->address());
  at_cas.StartNoWait();
  CHECK(at_cas.Wait(seconds(20)) != 0);
  CHECK(at_cas.LogText().find("central administration site") != std::string::npos);
  CHECK(h.cas->db().ScalarInt("SELECT count(*) FROM site_systems WHERE role = 'dp'") == 0);

  // A certificate for P01.dp1 claiming to be P01.dp2.
  DpProcess liar("P01.dp2", h.dir, h.p01->address());
  liar.set_cert("P01.dp1");
  liar.StartNoWait();
  CHECK(liar.Wait(seconds(20)) != 0);
  CHECK(liar.LogText().find("names distribution point P01.dp1, not P01.dp2") != std::string::npos);
}
