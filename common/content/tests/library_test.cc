#include "common/content/library.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <random>

#include "common/content/hash.h"
#include "tests/fixture/testing.h"

using namespace strata::content;
using strata::testing::TempDir;

namespace {

// A version of `package` holding the given files (path -> bytes), whose
// blobs are put into `lib` first.
strata::v1::ContentManifest Version(Library& lib, const std::string& package, int64_t version,
                                    const std::vector<std::pair<std::string, std::string>>& files) {
  strata::v1::ContentManifest m;
  m.set_package(package);
  m.set_version(version);
  for (const auto& [path, data] : files) {
    auto* f = m.add_files();
    f->set_path(path);
    f->set_size(static_cast<int64_t>(data.size()));
    f->set_mode(0644);
    f->set_sha256(Sha256::Of(data));
    REQUIRE(lib.PutBlob(f->sha256(), data).ok());
  }
  return m;
}

std::unique_ptr<Library> OpenLib(const std::string& root) {
  auto lib = Library::Open(root);
  REQUIRE(lib.ok());
  return std::move(*lib);
}

}  // namespace

TEST_CASE("a blob appears under its hash only once whole and verified") {
  TempDir dir;
  auto lib = OpenLib(dir.path() + "/lib");
  const std::string data(300000, 'x');
  const std::string hash = Sha256::Of(data);
  auto w = lib->OpenBlob(hash, static_cast<int64_t>(data.size()), 0);
  REQUIRE(w.ok());
  REQUIRE((*w)->Append(absl::string_view(data).substr(0, 1000)).ok());
  CHECK_FALSE(lib->HasBlob(hash));
  REQUIRE((*w)->Append(absl::string_view(data).substr(1000)).ok());
  CHECK_FALSE(lib->HasBlob(hash));
  REQUIRE((*w)->Finish().ok());
  REQUIRE(lib->HasBlob(hash));
  auto digest = HashFile(lib->BlobPath(hash));
  REQUIRE(digest.ok());
  CHECK(digest->sha256 == hash);
  CHECK(lib->OpenBlob(hash, 1, 0).status().code() == absl::StatusCode::kAlreadyExists);
}

