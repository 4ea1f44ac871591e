#include "agent/live_query_engine.h"

#include <sys/stat.h>

#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/live_facts.h"
#include "common/base/files.h"
#include "common/base/log.h"
#include "common/collections/query.h"
#include "common/inventory/report_check.h"

namespace strata::agent {
namespace {

namespace fs = std::filesystem;

constexpr absl::Duration kKeepMarkers = absl::Hours(48);

}  // namespace

LiveQueryEngine::LiveQueryEngine(LiveQueryEngineOptions options) : options_(std::move(options)) {
  std::error_code ec;
  fs::create_directories(options_.state_dir + "/live", ec);
}

LiveQueryEngine::~LiveQueryEngine() { Stop(); }

std::string LiveQueryEngine::Marker(const std::string& id) const {
  return absl::StrCat(options_.state_dir, "/live/", id, ".done");
}

void LiveQueryEngine::SetQueries(std::vector<v1::LiveQueryPolicy> queries) {
  absl::MutexLock lock(&mu_);
  queries_ = std::move(queries);
  changed_ = true;
}

void LiveQueryEngine::Start() {
  stop_ = false;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = false;
  }
  thread_ = std::thread([this] { Loop(); });
}

void LiveQueryEngine::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void LiveQueryEngine::Loop() {
  absl::Time next_prune = absl::Now();
  while (true) {
    RunPass();
    if (absl::Now() >= next_prune) {
      Prune();
      next_prune = absl::Now() + absl::Hours(1);
    }
    absl::MutexLock lock(&mu_);
    auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || changed_; };
    mu_.AwaitWithTimeout(absl::Condition(&woken), absl::Seconds(60));
    if (stopping_) return;
    changed_ = false;
  }
}

void LiveQueryEngine::RunPass() {
  std::vector<v1::LiveQueryPolicy> queries;
  {
    absl::MutexLock lock(&mu_);
    queries = queries_;
  }
  for (const auto& q : queries) {
    if (stop_) return;
    struct stat st {};
    if (stat(Marker(q.name()).c_str(), &st) == 0) continue;  // answered
    // Learnt of too late: no answer (the site counts the device as not
    // answering; the admin's command has moved on).
    if (absl::ToUnixMillis(absl::Now()) >= q.expires_unix_ms()) continue;
    v1::ClientReport r;
    *r.mutable_live_query() = Answer(q);
    const auto& a = r.live_query();
    LogInfo("agent.live_query", {{"query", q.name()},
                                 {"state", v1::LiveQueryStateKind_Name(a.state())},
                                 {"rows", a.rows_size()},
                                 {"elapsed_ms", a.elapsed_ms()}});
    if (options_.report && !options_.report(std::move(r)).ok()) continue;  // tried again
    (void)WriteFileDurably(Marker(q.name()), "");
  }
}

v1::LiveQueryAnswer LiveQueryEngine::Answer(const v1::LiveQueryPolicy& q) const {
  const absl::Time start = absl::Now();
  v1::LiveQueryAnswer a;
  a.set_query(q.name());
  const std::vector<std::string> select(q.select().begin(), q.select().end());
  auto finish = [&](v1::LiveQueryStateKind state, const std::string& detail) {
    a.set_state(state);
    a.set_detail(inventory::CleanText(detail.substr(0, 2000)));
    a.set_elapsed_ms(absl::ToInt64Milliseconds(absl::Now() - start));
    return a;
  };
  auto spec = collections::CheckLiveQuery(q.query(), select);
  if (!spec.ok()) return finish(v1::LIVE_QUERY_STATE_FAILED, std::string(spec.status().message()));
  LiveContext ctx;
  ctx.collectors = options_.collectors;
  ctx.site = options_.site ? options_.site() : "";
  ctx.work_dir = absl::StrCat(options_.state_dir, "/live/work");
  ctx.deadline = start + absl::Milliseconds(q.time_limit_ms() > 0 ? q.time_limit_ms() : 10000);
  auto facts = LiveFacts(*spec, ctx);
  if (!facts.ok()) {
    const bool costly =
        absl::IsDeadlineExceeded(facts.status()) || absl::IsResourceExhausted(facts.status());
    return finish(costly ? v1::LIVE_QUERY_STATE_TOO_COSTLY : v1::LIVE_QUERY_STATE_FAILED,
                  costly ? absl::StrCat("stopped: ", facts.status().message())
                         : std::string(facts.status().message()));
  }
  bool truncated = false;
  auto rows = collections::SelectRows(q.query(), select, *facts,
                                      static_cast<size_t>(std::max(q.max_rows(), 1)), &truncated);
  if (!rows.ok()) return finish(v1::LIVE_QUERY_STATE_FAILED, std::string(rows.status().message()));
  const size_t max_bytes = q.max_bytes() > 0 ? static_cast<size_t>(q.max_bytes()) : 64 * 1024;
  size_t bytes = 0;
  for (auto& row : *rows) {
    size_t n = 0;
    for (const auto& v : row) n += v.size();
    if (bytes + n > max_bytes) {
      truncated = true;
      break;
    }
    bytes += n;
    auto* out = a.add_rows();
    for (auto& v : row) out->add_values(inventory::CleanText(v.substr(0, 4096)));
  }
  a.set_truncated(truncated);
  return finish(v1::LIVE_QUERY_STATE_ANSWERED, truncated ? "rows cut at the query's bound" : "");
}

void LiveQueryEngine::Prune() {
  std::set<std::string> current;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& q : queries_) current.insert(q.name() + ".done");
  }
  std::error_code ec;
  const auto cutoff =
      fs::file_time_type::clock::now() - std::chrono::hours(absl::ToInt64Hours(kKeepMarkers));
  for (const auto& e : fs::directory_iterator(options_.state_dir + "/live", ec)) {
    if (e.path().extension() != ".done" || current.count(e.path().filename().string())) continue;
    std::error_code tec;
    if (fs::last_write_time(e.path(), tec) < cutoff && !tec) fs::remove(e.path(), tec);
  }
}

}  // namespace strata::agent
