// Agents downloading content from distribution points: their site's or
// boundary group's DP, byte-identical, resuming after a DP dies, passing
// over a DP that is down or sends bad bytes.

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/content/hash.h"
#include "common/content/manifest.h"
#include "tests/fixture/client_fixture.h"
#include "tests/fixture/content_fixture.h"

using namespace strata;
using namespace strata::testing;
using std::chrono::seconds;

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
  std::map<std::string, std::unique_ptr<MpProcess>> mps = StartMps(h);
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
  REQUIRE(h.DpsOnline(4));

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
  // The big file's chunk list, made by the CAS's library from its bytes,
  // reached the secondary with the package.
  const std::string big = ReadWholeFile(src + "/big.bin");
  std::string chunks;
  for (size_t off = 0; off < big.size(); off += 16 << 20)
    chunks += content::Sha256::Of(absl::string_view(big).substr(off, 16 << 20));
  CHECK(h.s01->db().Scalar("SELECT chunk_bytes || ' ' || chunk_sha256 FROM package_files WHERE "
                           "package = 'Tools' AND path = 'big.bin'") ==
        absl::StrCat(16 << 20, " ", chunks));

  // Every address in boundary group "Here" (site P01), whose DPs are
  // P01.dp2 then P01.dp1.
  auto PreferDp2ThenDp1 = [&] {
    REQUIRE(h.Ctl({"create", "boundary-group", "Here", "--site", "P01"}).exit_code == 0);
    for (auto [name, value] : {std::pair{"v4-all", "0.0.0.0/0"}, {"v6-all", "::/0"}})
      REQUIRE(h.Ctl({"create", "boundary", name, "--value", value, "--group", "Here"}).exit_code ==
              0);
    CtlRun r = h.Ctl({"set", "boundary-group-dps", "Here", "--dp", "P01.dp2", "--dp", "P01.dp1"});
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
  };

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
    PreferDp2ThenDp1();
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
      "the next, keeping a large file's good chunks") {
    PreferDp2ThenDp1();
    auto on_dp2 = [&](const std::string& hash) {
      const std::string blob =
          absl::StrCat(dp2.library(), "/sha256/", hash.substr(0, 2), "/", hash);
      ::chmod(blob.c_str(), 0644);
      return blob;
    };
    auto download = [&](const std::string& dest, const std::string& expect) {
      Downloaded d;
      bool found = WaitFor(
          [&] {
            ::system(("rm -rf " + AgentStateDir(h.dir, "agent-p01") + "/cache").c_str());
            d = AgentDownload(h.dir, "agent-p01", mps["P01"]->address(), "Tools", dest);
            return d.exit_code == 0 && d.out.find(expect) != std::string::npos;
          },
          seconds(30));
      INFO(d.out);
      REQUIRE(found);
      CHECK(d.out.find("dp-P01.dp1.sock") != std::string::npos);
      RequireSameFiles(src, dest);
      return d;
    };
    // A bad byte in the big file's 2nd chunk (of 16 MiB and 8 MiB): its 1st
    // chunk is kept, only the 2nd comes again from the next DP.
    const std::string big_blob = on_dp2(content::Sha256::Of(big));
    std::string bad = big;
    bad[(20 << 20) + 7] ^= 1;
    WriteFile(big_blob, bad);
    Downloaded d = download(h.dir.path() + "/out-bad-chunk", "chunk 2 of 2 (bytes 16777216-");
    const int64_t sent = DownloadedBytes(d.out);
    CHECK(sent >= (32 << 20));        // 16 + 8 MiB from P01.dp2, 8 MiB again from P01.dp1
    CHECK(sent <= (32 << 20) + 100);  // (not 48 MiB: the whole file twice)
    // A small file (verified whole) with other bytes of the same size.
    WriteFile(big_blob, big);
    WriteFile(on_dp2(content::Sha256::Of("#!/bin/sh\necho tool\n")), "#!/bin/sh\necho evil\n");
    download(h.dir.path() + "/out-bad", "agent.dp_sent_bad_bytes");
    CHECK(ReadWholeFile(h.dir.path() + "/out-bad/bin/tool.sh") == "#!/bin/sh\necho tool\n");
  }
}