TEST_CASE("bytes that are not the blob named are refused and never shown") {
  TempDir dir;
  auto lib = OpenLib(dir.path() + "/lib");
  const std::string hash = Sha256::Of("good bytes");
  auto w = lib->OpenBlob(hash, 9, 0);
  REQUIRE(w.ok());
  REQUIRE((*w)->Append("bad bytes").ok());
  CHECK((*w)->Finish().code() == absl::StatusCode::kDataLoss);
  CHECK_FALSE(lib->HasBlob(hash));
  CHECK(lib->PartialBytes(hash) == 0);
  w->reset();
  auto w2 = lib->OpenBlob(hash, 3, 0);
  REQUIRE(w2.ok());
  CHECK((*w2)->Append("four").code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("an interrupted blob resumes after the bytes already received") {
  TempDir dir;
  auto lib = OpenLib(dir.path() + "/lib");
  std::string data(1 << 20, '\0');
  std::mt19937 rng(7);
  for (char& c : data) c = static_cast<char>(rng());
  const std::string hash = Sha256::Of(data);
  {
    auto w = lib->OpenBlob(hash, static_cast<int64_t>(data.size()), 0);
    REQUIRE(w.ok());
    REQUIRE((*w)->Append(absl::string_view(data).substr(0, 400000)).ok());
  }  // dropped: the part stays
  lib = OpenLib(dir.path() + "/lib");
  REQUIRE(lib->PartialBytes(hash) == 400000);
  auto wrong = lib->OpenBlob(hash, static_cast<int64_t>(data.size()), 5);
  REQUIRE(wrong.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK(wrong.status().message().find("resume at byte 400000") != std::string::npos);
  auto w = lib->OpenBlob(hash, static_cast<int64_t>(data.size()), 400000);
  REQUIRE(w.ok());
  CHECK(lib->OpenBlob(hash, static_cast<int64_t>(data.size()), 400000).status().code() ==
        absl::StatusCode::kUnavailable);
  REQUIRE((*w)->Append(absl::string_view(data).substr(400000)).ok());
  REQUIRE((*w)->Finish().ok());
  REQUIRE(lib->HasBlob(hash));
}

namespace {

// `n` random bytes and their blob with a chunk list of 1 MiB chunks.
BlobRef ChunkedBlob(size_t n, std::string* data) {
  data->resize(n);
  std::mt19937 rng(11);
  for (char& c : *data) c = static_cast<char>(rng());
  BlobRef b{Sha256::Of(*data), static_cast<int64_t>(n), kMinChunkBytes, ""};
  for (size_t off = 0; off < n; off += kMinChunkBytes)
    b.chunk_sha256 += Sha256::Of(absl::string_view(*data).substr(off, kMinChunkBytes));
  return b;
}

}  // namespace

TEST_CASE("with a chunk list, a bad chunk costs that chunk only: the good ones are kept") {
  TempDir dir;
  for (auto durability : {Library::Durability::kSynced, Library::Durability::kVerifyOnUse}) {
    auto opened = Library::Open(
        dir.path() + (durability == Library::Durability::kSynced ? "/a" : "/b"), durability);
    REQUIRE(opened.ok());
    Library& lib = **opened;
    std::string data;
    // 5.5 MiB (6 chunks, the last one short), hashed on the caller's thread;
    // 10 MiB and a bit, on the writer's worker thread (from 8 MiB).
    for (size_t size : {(11u << 19), (10u << 20) + 12345}) {
      const BlobRef b = ChunkedBlob(size, &data);
      std::string bad = data;
      bad[(3u << 20) + 100] ^= 1;  // in the 4th chunk
      auto w = lib.OpenBlob(b, 0);
      REQUIRE(w.ok());
      absl::Status s;
      for (size_t off = 0; off < size && s.ok(); off += 300000)
        s = (*w)->Append(absl::string_view(bad).substr(off, 300000));
      if (s.ok()) s = (*w)->Finish();
      REQUIRE(s.code() == absl::StatusCode::kDataLoss);
      CHECK(s.message().find("chunk 4 of") != std::string::npos);
      // Chunks 1-3 verified and kept; the writer and the part are back there.
      CHECK((*w)->offset() == (3 << 20));
      CHECK((*w)->verified() == (3 << 20));
      CHECK(lib.PartialBytes(b.sha256) == (3 << 20));
      CHECK_FALSE(lib.HasBlob(b.sha256));
      // The rest from a good source completes the blob (a worker thread may
      // report the bad chunk only at Finish, which closes the writer: reopen).
      w->reset();
      w = lib.OpenBlob(b, lib.PartialBytes(b.sha256));
      REQUIRE(w.ok());
      REQUIRE((*w)->offset() == (3 << 20));
      REQUIRE((*w)->Append(absl::string_view(data).substr(3 << 20)).ok());
      REQUIRE((*w)->Finish().ok());
      REQUIRE(lib.HasBlob(b.sha256));
      auto digest = HashFile(lib.BlobPath(b.sha256));
      REQUIRE(digest.ok());
      CHECK(digest->sha256 == b.sha256);
      // The library lists the same chunks, computed from the bytes it holds.
      auto list = lib.ChunkList(b.sha256);
      REQUIRE(list.ok());
      CHECK(list->chunk_bytes == ChunkBytes(static_cast<int64_t>(size)));
    }
  }
}

TEST_CASE("a resumed part is checked chunk by chunk and cut at the first damaged one") {
  TempDir dir;
  auto lib = OpenLib(dir.path() + "/lib");
  std::string data;
  const BlobRef b = ChunkedBlob(5u << 20, &data);
  {
    auto w = lib->OpenBlob(b, 0);
    REQUIRE(w.ok());
    REQUIRE((*w)->Append(absl::string_view(data).substr(0, (3u << 20) + 5000)).ok());
  }  // dropped: 3 whole chunks and a piece of the 4th stay
  REQUIRE(lib->PartialBytes(b.sha256) == (3 << 20) + 5000);
  {
    // The disk damages the 2nd chunk of the part (no fsync before a crash).
    std::fstream part(dir.path() + "/lib/parts/" + b.sha256,
                      std::ios::in | std::ios::out | std::ios::binary);
    part.seekp((1 << 20) + 77);
    part.put(static_cast<char>(data[(1 << 20) + 77] ^ 0x40));
  }
  auto w = lib->OpenBlob(b, lib->PartialBytes(b.sha256));
  REQUIRE(w.ok());
  CHECK((*w)->offset() == (1 << 20));  // only the 1st chunk survived
  CHECK(lib->PartialBytes(b.sha256) == (1 << 20));
  REQUIRE((*w)->Append(absl::string_view(data).substr(1 << 20)).ok());
  REQUIRE((*w)->Finish().ok());
  auto digest = HashFile(lib->BlobPath(b.sha256));
  REQUIRE(digest.ok());
  CHECK(digest->sha256 == b.sha256);
}

TEST_CASE("a chunk list that does not fit its blob is refused") {
  TempDir dir;
  auto lib = OpenLib(dir.path() + "/lib");
  std::string data;
  BlobRef b = ChunkedBlob(3u << 20, &data);
  b.chunk_sha256.resize(64 * 2);  // 2 hashes for 3 chunks
  CHECK(lib->OpenBlob(b, 0).status().code() == absl::StatusCode::kInvalidArgument);
  b = ChunkedBlob(3u << 20, &data);
  b.chunk_bytes = 12345;  // not whole blocks
  CHECK(lib->OpenBlob(b, 0).status().code() == absl::StatusCode::kInvalidArgument);
  // A blob that turned bad on disk gives no chunk list (validation's job).
  b = ChunkedBlob(3u << 20, &data);
  REQUIRE(lib->PutBlob(b.sha256, data).ok());
  ::chmod(lib->BlobPath(b.sha256).c_str(), 0644);
  {
    std::fstream f(lib->BlobPath(b.sha256), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(10);
    f.put(static_cast<char>(data[10] ^ 1));
  }
  CHECK(lib->ChunkList(b.sha256).status().code() == absl::StatusCode::kDataLoss);
  CHECK(lib->ChunkList(Sha256::Of("absent")).status().code() == absl::StatusCode::kNotFound);
}

TEST_CASE("chunk sizes: 16 MiB, doubled to keep at most 1,024 chunks; none for one chunk") {
  CHECK(ChunkBytes(16 << 20) == 0);
  CHECK(ChunkBytes((16 << 20) + 1) == (16 << 20));
  CHECK(ChunkBytes(int64_t{16} << 30) == (16 << 20));
  CHECK(ChunkBytes((int64_t{16} << 30) + 1) == (32 << 20));
  CHECK(ChunkCount(kMaxFileBytes, ChunkBytes(kMaxFileBytes)) == 1024);
}

TEST_CASE("blobs are stored once, counted by the versions using them, and collected when unused") {
  TempDir dir;
  auto lib = OpenLib(dir.path() + "/lib");
  auto v1 = Version(*lib, "Tools", 1, {{"a", "shared"}, {"b", "only in one"}, {"c", "shared"}});
  auto v2 = Version(*lib, "Other", 1, {{"x/a", "shared"}, {"y", "only in two"}});
  REQUIRE(lib->AddVersion(v1).ok());
  REQUIRE(lib->AddVersion(v2).ok());
  CHECK(lib->usage().blobs == 3);
  CHECK(lib->References(Sha256::Of("shared")) == 2);  // per version, not per file
  REQUIRE(lib->RemoveVersion("Tools", 1).ok());
  auto collected = lib->Collect(absl::ZeroDuration());
  REQUIRE(collected.ok());
  CHECK(collected->blobs == 1);
  CHECK(lib->HasBlob(Sha256::Of("shared")));
  CHECK_FALSE(lib->HasBlob(Sha256::Of("only in one")));
  // Reopened, the library knows what it holds.
  lib = OpenLib(dir.path() + "/lib");
  CHECK(lib->HoldsVersion("Other", 1));
  CHECK_FALSE(lib->HoldsVersion("Tools", 1));
  CHECK(lib->References(Sha256::Of("shared")) == 1);
  REQUIRE(lib->RemoveVersion("Other", 1).ok());
  CHECK(lib->RemoveVersion("Other", 1).code() == absl::StatusCode::kNotFound);
  // Unreferenced but recent (an upload in flight) stays within the grace.
  REQUIRE(lib->Collect(absl::Hours(1))->blobs == 0);
  REQUIRE(lib->Collect(absl::ZeroDuration())->blobs == 2);
  CHECK(lib->usage().blobs == 0);
}

TEST_CASE("a version is held only when all its blobs are present") {
  TempDir dir;
  auto lib = OpenLib(dir.path() + "/lib");
  auto v = Version(*lib, "P", 3, {{"a", "one"}});
  auto* f = v.add_files();
  f->set_path("b");
  f->set_size(3);
  f->set_sha256(Sha256::Of("two"));
  REQUIRE(lib->Missing(v).size() == 1);
  auto s = lib->AddVersion(v);
  REQUIRE(s.code() == absl::StatusCode::kFailedPrecondition);
  CHECK(s.message().find("1 of its blobs (3 bytes)") != std::string::npos);
  CHECK_FALSE(lib->HoldsVersion("P", 3));
}

TEST_CASE("a version held again with other files replaces its manifest and its references") {
  TempDir dir;
  auto lib = OpenLib(dir.path() + "/lib");
  auto first = Version(*lib, "P", 1, {{"a", "old bytes"}});
  REQUIRE(lib->AddVersion(first).ok());
  auto again = Version(*lib, "P", 1, {{"a", "new bytes"}});  // deleted and made again
  CHECK(lib->HoldsVersion("P", 1));
  CHECK_FALSE(lib->HoldsExactly(again));
  REQUIRE(lib->AddVersion(again).ok());
  CHECK(lib->HoldsExactly(again));
  CHECK(lib->References(Sha256::Of("old bytes")) == 0);
  CHECK(lib->References(Sha256::Of("new bytes")) == 1);
}

TEST_CASE("validation finds a corrupted blob, names its files, and takes it out of the library") {
  TempDir dir;
  auto lib = OpenLib(dir.path() + "/lib");
  auto v = Version(*lib, "Tools", 2, {{"bin/tool", "the real tool"}, {"readme", "hello"}});
  REQUIRE(lib->AddVersion(v).ok());
  REQUIRE(lib->Validate()->empty());
  const std::string hash = Sha256::Of("the real tool");
  const std::string path = lib->BlobPath(hash);
  ::chmod(path.c_str(), 0644);
  std::ofstream(path, std::ios::binary) << "the evil tool";
  auto bad = lib->Validate();
  REQUIRE(bad.ok());
  REQUIRE(bad->size() == 1);
  CHECK((*bad)[0].sha256 == hash);
  CHECK((*bad)[0].actual == Sha256::Of("the evil tool"));
  REQUIRE((*bad)[0].files.size() == 1);
  CHECK((*bad)[0].files[0] == "Tools version 2: bin/tool");
  CHECK_FALSE(lib->HasBlob(hash));
  REQUIRE(lib->Missing(v).size() == 1);
  // Repair: the good bytes again.
  REQUIRE(lib->PutBlob(hash, "the real tool").ok());
  CHECK(lib->Validate()->empty());
}

TEST_CASE("a library killed at any point shows no corrupt blob") {
  TempDir dir;
  const std::string root = dir.path() + "/lib";
  for (int round = 0; round < 5; ++round) {
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      auto lib = Library::Open(root);
      if (!lib.ok()) ::_exit(2);
      std::mt19937 rng(static_cast<unsigned>(round * 7919 + ::getpid()));
      for (int i = 0;; ++i) {
        std::string data(1000 + rng() % 200000, '\0');
        for (char& c : data) c = static_cast<char>(rng());
        Sha256 h;
        h.Update(data);
        const std::string hash = h.HexDigest();
        auto w = (*lib)->OpenBlob(hash, static_cast<int64_t>(data.size()), 0);
        if (!w.ok()) continue;
        for (size_t off = 0; off < data.size(); off += 4096)
          (void)(*w)->Append(absl::string_view(data).substr(off, 4096));
        (void)(*w)->Finish();
        strata::v1::ContentManifest m;
        m.set_package("P");
        m.set_version(i);
        auto* f = m.add_files();
        f->set_path("f");
        f->set_size(static_cast<int64_t>(data.size()));
        f->set_sha256(hash);
        (void)(*lib)->AddVersion(m);
      }
    }
    ::usleep(150000 + round * 50000);
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    REQUIRE(WIFSIGNALED(status));
    auto lib = OpenLib(root);
    auto usage = lib->usage();
    INFO("round " << round << " blobs " << usage.blobs);
    REQUIRE(usage.blobs > 0);
    // Every visible blob is its name; every version held has its blob.
    auto bad = lib->Validate();
    REQUIRE(bad.ok());
    CHECK(bad->empty());
    for (const auto& m : lib->Versions()) CHECK(lib->Missing(m).empty());
  }
}
