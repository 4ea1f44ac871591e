// Content across the hierarchy: packages made at the CAS from a folder
// reach every site's content library (stored once, only changes moving),
// bad input is refused with nothing written, and validation finds and
// repairs a corrupted blob.

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/content/download.h"
#include "common/content/hash.h"
#include "common/content/library.h"
#include "common/content/manifest.h"
#include "common/net/tls.h"
#include "strata/v1/admin/packages.grpc.pb.h"
#include "tests/fixture/admin_fixture.h"
#include "tests/fixture/client_fixture.h"
#include "tests/fixture/dp_fixture.h"
#include "tests/fixture/site_fixture.h"

using namespace strata;
using namespace strata::testing;
using std::chrono::seconds;

namespace {

void WriteFile(const std::string& path, const std::string& data) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << data;
}

std::string RandomBytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// CAS, P01, P02, S01 under P01, each with a content library; providers at
// the CAS (alice its administrator) and P01.
struct ContentHierarchy {
  TempDir dir;
  std::unique_ptr<SiteProcess> cas, p01, p02, s01;
  std::unique_ptr<ProviderProcess> pv_cas, pv_p01;

  // `s01_hours`: the hours S01 may take content from P01 ("": any).
  explicit ContentHierarchy(int validation_seconds = 0, const std::string& s01_hours = "") {
    SiteOptions o;
    o.content_validation_seconds = validation_seconds;
    cas = std::make_unique<SiteProcess>("CAS", v1::SITE_TYPE_CAS, dir, "", o);
    cas->Start();
    p01 = std::make_unique<SiteProcess>("P01", v1::SITE_TYPE_PRIMARY, dir, cas->address(), o);
    p01->Start();
    p02 = std::make_unique<SiteProcess>("P02", v1::SITE_TYPE_PRIMARY, dir, cas->address(), o);
    p02->Start();
    SiteOptions s01_options = o;
    s01_options.content_hours = s01_hours;
    s01 = std::make_unique<SiteProcess>("S01", v1::SITE_TYPE_SECONDARY, dir, p01->address(),
                                        s01_options);
    s01->Start();
    REQUIRE(WaitFor(
        [&] { return p01->LinkActive("CAS") && p02->LinkActive("CAS") && s01->LinkActive("P01"); },
        seconds(60)));
    pv_cas = std::make_unique<ProviderProcess>("CAS", dir, cas->db(), cas->address(), "alice");
    pv_cas->Start();
    pv_p01 = std::make_unique<ProviderProcess>("P01", dir, p01->db(), p01->address());
    pv_p01->Start();
    // alice (made at the CAS's provider) is known at P01 too.
    REQUIRE(Eventually(p01->db(), "SELECT count(*) FROM administrators WHERE name = 'alice'", "1",
                       seconds(30)));
  }

  std::vector<SiteProcess*> sites() { return {cas.get(), p01.get(), p02.get(), s01.get()}; }

  CtlRun Ctl(const std::vector<std::string>& args, const ProviderProcess* at = nullptr,
             const std::string& admin = "alice") {
    return Stratactl(dir, (at ? at : pv_cas.get())->address(), admin, args);
  }

  // Waits until every site reports `package` `version` installed (at the CAS).
  bool InstalledEverywhere(const std::string& package, int64_t version) {
    return Eventually(
        cas->db(),
        absl::StrCat("SELECT count(*) FROM content_status WHERE package = '", package,
                     "' AND version = ", version, " AND location = 'site' AND state = 'installed'"),
        "4", seconds(60));
  }
};

// Every file of `src` is in `site`'s library under its hash, byte for byte.
void RequireHeld(SiteProcess& site, const std::string& src) {
  auto files = content::ScanSource(src);
  REQUIRE(files.ok());
  for (const auto& f : *files) {
    const std::string blob = absl::StrCat(site.content_library(), "/sha256/",
                                          f.file.sha256().substr(0, 2), "/", f.file.sha256());
    INFO(site.code() << ": " << f.file.path());
    auto d = content::HashFile(blob);
    REQUIRE(d.ok());
    CHECK(d->sha256 == f.file.sha256());
    CHECK(d->size == f.file.size());
  }
}

