#include "agent/content_cache.h"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "agent/download.h"
#include "common/content/hash.h"

using namespace strata;
using namespace strata::agent;

namespace {

struct Dir {
  std::string path;
  Dir() {
    char t[] = "/tmp/st-cache-XXXXXX";
    path = ::mkdtemp(t);
  }
  ~Dir() { std::filesystem::remove_all(path); }
};

// A version of `package` whose one file holds `bytes` bytes of `fill`,
// put into the cache and held.
v1::ContentManifest Hold(ContentCache& cache, const std::string& package, size_t bytes, char fill) {
  const std::string data(bytes, fill);
  v1::ContentManifest m;
  m.set_package(package);
  m.set_version(1);
  auto* f = m.add_files();
  f->set_path("f");
  f->set_size(static_cast<int64_t>(bytes));
  f->set_mode(0644);
  f->set_sha256(content::Sha256::Of(data));
  REQUIRE(cache.MakeRoom(m).ok());
  REQUIRE(cache.library().PutBlob(f->sha256(), data).ok());
  REQUIRE(cache.library().AddVersion(m).ok());
  REQUIRE(cache.Touch({package, 1}).ok());
  return m;
}

}  // namespace

TEST_CASE("the content cache evicts the least recently used version, never a pinned one") {
  Dir dir;
  auto cache = ContentCache::Open(dir.path + "/cache", 100000);
  REQUIRE(cache.ok());
  ContentCache& c = **cache;
  Hold(c, "A", 40000, 'a');
  ::usleep(2000);
  Hold(c, "B", 40000, 'b');
  ::usleep(2000);
  REQUIRE(c.Touch({"A", 1}).ok());  // A now used after B
  Hold(c, "C", 40000, 'c');         // evicts B, the least recently used
  CHECK(c.library().HoldsVersion("A", 1));
  CHECK_FALSE(c.library().HoldsVersion("B", 1));
  CHECK(c.library().HoldsVersion("C", 1));
  CHECK(c.used_bytes() <= 100000);
  // Pinned content stays, even when it leaves no room.
  c.Pin({"A", 1});
  c.Pin({"C", 1});
  v1::ContentManifest big;
  big.set_package("D");
  big.set_version(1);
  auto* f = big.add_files();
  f->set_path("f");
  f->set_size(60000);
  f->set_sha256(content::Sha256::Of(std::string(60000, 'd')));
  CHECK(c.MakeRoom(big).code() == absl::StatusCode::kFailedPrecondition);
  CHECK(c.library().HoldsVersion("A", 1));
  CHECK(c.library().HoldsVersion("C", 1));
  // More than the whole cache is refused at once.
  f->set_size(200000);
  CHECK(c.MakeRoom(big).message().find("more than the whole cache") != std::string::npos);
}

TEST_CASE("files copied out of the cache are checked again, and a bad cached blob is dropped") {
  Dir dir;
  auto cache = ContentCache::Open(dir.path + "/cache", 0);
  REQUIRE(cache.ok());
  auto m = Hold(**cache, "P", 1000, 'p');
  REQUIRE(CopyOut((*cache)->library(), m, dir.path + "/out").ok());
  CHECK(std::filesystem::file_size(dir.path + "/out/f") == 1000);
  const std::string blob = (*cache)->library().BlobPath(m.files(0).sha256());
  ::chmod(blob.c_str(), 0644);
  { std::ofstream(blob, std::ios::binary) << std::string(1000, 'q'); }
  CHECK(CopyOut((*cache)->library(), m, dir.path + "/out2").code() == absl::StatusCode::kDataLoss);
  CHECK_FALSE(std::filesystem::exists(dir.path + "/out2/f"));
  CHECK_FALSE((*cache)->library().HasBlob(m.files(0).sha256()));
}
