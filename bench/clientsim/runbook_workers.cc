#include "bench/clientsim/runbook_workers.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/str_format.h"
#include "common/base/hlc.h"

namespace strata::sim {
namespace {

using Clock = std::chrono::steady_clock;

struct Wake {
  std::mutex mu;
  std::condition_variable cv;
  bool woken = false;
};

}  // namespace

std::string RunWorkers(const std::vector<SimClient*>& clients, NudgeFleet* fleet, int seconds,
                       int slots) {
  std::vector<std::unique_ptr<Wake>> wakes;
  for (size_t i = 0; i < clients.size(); ++i) wakes.push_back(std::make_unique<Wake>());
  if (fleet != nullptr) {
    fleet->set_on_work_waiting([&wakes](size_t i) {
      if (i >= wakes.size()) return;
      std::lock_guard<std::mutex> lock(wakes[i]->mu);
      wakes[i]->woken = true;
      wakes[i]->cv.notify_one();
    });
  }
  std::atomic<int64_t> started{0}, completed{0}, exchanges{0}, failed{0};
  std::atomic<int64_t> last_job_ms{0};
  const auto t0 = Clock::now();
  const int64_t quiet_ms = int64_t{seconds} * 1000;
  std::atomic<bool> done{false};
  std::vector<std::thread> threads;
  for (size_t i = 0; i < clients.size(); ++i) {
    threads.emplace_back([&, i] {
      SimClient& c = *clients[i];
      std::map<std::string, v1::RunbookJobOrder> held;  // job -> order, "run" at once
      std::map<std::string, int64_t> started_ms;
      while (!done.load()) {
        v1::RunbookWorkRequest req;
        req.set_free_slots(std::max(0, slots - static_cast<int>(held.size())));
        for (const auto& [job, order] : held) {
          v1::RunbookJobProgress* p = req.add_jobs();
          p->set_job(job);
          p->set_attempt(order.attempt());
          p->set_state(v1::RUNBOOK_JOB_STATE_COMPLETED);
          p->set_started_unix_ms(started_ms[job]);
          p->set_finished_unix_ms(WallClockMs());
          v1::RunbookOutputChunk* out = p->add_output();
          out->set_stream("output");
          out->set_offset(0);
          out->set_text("hello from a runbook\n");
        }
        v1::RunbookWorkResponse resp;
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
        grpc::Status s = c.stub().RunbookWork(&ctx, req, &resp);
        ++exchanges;
        if (!s.ok()) {
          ++failed;
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
          continue;
        }
        for (const auto& job : resp.accepted()) {
          if (held.erase(job) > 0) ++completed;
          started_ms.erase(job);
        }
        for (const auto& o : resp.start()) {
          if (held.count(o.job())) continue;  // sent again: started once
          held[o.job()] = o;
          started_ms[o.job()] = WallClockMs();
          ++started;
          last_job_ms = WallClockMs();
        }
        if (!held.empty()) continue;  // report them at once
        // Idle: a nudge, or a look every second.
        Wake& w = *wakes[i];
        std::unique_lock<std::mutex> lock(w.mu);
        w.cv.wait_for(lock, std::chrono::seconds(1), [&] { return w.woken || done.load(); });
        w.woken = false;
      }
    });
  }
  // Until `seconds` pass without a job after the first, or in all without any.
  while (true) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const int64_t last = last_job_ms.load();
    const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    if (last == 0 ? elapsed > seconds : WallClockMs() - last > quiet_ms) break;
  }
  done = true;
  for (auto& w : wakes) {
    std::lock_guard<std::mutex> lock(w->mu);
    w->cv.notify_one();
  }
  for (auto& t : threads) t.join();
  if (fleet != nullptr) fleet->set_on_work_waiting(nullptr);
  return absl::StrFormat("runbooks started=%d completed=%d exchanges=%d failed=%d seconds=%.2f",
                         started.load(), completed.load(), exchanges.load(), failed.load(),
                         std::chrono::duration<double>(Clock::now() - t0).count());
}

}  // namespace strata::sim
