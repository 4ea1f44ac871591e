#include "common/content/manifest.h"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "common/content/hash.h"
#include "tests/fixture/testing.h"

using namespace strata::content;
using strata::testing::TempDir;

namespace {

strata::v1::ContentFile File(const std::string& path,
                             const std::string& hash = std::string(64, 'a')) {
  strata::v1::ContentFile f;
  f.set_path(path);
  f.set_size(1);
  f.set_mode(0644);
  f.set_sha256(hash);
  return f;
}

void Write(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary) << data;
}

}  // namespace

TEST_CASE("a manifest path must stay inside its version's folder") {
  for (const char* bad :
       {"", "/etc/passwd", "../x", "a/../../x", "a/./b", "a//b", "a/", ".", "a/\x01"}) {
    INFO(bad);
    REQUIRE(CheckRelativePath(bad).code() == absl::StatusCode::kInvalidArgument);
  }
  REQUIRE(CheckRelativePath(std::string(4097, 'a')).code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(CheckRelativePath(std::string(256, 'a')).code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(CheckRelativePath("bin/tool..x/a b.txt").ok());
}

TEST_CASE("a manifest with a duplicate path, a file inside a file or a bad hash is refused") {
  strata::v1::ContentManifest m;
  *m.add_files() = File("a/b");
  *m.add_files() = File("c");
  REQUIRE(CheckManifest(m).ok());
  *m.add_files() = File("c");
  REQUIRE(CheckManifest(m).code() == absl::StatusCode::kInvalidArgument);
  m.mutable_files()->RemoveLast();
  *m.add_files() = File("a/b/c");
  REQUIRE(CheckManifest(m).message().find("lies inside the file \"a/b\"") != std::string::npos);
  m.mutable_files()->RemoveLast();
  *m.add_files() = File("d", "ABC");
  REQUIRE(CheckManifest(m).code() == absl::StatusCode::kInvalidArgument);
  m.mutable_files()->RemoveLast();
  auto big = File("e");
  big.set_size(-1);
  *m.add_files() = big;
  REQUIRE(CheckManifest(m).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("a chunk list must fit its file, and one blob has one list") {
  strata::v1::ContentManifest m;
  auto f = File("big");
  f.set_size((3 << 20) + 1);  // 4 chunks of 1 MiB
  f.set_chunk_bytes(1 << 20);
  f.set_chunk_sha256(std::string(64 * 4, 'a'));
  *m.add_files() = f;
  REQUIRE(CheckManifest(m).ok());
  m.mutable_files(0)->set_chunk_sha256(std::string(64 * 3, 'a'));
  CHECK(CheckManifest(m).message().find("holds 3 hashes for 4 chunks") != std::string::npos);
  m.mutable_files(0)->set_chunk_sha256(std::string(64 * 4, 'A'));
  CHECK(CheckManifest(m).code() == absl::StatusCode::kInvalidArgument);
  m.mutable_files(0)->set_chunk_sha256(std::string(64 * 4, 'a'));
  m.mutable_files(0)->set_chunk_bytes(4096);  // under 1 MiB
  CHECK(CheckManifest(m).code() == absl::StatusCode::kInvalidArgument);
  m.mutable_files(0)->set_chunk_bytes(1 << 20);
  auto copy = f;
  copy.set_path("copy");
  copy.set_chunk_sha256(std::string(64 * 4, 'b'));  // the same blob, another list
  *m.add_files() = copy;
  CHECK(CheckManifest(m).message().find("another size or chunk list") != std::string::npos);
}

TEST_CASE("a source folder is read with nested paths, empty files and inner symlinks") {
  TempDir dir;
  const std::string src = dir.path() + "/src";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  REQUIRE(::mkdir((src + "/bin").c_str(), 0755) == 0);
  REQUIRE(::mkdir((src + "/bin/deep").c_str(), 0755) == 0);
  Write(src + "/empty", "");
  Write(src + "/bin/deep/tool", "#!/bin/sh\necho hi\n");
  ::chmod((src + "/bin/deep/tool").c_str(), 0755);
  REQUIRE(::symlink("bin/deep/tool", (src + "/link").c_str()) == 0);
  auto files = ScanSource(src);
  REQUIRE(files.ok());
  REQUIRE(files->size() == 3);
  CHECK((*files)[0].file.path() == "bin/deep/tool");
  CHECK((*files)[0].file.mode() == 0755);
  CHECK((*files)[1].file.path() == "empty");
  CHECK((*files)[1].file.size() == 0);
  CHECK((*files)[1].file.sha256() == Sha256().HexDigest());
  CHECK((*files)[2].file.path() == "link");
  CHECK((*files)[2].file.sha256() == (*files)[0].file.sha256());
}

TEST_CASE("a source folder with a symlink out of it, or a fifo, is refused") {
  TempDir dir;
  const std::string src = dir.path() + "/src";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  Write(dir.path() + "/secret", "outside");
  Write(src + "/ok", "fine");
  REQUIRE(::symlink((dir.path() + "/secret").c_str(), (src + "/escape").c_str()) == 0);
  auto files = ScanSource(src);
  REQUIRE(files.status().code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(files.status().message().find("points out of the source") != std::string::npos);
  ::unlink((src + "/escape").c_str());
  REQUIRE(::mkfifo((src + "/pipe").c_str(), 0600) == 0);
  REQUIRE(ScanSource(src).status().message().find("not a regular file") != std::string::npos);
  ::unlink((src + "/pipe").c_str());
  REQUIRE(ScanSource(src).ok());
  REQUIRE(ScanSource(dir.path() + "/nothing").status().code() ==
          absl::StatusCode::kInvalidArgument);
}