int64_t BlobCount(SiteProcess& site) {
  int64_t n = 0;
  for (auto& e : std::filesystem::recursive_directory_iterator(site.content_library() + "/sha256"))
    n += e.is_regular_file() ? 1 : 0;
  return n;
}

// The bytes_fetched of the site's log line for `package` `version`.
int64_t BytesFetched(SiteProcess& site, const std::string& package, int64_t version) {
  const std::string log = site.LogText();
  const std::string key = absl::StrCat("content.version_installed package=", package,
                                       " version=", version, " bytes_fetched=");
  size_t at = log.rfind(key);
  if (at == std::string::npos) return -1;
  return std::stoll(log.substr(at + key.size()));
}

// The bytes of every file of `src`, downloaded from the DP over mutual TLS
// (as an agent would, with a certificate of the hierarchy), verified.
void RequireServed(const DpProcess& dp, const std::string& src) {
  auto files = content::ScanSource(src);
  REQUIRE(files.ok());
  TempDir d;
  auto lib = content::Library::Open(d.path() + "/lib");
  REQUIRE(lib.ok());
  v1::TlsConfig tls;
  tls.set_ca_file(TestPki() + "/ca.pem");
  tls.set_cert_file(TestPki() + "/admin-alice.pem");
  tls.set_key_file(TestPki() + "/admin-alice.key");
  auto source = content::HttpsBlobSource(dp.address(), tls, dp.name());
  REQUIRE(source.ok());
  for (const auto& f : *files) {
    INFO(dp.name() << ": " << f.file.path());
    auto w = (*lib)->OpenBlob(f.file.sha256(), f.file.size(), 0);
    if (absl::IsAlreadyExists(w.status())) continue;
    REQUIRE(w.ok());
    if (f.file.size() > 0)
      REQUIRE((*source)
                  ->Fetch({f.file.sha256(), f.file.size()}, **w, [](int64_t) { return true; })
                  .ok());
    REQUIRE((*w)->Finish().ok());  // the hash of what arrived is the file's
  }
}

// The DP's log's bytes_fetched for `package` `version`.
int64_t DpBytesFetched(const DpProcess& dp, const std::string& package, int64_t version) {
  const std::string log = dp.LogText();
  const std::string key = absl::StrCat("dp.version_installed package=", package,
                                       " version=", version, " bytes_fetched=");
  size_t at = log.rfind(key);
  return at == std::string::npos ? -1 : std::stoll(log.substr(at + key.size()));
}

