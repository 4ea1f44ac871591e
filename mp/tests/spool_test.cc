#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>

#include "catch2/catch.hpp"
#include "mp/spool.h"

namespace strata::mp {
namespace {

struct Dir {
  std::string path;
  Dir() {
    char tmpl[] = "/tmp/st-spool-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~Dir() { std::filesystem::remove_all(path); }
};

int64_t AppendSync(Spool& spool, std::vector<std::string> records) {
  std::promise<int64_t> done;
  spool.Append(std::move(records),
               [&](absl::Status s, int64_t last) { done.set_value(s.ok() ? last : -1); });
  return done.get_future().get();
}

std::vector<std::string> Data(const std::vector<SpoolRecord>& records) {
  std::vector<std::string> out;
  for (const auto& r : records) out.push_back(r.data);
  return out;
}

TEST_CASE("spool: appended records are read back in order and survive a reopen") {
  Dir dir;
  {
    auto spool = Spool::Open(dir.path, {});
    REQUIRE(spool.ok());
    CHECK(AppendSync(**spool, {"a", "b"}) == 2);
    CHECK(AppendSync(**spool, {"c"}) == 3);
    auto read = (*spool)->Read(1, 10, 1 << 20, 0);
    REQUIRE(read.ok());
    CHECK(Data(*read) == std::vector<std::string>{"b", "c"});
    REQUIRE((*spool)->Acknowledge(1).ok());
  }
  auto spool = Spool::Open(dir.path, {});
  REQUIRE(spool.ok());
  CHECK((*spool)->acknowledged() == 1);
  CHECK((*spool)->last_seq() == 3);
  auto read = (*spool)->Read((*spool)->acknowledged(), 10, 1 << 20, 0);
  REQUIRE(read.ok());
  CHECK(Data(*read) == std::vector<std::string>{"b", "c"});
  CHECK(AppendSync(**spool, {"d"}) == 4);
}

TEST_CASE("spool: a torn tail is cut at the last whole record") {
  Dir dir;
  std::string segment;
  {
    auto spool = Spool::Open(dir.path, {});
    REQUIRE(spool.ok());
    AppendSync(**spool, {"one", "two"});
  }
  for (const auto& e : std::filesystem::directory_iterator(dir.path)) {
    if (e.path().extension() == ".log" && std::filesystem::file_size(e.path()) > 0) {
      segment = e.path();
    }
  }
  REQUIRE(!segment.empty());
  {
    std::ofstream out(segment, std::ios::app | std::ios::binary);
    out << "\x05\x00\x00\x00garbage";  // half a record, as a crash leaves it
  }
  auto spool = Spool::Open(dir.path, {});
  REQUIRE(spool.ok());
  CHECK((*spool)->last_seq() == 2);
  CHECK(AppendSync(**spool, {"three"}) == 3);
  auto read = (*spool)->Read(0, 10, 1 << 20, 0);
  REQUIRE(read.ok());
  CHECK(Data(*read) == std::vector<std::string>{"one", "two", "three"});
}

TEST_CASE("spool: acknowledged segments are deleted, the rest kept across segments") {
  Dir dir;
  Spool::Options options;
  options.segment_bytes = 64;
  auto spool = Spool::Open(dir.path, options);
  REQUIRE(spool.ok());
  for (int i = 0; i < 20; ++i) AppendSync(**spool, {std::string(40, 'a' + i)});
  auto count_segments = [&] {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir.path)) {
      n += e.path().extension() == ".log";
    }
    return n;
  };
  int before = count_segments();
  CHECK(before > 5);
  // Read everything across segment boundaries, in pieces.
  std::vector<std::string> all;
  int64_t after = 0;
  while (true) {
    auto read = (*spool)->Read(after, 3, 1 << 20, 0);
    REQUIRE(read.ok());
    if (read->empty()) break;
    for (auto& r : *read) all.push_back(r.data);
    after = read->back().seq;
  }
  REQUIRE(all.size() == 20);
  CHECK(all[19] == std::string(40, 'a' + 19));
  REQUIRE((*spool)->Acknowledge(15).ok());
  CHECK(count_segments() < before);
  auto rest = (*spool)->Read(15, 100, 1 << 20, 0);
  REQUIRE(rest.ok());
  CHECK(rest->size() == 5);
}

TEST_CASE("spool: concurrent appends share syncs and lose nothing") {
  Dir dir;
  auto spool = Spool::Open(dir.path, {});
  REQUIRE(spool.ok());
  std::vector<std::future<int64_t>> results;
  for (int t = 0; t < 8; ++t) {
    results.push_back(std::async(std::launch::async, [&, t] {
      int64_t last = 0;
      for (int i = 0; i < 50; ++i) last = AppendSync(**spool, {std::to_string(t * 1000 + i)});
      return last;
    }));
  }
  for (auto& r : results) CHECK(r.get() > 0);
  auto read = (*spool)->Read(0, 1000, 1 << 20, 0);
  REQUIRE(read.ok());
  CHECK(read->size() == 400);
  for (size_t i = 0; i < read->size(); ++i) CHECK((*read)[i].seq == static_cast<int64_t>(i + 1));
}

}  // namespace
}  // namespace strata::mp
