// The agent's outbound queue: durable, numbered, trimmed without losing
// inventory, batched for sending.

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "agent/outbound_queue.h"

namespace strata::agent {
namespace {

struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/strata-queue-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string path;
};

v1::ClientReport Heartbeat() {
  v1::ClientReport r;
  r.mutable_heartbeat()->set_hostname("h");
  return r;
}

v1::ClientReport InventoryReport() {
  v1::ClientReport r;
  r.mutable_inventory()->set_full(true);
  return r;
}

}  // namespace

TEST_CASE("reports are numbered in order, and numbers survive a restart") {
  TempDir dir;
  {
    OutboundQueue q(dir.path, 100);
    REQUIRE(q.Open().ok());
    CHECK(q.next_seq() == 1);
    REQUIRE(q.Enqueue(Heartbeat()).ok());
    REQUIRE(q.Enqueue(Heartbeat()).ok());
  }
  OutboundQueue q(dir.path, 100);
  REQUIRE(q.Open().ok());
  CHECK(q.next_seq() == 3);
  OutboundQueue::Batch b = q.Next(10, 1 << 20);
  REQUIRE(b.request.reports_size() == 2);
  CHECK(b.request.reports(0).seq() == 1);
  CHECK(b.request.reports(1).seq() == 2);
  CHECK(b.request.reports(0).created_unix_ms() > 0);
  // Sent and acknowledged: gone; numbers are never reused.
  q.Remove(b.files);
  CHECK(q.size() == 0);
  REQUIRE(q.Enqueue(Heartbeat()).ok());
  CHECK(q.Next(10, 1 << 20).request.reports(0).seq() == 3);
}

TEST_CASE("a full queue drops its oldest heartbeats, never an inventory") {
  TempDir dir;
  OutboundQueue q(dir.path, 3);
  REQUIRE(q.Open().ok());
  REQUIRE(q.Enqueue(InventoryReport()).ok());  // 1
  REQUIRE(q.Enqueue(Heartbeat()).ok());        // 2
  REQUIRE(q.Enqueue(Heartbeat()).ok());        // 3
  REQUIRE(q.Enqueue(InventoryReport()).ok());  // 4: heartbeat 2 goes
  REQUIRE(q.Enqueue(InventoryReport()).ok());  // 5: heartbeat 3 goes
  REQUIRE(q.Enqueue(InventoryReport()).ok());  // 6: nothing left to drop but inventory
  OutboundQueue::Batch b = q.Next(100, 1 << 20);
  std::vector<int64_t> seqs;
  for (const auto& r : b.request.reports()) seqs.push_back(r.seq());
  CHECK(seqs == std::vector<int64_t>{1, 4, 5, 6});
}

TEST_CASE("batches stop at the count or the size, with at least one report") {
  TempDir dir;
  OutboundQueue q(dir.path, 100);
  REQUIRE(q.Open().ok());
  for (int i = 0; i < 5; ++i) REQUIRE(q.Enqueue(Heartbeat()).ok());
  CHECK(q.Next(2, 1 << 20).request.reports_size() == 2);
  CHECK(q.Next(100, 1).request.reports_size() == 1);  // larger than the limit: one alone
  // An unreadable file is dropped, the rest still goes.
  std::FILE* f = std::fopen((dir.path + "/queue/00000000000000000009.pb").c_str(), "w");
  std::fputs("\xff\xff\xff", f);
  std::fclose(f);
  CHECK(q.Next(100, 1 << 20).request.reports_size() == 5);
  CHECK(q.size() == 5);
}

}  // namespace strata::agent
