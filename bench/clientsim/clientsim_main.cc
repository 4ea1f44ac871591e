// strata-clientsim: N simulated agents against one management point, driven
// by commands on stdin (one per line, one result line each on stdout), so
// that a benchmark script can interleave them with its own measurements.
// See bench/clientsim/README.md.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "bench/clientsim/nudge_fleet.h"
#include "bench/clientsim/runbook_workers.h"
#include "bench/clientsim/sim_client.h"
#include "common/base/hlc.h"
#include "common/base/status.h"
#include "common/base/usage.h"
#include "common/net/tls.h"

ABSL_FLAG(std::string, mp, "", "Management point address, host:port or unix:/path");
ABSL_FLAG(std::string, ca, "", "PEM file of the hierarchy root CA");
ABSL_FLAG(std::string, token, "", "Enrollment token the clients register with");
ABSL_FLAG(int, clients, 100, "Number of simulated clients");
ABSL_FLAG(int, first, 0, "Index of the first client (several simulators: disjoint ranges)");
ABSL_FLAG(int, concurrency, 128, "Calls in flight at once");
ABSL_FLAG(int, packages_min, 150, "Fewest packages a client has");
ABSL_FLAG(int, packages_max, 450, "Most packages a client has");
ABSL_FLAG(int, universe, 5000, "Distinct packages in the simulated fleet");
ABSL_FLAG(std::string, deltas_out, "",
          "Append client_id,inventory_seq,sent_unix_ms of every delta sent here (CSV)");

namespace strata::sim {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// Runs start(i, done) for i in [0, n) with at most `concurrency` started and
// not yet done; returns how many reported success.
int RunAll(int n, int concurrency,
           const std::function<void(int, std::function<void(bool)>)>& start) {
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0, finished = 0, succeeded = 0;
  for (int i = 0; i < n; ++i) {
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return in_flight < concurrency; });
      ++in_flight;
    }
    start(i, [&](bool ok) {
      std::lock_guard<std::mutex> lock(mu);
      --in_flight;
      ++finished;
      if (ok) ++succeeded;
      cv.notify_all();
    });
  }
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return finished == n; });
  return succeeded;
}

class Simulator {
 public:
  Simulator()
      : address_(absl::GetFlag(FLAGS_mp)),
        token_(absl::GetFlag(FLAGS_token)),
        n_(absl::GetFlag(FLAGS_clients)),
        first_(absl::GetFlag(FLAGS_first)),
        concurrency_(std::max(1, absl::GetFlag(FLAGS_concurrency))),
        universe_(absl::GetFlag(FLAGS_universe), 42),
        rng_(static_cast<uint64_t>(first_) * 7919 + 1) {}

  ~Simulator() { Stop(); }

  absl::Status Init() {
    ASSIGN_OR_RETURN(ca_pem_, ReadFile(absl::GetFlag(FLAGS_ca)));
    if (!absl::GetFlag(FLAGS_deltas_out).empty()) {
      deltas_out_.open(absl::GetFlag(FLAGS_deltas_out), std::ios::app);
      if (!deltas_out_) return absl::InvalidArgumentError("--deltas_out cannot be written");
    }
    return absl::OkStatus();
  }

  void Stop() { fleet_.reset(); }

