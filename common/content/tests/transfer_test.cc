#include "common/content/transfer.h"

#include <catch2/catch.hpp>
#include <map>

#include "common/content/hash.h"
#include "tests/fixture/testing.h"

using namespace strata::content;
using strata::testing::TempDir;

namespace {

// An in-memory source that can fail after a number of bytes, or lie.
class FakeSource final : public BlobSource {
 public:
  std::map<std::string, std::string> blobs;
  int64_t fail_after = -1;  // bytes served in all before it drops
  int64_t served = 0;
  bool corrupt = false;
  int64_t corrupt_at = -1;  // a byte sent wrong
  int64_t piece_bytes = 1000;

  absl::Status Fetch(const BlobRef& blob, BlobWriter& writer,
                     const std::function<bool(int64_t)>& chunk) override {
    auto it = blobs.find(blob.sha256);
    if (it == blobs.end()) return absl::NotFoundError("no such blob");
    std::string data = it->second;
    if (corrupt) data[0] ^= 1;
    if (corrupt_at >= 0 && corrupt_at < static_cast<int64_t>(data.size())) data[corrupt_at] ^= 1;
    for (int64_t off = writer.offset(); off < static_cast<int64_t>(data.size());
         off += piece_bytes) {
      if (fail_after >= 0 && served >= fail_after) return absl::UnavailableError("link dropped");
      std::string piece = data.substr(off, piece_bytes);
      if (auto s = writer.Append(piece); !s.ok()) return s;
      served += static_cast<int64_t>(piece.size());
      if (!chunk(static_cast<int64_t>(piece.size()))) return absl::CancelledError("stopped");
    }
    return absl::OkStatus();
  }
  std::string name() const override { return "fake"; }
};

strata::v1::ContentManifest Manifest(
    FakeSource& src, const std::vector<std::pair<std::string, std::string>>& files) {
  strata::v1::ContentManifest m;
  m.set_package("P");
  m.set_version(1);
  for (const auto& [path, data] : files) {
    auto* f = m.add_files();
    f->set_path(path);
    f->set_size(static_cast<int64_t>(data.size()));
    f->set_sha256(Sha256::Of(data));
    src.blobs[f->sha256()] = data;
  }
  return m;
}

}  // namespace

TEST_CASE("transfer hours parse ranges, single hours and ranges over midnight") {
  auto h = TransferHours::Parse("22-2, 12");
  REQUIRE(h.ok());
  auto at = [](int hour) {
    absl::TimeZone local = absl::LocalTimeZone();
    return absl::FromCivil(absl::CivilHour(2026, 1, 1, hour), local);
  };
  CHECK(h->Allows(at(23)));
  CHECK(h->Allows(at(1)));
  CHECK(h->Allows(at(12)));
  CHECK_FALSE(h->Allows(at(3)));
  CHECK(TransferHours::Parse("")->Allows(at(3)));
  for (const char* bad : {"24", "a-3", "1-", "-1", "1-2-3x"}) {
    INFO(bad);
    CHECK(TransferHours::Parse(bad).status().code() == absl::StatusCode::kInvalidArgument);
  }
}

TEST_CASE("a version brought over a link that drops resumes where it stopped") {
  TempDir dir;
  auto lib = Library::Open(dir.path() + "/lib");
  REQUIRE(lib.ok());
  FakeSource src;
  auto m =
      Manifest(src, {{"a", std::string(5000, 'a')}, {"b", std::string(3000, 'b')}, {"empty", ""}});
  RateLimiter unlimited(0);
  TransferHours any;
  src.fail_after = 6000;
  Progress last;
  auto s =
      BringVersion(m, **lib, src, unlimited, any, nullptr, [&](const Progress& p) { last = p; });
  REQUIRE(s.code() == absl::StatusCode::kUnavailable);
  CHECK(last.bytes_done == 6000);
  CHECK(last.bytes_total == 8000);
  src.fail_after = -1;
  src.served = 0;
  REQUIRE(BringVersion(m, **lib, src, unlimited, any, nullptr, [&](const Progress& p) {
            last = p;
          }).ok());
  CHECK(src.served == 2000);  // only what was missing
  CHECK(last.bytes_done == 8000);
  CHECK((*lib)->HoldsVersion("P", 1));
}

TEST_CASE("bytes that do not match their blob are thrown away and the version is not held") {
  TempDir dir;
  auto lib = Library::Open(dir.path() + "/lib");
  REQUIRE(lib.ok());
  FakeSource src;
  auto m = Manifest(src, {{"a", "some content"}});
  src.corrupt = true;
  RateLimiter unlimited(0);
  auto s = BringVersion(m, **lib, src, unlimited, TransferHours(), nullptr, [](const Progress&) {});
  REQUIRE(s.code() == absl::StatusCode::kDataLoss);
  CHECK_FALSE((*lib)->HoldsVersion("P", 1));
  CHECK((*lib)->usage().blobs == 0);
}

TEST_CASE("a rate limit holds a transfer to its bytes per second") {
  RateLimiter limiter(100000);
  absl::Time start = absl::Now();
  for (int i = 0; i < 10; ++i) REQUIRE(limiter.Take(30000, nullptr));
  // 300 KB at 100 KB/s, less the one-second burst: at least ~2 s.
  CHECK(absl::Now() - start >= absl::Milliseconds(1900));
  absl::Notification stop;
  stop.Notify();
  CHECK_FALSE(limiter.Take(1000000, &stop));
}

TEST_CASE("with chunk lists, a source's bad byte costs one chunk: the next attempt resumes there") {
  TempDir dir;
  auto lib = Library::Open(dir.path() + "/lib");
  REQUIRE(lib.ok());
  FakeSource src;
  src.piece_bytes = 64 << 10;
  std::string data(6 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 2654435761u >> 13);
  auto m = Manifest(src, {{"big", data}});
  auto* f = m.mutable_files(0);
  f->set_chunk_bytes(kMinChunkBytes);
  for (size_t off = 0; off < data.size(); off += kMinChunkBytes)
    f->mutable_chunk_sha256()->append(
        Sha256::Of(absl::string_view(data).substr(off, kMinChunkBytes)));
  REQUIRE(CheckManifest(m).ok());
  src.corrupt_at = (4 << 20) + 3;  // in the 5th chunk
  RateLimiter unlimited(0);
  Progress last;
  auto s = BringVersion(m, **lib, src, unlimited, TransferHours(), nullptr,
                        [&](const Progress& p) { last = p; });
  REQUIRE(s.code() == absl::StatusCode::kDataLoss);
  CHECK(src.served == (5 << 20) - (64 << 10));  // stopped within the bad chunk
  CHECK((*lib)->PartialBytes(f->sha256()) == (4 << 20));
  CHECK(last.bytes_done == (4 << 20));
  // The source mended: only the 5th and 6th chunks travel again.
  src.corrupt_at = -1;
  src.served = 0;
  REQUIRE(BringVersion(m, **lib, src, unlimited, TransferHours(), nullptr, [](const Progress&) {
          }).ok());
  CHECK(src.served == (2 << 20));
  CHECK((*lib)->HoldsVersion("P", 1));
}