bool DpState(SiteProcess& cas, const std::string& dp, const std::string& package, int64_t version,
             const std::string& state) {
  return Eventually(cas.db(),
                    absl::StrCat("SELECT state FROM content_status WHERE location = '", dp,
                                 "' AND package = '", package, "' AND version = ", version),
                    state, seconds(60));
}

}  // namespace

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
    "a site whose link's hours are not now waits, queued, and takes the content in its "
    "hours",
    "[content]") {
  // Twelve hours from now, local time: certainly not now.
  time_t t = ::time(nullptr);
  struct tm local;
  ::localtime_r(&t, &local);
  const std::string later = std::to_string((local.tm_hour + 12) % 24);
  ContentHierarchy h(0, later);
  const std::string src = h.dir.path() + "/src";
  WriteFile(src + "/file", RandomBytes(100000, 9));
  REQUIRE(h.Ctl({"create", "package", "Night", "--source", src}).exit_code == 0);
  REQUIRE(Eventually(h.cas->db(),
                     "SELECT count(*) FROM content_status WHERE package = 'Night' AND state = "
                     "'installed'",
                     "3", seconds(60)));
  REQUIRE(Eventually(h.cas->db(),
                     "SELECT state || ' ' || (error LIKE '%outside the hours%') FROM "
                     "content_status WHERE package = 'Night' AND site_code = 'S01'",
                     "queued true", seconds(30)));
  CHECK(BlobCount(*h.s01) == 0);
  // Its hours come (here: the link's schedule changed to any hour).
  h.s01->Stop();
  std::string conf = ReadWholeFile(h.s01->config_path());
  conf.replace(conf.find("hours: \"" + later + "\""), 9 + later.size(), "hours: \"\"");
  std::ofstream(h.s01->config_path()) << conf;
  h.s01->Start();
  CHECK(Eventually(h.cas->db(),
                   "SELECT state FROM content_status WHERE package = 'Night' AND site_code = "
                   "'S01'",
                   "installed", seconds(60)));
  RequireHeld(*h.s01, src);
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
  REQUIRE(Eventually(h.cas->db(),
                     "SELECT count(*) FROM site_systems WHERE role = 'dp' AND state = 'online'",
                     "3", seconds(30)));

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

namespace {

// Files of `dest` are those of `src`: paths, sizes, modes and bytes.
void RequireSameFiles(const std::string& src, const std::string& dest) {
  auto a = content::ScanSource(src);
  auto b = content::ScanSource(dest);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  REQUIRE(a->size() == b->size());
  for (size_t i = 0; i < a->size(); ++i) {
    INFO((*a)[i].file.path());
    CHECK((*a)[i].file.path() == (*b)[i].file.path());
    CHECK((*a)[i].file.sha256() == (*b)[i].file.sha256());
    CHECK((*a)[i].file.mode() == (*b)[i].file.mode());
  }
}

struct Downloaded {
  int exit_code;
  std::string out;  // stdout and stderr
};

// strata-agent download PACKAGE --dest DEST as agent `name` of `mp`.
Downloaded AgentDownload(const TempDir& dir, const std::string& name, const std::string& mp,
                         const std::string& package, const std::string& dest,
                         std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = AgentArgv(dir, name, mp, extra);
  for (const std::string& a : {std::string("download"), package, std::string("--dest"), dest})
    argv.push_back(a);
  const std::string log = absl::StrCat(dir.path(), "/download-", name, ".log");
  ::unlink(log.c_str());
  ChildProcess p;
  p.Start(argv, log);
  int code = p.Wait(seconds(120));
  return {code, ReadWholeFile(log)};
}

// The bytes the download line says came over the network.
int64_t DownloadedBytes(const std::string& out) {
  size_t at = out.find(" bytes, ");
  if (at == std::string::npos) return -1;
  return std::stoll(out.substr(at + 8));
}

}  // namespace

TEST_CASE(
    "agents download from their boundary group's or site's DP, resume after a DP dies, "
    "and fall back from a DP that is down or sends bad bytes",
    "[content][agent]") {
  ContentHierarchy h;
  AddEnrollmentToken(h.cas->db(), kToken);
  REQUIRE(Eventually(h.s01->db(), "SELECT count(*) FROM enrollment_tokens", "1"));
  std::map<std::string, std::unique_ptr<MpProcess>> mps;
  for (auto [name, site] :
       {std::pair{"P01.mp1", h.p01.get()}, {"P02.mp1", h.p02.get()}, {"S01.mp1", h.s01.get()}}) {
    mps[site->code()] = std::make_unique<MpProcess>(name, h.dir, site->address());
    mps[site->code()]->Start();
  }
  DpProcess dp1("P01.dp1", h.dir, h.p01->address());
  DpProcess dp2("P01.dp2", h.dir, h.p01->address());
  DpProcess dp_p02("P02.dp1", h.dir, h.p02->address());
  DpProcess dp_s01("S01.dp1", h.dir, h.s01->address());
  for (DpProcess* dp : {&dp1, &dp2, &dp_p02, &dp_s01}) dp->Start();
  const std::map<std::string, std::string> agents = {
      {"P01", "agent-p01"}, {"P02", "agent-p02"}, {"S01", "agent-s01"}};
  for (const auto& [site, name] : agents) {
    AgentRun r = RunAgentOnce(h.dir, name, mps[site]->address(),
                              {std::string("--token=") + kToken, "--hardware_id=hw-" + name});
    INFO(r.log);
    REQUIRE(r.exit_code == 0);
  }
  REQUIRE(Eventually(h.cas->db(),
                     "SELECT count(*) FROM site_systems WHERE role = 'dp' AND state = 'online'",
                     "4", seconds(30)));

  const std::string src = h.dir.path() + "/tools";
  WriteFile(src + "/bin/tool.sh", "#!/bin/sh\necho tool\n");
  WriteFile(src + "/share/doc/a/readme", "read me\n");
  WriteFile(src + "/empty", "");
  WriteFile(src + "/big.bin", RandomBytes(24 << 20, 5));
  ::chmod((src + "/bin/tool.sh").c_str(), 0755);
  REQUIRE(h.Ctl({"create", "package", "Tools", "--source", src}).exit_code == 0);
  REQUIRE(h.Ctl({"distribute", "package", "Tools", "--dp", "P01.dp1", "--dp", "P01.dp2", "--dp",
                 "P02.dp1", "--dp", "S01.dp1"})
              .exit_code == 0);
  for (const char* dp : {"P01.dp1", "P01.dp2", "P02.dp1", "S01.dp1"})
    REQUIRE(DpState(*h.cas, dp, "Tools", 1, "installed"));

  SECTION("each agent downloads from its site's DP, byte-identical") {
    for (const auto& [site, name] : agents) {
      INFO(site);
      const std::string dest = h.dir.path() + "/out-" + name;
      Downloaded d = AgentDownload(h.dir, name, mps[site]->address(), "Tools", dest);
      INFO(d.out);
      REQUIRE(d.exit_code == 0);
      CHECK(d.out.find("from unix:" + h.dir.path() + "/dp-" + site + ".dp1.sock") !=
            std::string::npos);
      RequireSameFiles(src, dest);
      // Again: all from the cache.
      d = AgentDownload(h.dir, name, mps[site]->address(), "Tools", dest + "-again");
      REQUIRE(d.exit_code == 0);
      CHECK(d.out.find("0 downloaded (all in the cache)") != std::string::npos);
      RequireSameFiles(src, dest + "-again");
    }
  }

  SECTION("a boundary group's DPs come first, in its order; a DP down is passed over") {
    REQUIRE(h.Ctl({"create", "boundary-group", "Here", "--site", "P01"}).exit_code == 0);
    REQUIRE(h.Ctl({"create", "boundary", "v4-all", "--value", "0.0.0.0/0", "--group", "Here"})
                .exit_code == 0);
    REQUIRE(
        h.Ctl({"create", "boundary", "v6-all", "--value", "::/0", "--group", "Here"}).exit_code ==
        0);
    CtlRun r = h.Ctl({"set", "boundary-group-dps", "Here", "--dp", "P01.dp2", "--dp", "P01.dp1"});
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    // The MP's bundle follows within seconds.
    Downloaded d;
    REQUIRE(WaitFor(
        [&] {
          ::system(("rm -rf " + AgentStateDir(h.dir, "agent-p01") + "/cache").c_str());
          d = AgentDownload(h.dir, "agent-p01", mps["P01"]->address(), "Tools",
                            h.dir.path() + "/out-bg");
          return d.exit_code == 0 && d.out.find("dp-P01.dp2.sock") != std::string::npos;
        },
        seconds(30)));
    RequireSameFiles(src, h.dir.path() + "/out-bg");
    // The first of the group down: the next one serves.
    dp2.Kill9();
    ::system(("rm -rf " + AgentStateDir(h.dir, "agent-p01") + "/cache").c_str());
    d = AgentDownload(h.dir, "agent-p01", mps["P01"]->address(), "Tools", h.dir.path() + "/out-fb");
    INFO(d.out);
    REQUIRE(d.exit_code == 0);
    CHECK(d.out.find("agent.dp_failed dp=unix:" + h.dir.path() + "/dp-P01.dp2.sock") !=
          std::string::npos);
    CHECK(d.out.find("from unix:" + h.dir.path() + "/dp-P01.dp1.sock") != std::string::npos);
    RequireSameFiles(src, h.dir.path() + "/out-fb");
  }

  SECTION("a DP killed mid-download: the agent resumes where it stopped") {
    const std::string cache = AgentStateDir(h.dir, "agent-p02") + "/cache/library/parts";
    std::vector<std::string> argv =
        AgentArgv(h.dir, "agent-p02", mps["P02"]->address(),
                  {"--download_max_bytes_per_second=4000000", "download", "Tools", "--dest",
                   h.dir.path() + "/out-resume"});
    ChildProcess slow;
    slow.Start(argv, h.dir.path() + "/slow.log");
    const std::string part = cache + "/" + content::Sha256::Of(ReadWholeFile(src + "/big.bin"));
    REQUIRE(WaitFor(
        [&] {
          return std::filesystem::exists(part) && std::filesystem::file_size(part) > (6 << 20);
        },
        seconds(30)));
    dp_p02.Kill9();
    CHECK(slow.Wait(seconds(60)) != 0);  // no other DP: it fails, keeping what it has
    const int64_t kept = static_cast<int64_t>(std::filesystem::file_size(part));
    REQUIRE(kept > (6 << 20));
    dp_p02.Start();
    Downloaded d = AgentDownload(h.dir, "agent-p02", mps["P02"]->address(), "Tools",
                                 h.dir.path() + "/out-resume");
    INFO(d.out);
    REQUIRE(d.exit_code == 0);
    const int64_t sent = DownloadedBytes(d.out);
    CHECK(sent > 0);
    CHECK(sent <= (24 << 20) - kept + 100);  // the rest of the big file, and the small ones
    RequireSameFiles(src, h.dir.path() + "/out-resume");
  }

  SECTION(
      "a DP with a corrupted blob: the agent refuses its bytes and takes good ones from "
      "the next") {
    REQUIRE(h.Ctl({"create", "boundary-group", "Here", "--site", "P01"}).exit_code == 0);
    REQUIRE(h.Ctl({"create", "boundary", "v4-all", "--value", "0.0.0.0/0", "--group", "Here"})
                .exit_code == 0);
    REQUIRE(
        h.Ctl({"create", "boundary", "v6-all", "--value", "::/0", "--group", "Here"}).exit_code ==
        0);
    REQUIRE(h.Ctl({"set", "boundary-group-dps", "Here", "--dp", "P01.dp2", "--dp", "P01.dp1"})
                .exit_code == 0);
    const std::string hash = content::Sha256::Of("#!/bin/sh\necho tool\n");
    const std::string blob = absl::StrCat(dp2.library(), "/sha256/", hash.substr(0, 2), "/", hash);
    ::chmod(blob.c_str(), 0644);
    WriteFile(blob, "#!/bin/sh\necho evil\n");  // same size, other bytes
    Downloaded d;
    bool found = WaitFor(
        [&] {
          ::system(("rm -rf " + AgentStateDir(h.dir, "agent-p01") + "/cache").c_str());
          d = AgentDownload(h.dir, "agent-p01", mps["P01"]->address(), "Tools",
                            h.dir.path() + "/out-bad");
          return d.exit_code == 0 && d.out.find("agent.dp_sent_bad_bytes") != std::string::npos;
        },
        seconds(30));
    INFO(d.out);
    REQUIRE(found);
    CHECK(d.out.find("dp-P01.dp1.sock") != std::string::npos);
    RequireSameFiles(src, h.dir.path() + "/out-bad");
    CHECK(ReadWholeFile(h.dir.path() + "/out-bad/bin/tool.sh") == "#!/bin/sh\necho tool\n");
  }
}