  // Returns the result line of one command.
  std::string Run(const std::string& line) {
    std::vector<std::string> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (words.empty()) return "";
    const std::string& cmd = words[0];
    int arg = 0;
    if (words.size() > 1 && !absl::SimpleAtoi(words[1], &arg)) {
      return absl::StrCat("error ", cmd, ": not a number: ", words[1]);
    }
    if (cmd == "register") return Register();
    if (clients_.empty() && cmd != "help") {
      return absl::StrCat("error ", cmd, ": run register first");
    }
    if (cmd == "channels") return Channels(arg > 0 ? arg : 60);
    if (cmd == "close_channels") return CloseChannels();
    if (cmd == "full")
      return Reports("full", [&](SimClient& c, std::mt19937_64& rng) {
        return c.NextFull(universe_, rng, PackageCount(rng));
      });
    if (cmd == "delta")
      return Reports("delta", [&](SimClient& c, std::mt19937_64& rng) {
        return c.NextDelta(universe_, rng, arg > 0 ? arg : 4);
      });
    if (cmd == "heartbeat") {
      return Reports("heartbeat", [](SimClient& c, std::mt19937_64&) { return c.NextHeartbeat(); });
    }
    if (cmd == "policy") return Policy(arg > 0 ? arg : 10);
    if (cmd == "await_policy") {
      const std::string how = words.size() > 2 ? words[2] : "channel";
      if (how != "channel" && how != "grpc") {
        return "error await_policy: the third word is \"channel\" or \"grpc\"";
      }
      return AwaitPolicy(arg > 0 ? arg : 30, how == "grpc");
    }
    if (cmd == "install") {
      if (words.size() < 3) return "error install: install TIMEOUT_S DEPLOYMENT [channel|grpc]";
      const std::string how = words.size() > 3 ? words[3] : "channel";
      if (how != "channel" && how != "grpc")
        return "error install: the fourth word is \"channel\" or \"grpc\"";
      return Install(arg > 0 ? arg : 60, words[2], how == "grpc");
    }
    if (cmd == "answer") {
      int bytes = 0;
      if (words.size() < 4 || (words[2] != "script" && words[2] != "query") ||
          !absl::SimpleAtoi(words[3], &bytes))
        return "error answer: answer TIMEOUT_S script|query BYTES [channel|grpc]";
      const std::string how = words.size() > 4 ? words[4] : "channel";
      if (how != "channel" && how != "grpc")
        return "error answer: the fifth word is \"channel\" or \"grpc\"";
      return Answer(arg > 0 ? arg : 60, words[2], std::clamp(bytes, 1, 60000), how == "grpc");
    }
    if (cmd == "concurrency") {
      if (arg < 1) return "error concurrency: concurrency N (at least 1)";
      concurrency_ = arg;
      return absl::StrCat("concurrency n=", concurrency_);
    }
    if (cmd == "status") return Status();
    if (cmd == "runbooks") {
      int slots = 30;
      if (words.size() > 2 && !absl::SimpleAtoi(words[2], &slots)) slots = 0;
      if (arg < 1 || slots < 1) return "error runbooks: runbooks QUIET_S SLOTS";
      std::vector<SimClient*> all;
      for (auto& c : clients_) all.push_back(c.get());
      return RunWorkers(all, fleet_.get(), arg, slots);
    }
    return absl::StrCat(
        "error ", cmd,
        ": unknown command (register, channels [timeout_s], close_channels, full, "
        "delta [changes], heartbeat, policy [seconds], await_policy [timeout_s] [channel|grpc], "
        "install timeout_s deployment [channel|grpc], answer timeout_s script|query bytes "
        "[channel|grpc], runbooks quiet_s slots, concurrency n, status, quit)");
  }

 private:
  int PackageCount(std::mt19937_64& rng) const {
    int lo = absl::GetFlag(FLAGS_packages_min), hi = absl::GetFlag(FLAGS_packages_max);
    return lo + static_cast<int>(rng() % static_cast<uint64_t>(std::max(1, hi - lo + 1)));
  }

  std::string Register() {
    if (!clients_.empty()) return "error register: already registered";
    auto anon = v1::ManagementPoint::NewStub(MakeChannel(address_, ChannelPem{ca_pem_, "", ""}));
    clients_.resize(n_);
    std::mutex mu;
    std::string first_error;
    auto t0 = Clock::now();
    // As an agent does, a registration that found the MP unavailable is tried
    // again (up to 5 rounds, 1 s apart); other refusals are final.
    std::vector<int> pending(n_);
    for (int i = 0; i < n_; ++i) pending[i] = i;
    std::vector<char> retry(n_, 0);
    int ok = 0, retried = 0;
    for (int round = 0; round < 5 && !pending.empty(); ++round) {
      if (round > 0) std::this_thread::sleep_for(std::chrono::seconds(1));
      std::fill(retry.begin(), retry.end(), 0);
      ok += RunAll(
          static_cast<int>(pending.size()), concurrency_,
          [&](int k, std::function<void(bool)> done) {
            const int i = pending[k];
            std::string name = absl::StrFormat("sim-%06d", first_ + i);
            auto enrollment = MakeEnrollment(token_, "hw-" + name, name);
            if (!enrollment.ok()) {
              std::lock_guard<std::mutex> lock(mu);
              if (first_error.empty()) first_error = enrollment.status().ToString();
              done(false);
              return;
            }
            struct Call {
              grpc::ClientContext ctx;
              Enrollment enrollment;
              v1::RegisterResponse response;
            };
            auto* call = new Call{{}, std::move(*enrollment), {}};
            call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
            anon->async()->Register(
                &call->ctx, &call->enrollment.request, &call->response,
                [&, i, call, done](grpc::Status s) {
                  bool good = s.ok() && call->response.state() == v1::REGISTRATION_STATE_APPROVED;
                  if (good) {
                    clients_[i] = std::make_unique<SimClient>(address_, ca_pem_, call->enrollment,
                                                              call->response);
                  } else {
                    std::lock_guard<std::mutex> lock(mu);
                    if (s.error_code() == grpc::StatusCode::UNAVAILABLE) retry[i] = 1;
                    if (first_error.empty()) {
                      first_error = s.ok() ? "pending approval" : s.error_message();
                    }
                  }
                  delete call;
                  done(good);
                });
          });
      std::vector<int> again;
      for (int i : pending) {
        if (retry[i]) again.push_back(i);
      }
      retried += static_cast<int>(again.size());
      pending.swap(again);
    }
    double secs = Seconds(t0);
    clients_.erase(std::remove(clients_.begin(), clients_.end(), nullptr), clients_.end());
    std::string out = absl::StrFormat("register ok=%d failed=%d retried=%d seconds=%.2f rps=%.0f",
                                      ok, n_ - ok, retried, secs, ok / std::max(secs, 1e-9));
    if (!first_error.empty()) absl::StrAppend(&out, " first_error=\"", first_error, "\"");
    return out;
  }

  // Opens every client's nudge channel (the address from service location)
  // and waits (up to timeout_s) until each has been welcomed.
  std::string Channels(int timeout_s) {
    auto t0 = Clock::now();
    if (!fleet_) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      v1::ServiceLocation loc;
      grpc::Status s = clients_[0]->stub().Locate(&ctx, v1::LocateRequest(), &loc);
      if (!s.ok()) return absl::StrCat("error channels: locate: ", s.error_message());
      if (loc.nudge_address().empty()) return "error channels: the MP names no nudge address";
      std::vector<SimClient*> members;
      for (auto& c : clients_) members.push_back(c.get());
      fleet_ = std::make_unique<NudgeFleet>(loc.nudge_address(), members, concurrency_);
    }
    fleet_->OpenAll();
    auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
    while (Clock::now() < deadline && fleet_->held() < static_cast<int>(clients_.size())) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return absl::StrFormat("channels held=%d of=%zu seconds=%.2f resumed=%d", fleet_->held(),
                           clients_.size(), Seconds(t0), fleet_->resumed());
  }

  std::string CloseChannels() {
    if (fleet_) fleet_->CloseAll();
    return "close_channels held=0";
  }

  // One report from every client (`make` builds it), `concurrency_` at once.
  std::string Reports(const std::string& kind,
                      const std::function<v1::ClientReport(SimClient&, std::mt19937_64&)>& make) {
    std::atomic<int64_t> rows{0}, bytes{0};
    std::mutex mu;
    std::string first_error;
    auto t0 = Clock::now();
    int64_t start_ms = WallClockMs();
    int n = static_cast<int>(clients_.size());
    int ok = RunAll(n, concurrency_, [&](int i, std::function<void(bool)> done) {
      struct Call {
        grpc::ClientContext ctx;
        v1::ReportRequest request;
        v1::ReportResponse response;
      };
      auto* call = new Call;
      SimClient& c = *clients_[i];
      const v1::ClientReport& r = *call->request.add_reports() = make(c, rng_);
      rows += InventoryRows(r);
      bytes += static_cast<int64_t>(r.ByteSizeLong());
      int64_t sent_ms = WallClockMs();
      bool is_delta = r.has_inventory() && !r.inventory().full();
      int64_t inv_seq = r.inventory().inventory_seq();
      call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
      c.stub().async()->Report(
          &call->ctx, &call->request, &call->response,
          [&, call, done, sent_ms, is_delta, inv_seq, id = c.id()](grpc::Status s) {
            delete call;
            {
              std::lock_guard<std::mutex> lock(mu);
              if (!s.ok() && first_error.empty()) first_error = s.error_message();
              if (s.ok() && is_delta && deltas_out_.is_open()) {
                deltas_out_ << id << "," << inv_seq << "," << sent_ms << "\n";
              }
            }
            // Last: once every call is done, Reports() returns and `mu` is gone.
            done(s.ok());
          });
    });
    double secs = Seconds(t0);
    if (deltas_out_.is_open()) deltas_out_.flush();
    std::string out = absl::StrFormat(
        "%s acked=%d failed=%d rows=%d mb=%.1f seconds=%.2f rps=%.0f start_ms=%d end_ms=%d", kind,
        ok, n - ok, rows.load(), bytes.load() / 1048576.0, secs, ok / std::max(secs, 1e-9),
        start_ms, WallClockMs());
    if (!first_error.empty()) absl::StrAppend(&out, " first_error=\"", first_error, "\"");
    return out;
  }

  // Not-modified policy checks, round robin over the clients, for `seconds`.
  std::string Policy(int seconds) {
    if (version_.empty()) {
      auto p = clients_[0]->Policy("");
      if (!p.ok()) return absl::StrCat("error policy: ", p.status().ToString());
      version_ = p->version();
    }
    std::atomic<int64_t> not_modified{0}, changed{0}, failed{0};
    auto t0 = Clock::now();
    auto until = t0 + std::chrono::seconds(seconds);
    std::mutex mu;
    std::condition_variable cv;
    int in_flight = 0;
    std::string version = version_;
    for (size_t i = 0; Clock::now() < until; i = (i + 1) % clients_.size()) {
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return in_flight < concurrency_; });
        ++in_flight;
      }
      struct Call {
        grpc::ClientContext ctx;
        v1::PolicyRequest request;
        v1::PolicyResponse response;
      };
      auto* call = new Call;
      call->request.set_current_version(version);
      call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      clients_[i]->stub().async()->GetPolicy(&call->ctx, &call->request, &call->response,
                                             [&, call](grpc::Status s) {
                                               if (!s.ok()) {
                                                 ++failed;
                                               } else if (call->response.not_modified()) {
                                                 ++not_modified;
                                               } else {
                                                 ++changed;
                                               }
                                               delete call;
                                               std::lock_guard<std::mutex> lock(mu);
                                               --in_flight;
                                               cv.notify_all();
                                             });
    }
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return in_flight == 0; });
    double secs = Seconds(t0);
    return absl::StrFormat("policy not_modified=%d changed=%d failed=%d seconds=%.2f rps=%.0f",
                           not_modified.load(), changed.load(), failed.load(), secs,
                           not_modified / std::max(secs, 1e-9));
  }

  // Prints "awaiting" at once; then waits until every held channel has
  // been told POLICY_CHANGED and its client holds the new policy: from the
  // nudge, or ("grpc") fetched over gRPC after its share of the spread;
  // reports the first and last of each (unix ms).
  std::string AwaitPolicy(int timeout_s, bool over_grpc) {
    if (!fleet_) return "error await_policy: no channels (run channels first)";
    fleet_->ResetPolicyTimes();
    fleet_->set_fetch_over_grpc(over_grpc);
    const int held = fleet_->held();
    std::cout << "awaiting held=" << held << std::endl;
    auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
    int64_t first = 0, last = 0, fetch_last = 0;
    int received = 0, fetched = 0;
    while (Clock::now() < deadline) {
      first = last = fetch_last = 0;
      received = fetched = 0;
      for (const auto& t : fleet_->times()) {
        if (t.policy_changed_ms != 0) {
          ++received;
          first = first == 0 ? t.policy_changed_ms : std::min(first, t.policy_changed_ms);
          last = std::max(last, t.policy_changed_ms);
        }
        if (t.fetched_ms != 0) {
          ++fetched;
          fetch_last = std::max(fetch_last, t.fetched_ms);
        }
      }
      if (held > 0 && received >= held && fetched >= held) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    version_.clear();  // learn the new version on the next policy command
    return absl::StrFormat(
        "await_policy received=%d held=%d first_ms=%d last_ms=%d fetched=%d fetch_last_ms=%d "
        "fetch_failed=%d",
        received, held, first, last, fetched, fetch_last, fleet_->fetch_failures());
  }

  // Prints "awaiting"; then, as each held client is told a policy that
  // carries a deployment (POLICY_CHANGED, the policy in the nudge or fetched),
  // it reports `deployment` installing then installed, as an agent whose
  // install takes no time would: up its nudge channel (as the agent sends
  // small reports), or ("grpc") in a Report call (`concurrency` at once),
  // until every held client has, or the timeout.
  std::string Install(int timeout_s, const std::string& deployment, bool over_grpc) {
    return Respond(
        "install", timeout_s, over_grpc,
        [](const NudgeFleet::Times& t) { return t.deployments > 0; },
        [&](SimClient& c, const NudgeFleet::Times&) {
          v1::ReportRequest request;
          *request.add_reports() =
              c.NextDeploymentState(deployment, v1::DEPLOYMENT_STATE_INSTALLING);
          *request.add_reports() =
              c.NextDeploymentState(deployment, v1::DEPLOYMENT_STATE_INSTALLED);
          return request;
        });
  }

  // As Install, for the newest script run ("script": it succeeded, with
  // `bytes` of output) or live query ("query": one row of `bytes`) each
  // client's policy names: what an agent answers, with no time spent
  // running or reading.
  std::string Answer(int timeout_s, const std::string& kind, int bytes, bool over_grpc) {
    const bool script = kind == "script";
    return Respond(
        kind, timeout_s, over_grpc,
        [script](const NudgeFleet::Times& t) {
          return !(script ? t.script_run : t.live_query).empty();
        },
        [&](SimClient& c, const NudgeFleet::Times& t) {
          v1::ReportRequest request;
          v1::ClientReport* r = request.add_reports();
          *r = c.NextHeartbeat();  // its seq and time
          const std::string text(static_cast<size_t>(std::max(bytes, 1)), 'x');
          if (script) {
            auto* s = r->mutable_script();
            s->set_run(t.script_run);
            s->set_state(v1::SCRIPT_RUN_STATE_SUCCEEDED);
            s->set_output(text);
            s->set_started_unix_ms(r->created_unix_ms());
            s->set_finished_unix_ms(r->created_unix_ms());
          } else {
            auto* a = r->mutable_live_query();
            a->set_query(t.live_query);
            a->set_state(v1::LIVE_QUERY_STATE_ANSWERED);
            auto* row = a->add_rows();
            row->add_values(c.id());
            row->add_values(text);
          }
          return request;
        });
  }

  // Prints "awaiting"; then, as each held client's policy is `ready`, sends
  // `make`'s reports for it: up its nudge channel, or ("grpc") in a Report
  // call (`concurrency` at once), until every held client has, or the
  // timeout.
  std::string Respond(
      const std::string& name, int timeout_s, bool over_grpc,
      const std::function<bool(const NudgeFleet::Times&)>& ready,
      const std::function<v1::ReportRequest(SimClient&, const NudgeFleet::Times&)>& make) {
    if (!fleet_) return absl::StrCat("error ", name, ": no channels (run channels first)");
    const int held = fleet_->held();
    std::cout << "awaiting held=" << held << std::endl;
    const auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
    std::vector<char> started(clients_.size(), 0);
    std::mutex mu;
    std::condition_variable cv;
    int in_flight = 0, ok = 0, failed = 0, begun = 0;
    int64_t first_ms = 0, last_ms = 0;
    std::string first_error;
    while (Clock::now() < deadline && begun < held) {
      const auto times = fleet_->times();
      for (size_t i = 0; i < times.size() && i < clients_.size(); ++i) {
        if (started[i] || times[i].fetched_ms == 0 || !ready(times[i])) continue;
        {
          std::unique_lock<std::mutex> lock(mu);
          cv.wait(lock, [&] { return in_flight < concurrency_; });
          ++in_flight;
        }
        started[i] = 1;
        ++begun;
        struct Call {
          grpc::ClientContext ctx;
          v1::ReportRequest request;
          v1::ReportResponse response;
        };
        SimClient& c = *clients_[i];
        v1::ReportRequest request = make(c, times[i]);
        const int64_t sent = WallClockMs();
        auto finished = [&, sent](bool good, const std::string& error) {
          std::lock_guard<std::mutex> lock(mu);
          if (good) {
            ++ok;
          } else {
            ++failed;
            if (first_error.empty()) first_error = error;
          }
          first_ms = first_ms == 0 ? sent : std::min(first_ms, sent);
          last_ms = std::max(last_ms, sent);
          --in_flight;
          cv.notify_all();
        };
        if (!over_grpc) {
          fleet_->SendReports(i, std::move(request), [finished](bool good) {
            finished(good, "the channel ended before the ack");
          });
          continue;
        }
        auto* call = new Call;
        call->request = std::move(request);
        call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
        c.stub().async()->Report(&call->ctx, &call->request, &call->response,
                                 [call, finished](grpc::Status s) {
                                   delete call;
                                   finished(s.ok(), s.error_message());
                                 });
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return in_flight == 0; });
    return absl::StrFormat("%s reported=%d failed=%d held=%d first_ms=%d last_ms=%d%s", name, ok,
                           failed, held, first_ms, last_ms,
                           first_error.empty() ? "" : " first_error=" + first_error);
  }

  std::string Status() {
    std::string out =
        absl::StrFormat("status clients=%zu channels_held=%d welcomes=%d resumed=%d",
                        clients_.size(), fleet_ ? fleet_->held() : 0,
                        fleet_ ? fleet_->welcomes() : 0, fleet_ ? fleet_->resumed() : 0);
    if (fleet_) {
      for (const auto& [why, count] : fleet_->end_reasons()) {
        absl::StrAppend(&out, " ended=", count, " (\"", why, "\")");
      }
    }
    return out;
  }

  const std::string address_, token_;
  const int n_, first_;
  int concurrency_;  // calls (or reports on channels) in flight; the "concurrency" command sets it
  const PackageUniverse universe_;
  std::mt19937_64 rng_;  // the command thread's
  std::string ca_pem_;
  std::string version_;
  std::ofstream deltas_out_;
  std::vector<std::unique_ptr<SimClient>> clients_;

  std::unique_ptr<NudgeFleet> fleet_;
};

}  // namespace
}  // namespace strata::sim

int main(int argc, char** argv) {
  strata::SetBinaryUsage(
      "clientsim",
      "Simulated Strata agents against one management point (real protocol, mutual TLS).\n\n"
      "Usage:\n  strata-clientsim --mp ADDRESS --ca ROOT.pem --token TOKEN --clients N [flags]\n\n"
      "Commands on stdin, one per line; each prints one result line (\"error ...\" on failure):\n"
      "  register              register every client (key, CSR, certificate from the site)\n"
      "  channels [timeout_s]  open every client's nudge channel; wait until all are held\n"
      "  close_channels        close them all\n"
      "  full                  one full inventory per client\n"
      "  delta [changes]       one inventory delta per client (default 4 packages)\n"
      "  heartbeat             one discovery heartbeat per client\n"
      "  policy [seconds]      not-modified policy checks for that long (default 10)\n"
      "  await_policy [t_s] [channel|grpc]\n"
      "                        print \"awaiting\", then wait for POLICY_CHANGED on every channel\n"
      "                        and the new policy: from the nudge, or fetched over gRPC\n"
      "  install t_s NAME [channel|grpc]\n"
      "                        print \"awaiting\", then, as each client's policy names a\n"
      "                        deployment, report NAME installing and installed: up the\n"
      "                        nudge channel (as agents send small reports) or over gRPC\n"
      "  answer t_s script|query BYTES [channel|grpc]\n"
      "                        as install, for the newest script run (its output BYTES long)\n"
      "                        or live query (one row of BYTES) each client's policy names\n"
      "  concurrency N         calls or channel reports in flight from now on (--concurrency)\n"
      "  status                channels held, welcomes, resumed handshakes, why channels ended\n"
      "  quit\n");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::cerr << "strata-clientsim: unexpected argument \"" << rest[1] << "\" (see --help)\n";
    return 2;
  }
  if (absl::GetFlag(FLAGS_mp).empty() || absl::GetFlag(FLAGS_ca).empty() ||
      absl::GetFlag(FLAGS_clients) <= 0) {
    std::cerr << "strata-clientsim: --mp, --ca and a positive --clients are required\n";
    return 2;
  }
  strata::sim::Simulator sim;
  if (absl::Status s = sim.Init(); !s.ok()) {
    std::cerr << "strata-clientsim: " << s.message() << "\n";
    return 2;
  }
  std::string line;
  int failures = 0;
  while (std::getline(std::cin, line)) {
    if (line == "quit") break;
    std::string out = sim.Run(line);
    if (out.empty()) continue;
    if (absl::StartsWith(out, "error ")) ++failures;
    std::cout << out << std::endl;
  }
  sim.Stop();
  return failures == 0 ? 0 : 1;
}
