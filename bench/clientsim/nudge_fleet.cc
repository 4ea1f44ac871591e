#include "bench/clientsim/nudge_fleet.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/ssl.h>

#include <csignal>
#include <mutex>  // std::call_once

#include "absl/synchronization/notification.h"
#include "common/base/hlc.h"
#include "common/nudge/client.h"
#include "common/nudge/reconnect.h"
#include "common/nudge/tls_context.h"

namespace strata::sim {

using Clock = std::chrono::steady_clock;

struct NudgeFleet::Member {
  SimClient* client;
  size_t index = 0;
  nudge::SslCtx ctx;
  std::unique_ptr<nudge::Connection> conn;
  SSL_SESSION* session = nullptr;
  nudge::Reconnect reconnect;
  Clock::time_point dial_at = Clock::time_point::max();  // max: not waiting to dial
  bool dialing = false;
  bool held = false;
  std::atomic<int64_t> welcomed_ms{0}, policy_changed_ms{0}, fetched_ms{0};
  std::atomic<int> deployments{0};  // in the policy held
  absl::Mutex work_mu;              // the last script run and live query held
  std::string script_run ABSL_GUARDED_BY(work_mu), live_query ABSL_GUARDED_BY(work_mu);
  std::function<void(bool)> report_done;  // reports sent on the channel, awaiting their ack
  ~Member() {
    conn.reset();
    if (session) SSL_SESSION_free(session);
  }
};

NudgeFleet::NudgeFleet(std::string nudge_address, std::vector<SimClient*> clients, int concurrency)
    : address_(std::move(nudge_address)), concurrency_(std::max(1, concurrency)) {
  static std::once_flag once;
  std::call_once(once, [] {
    evthread_use_pthreads();
    signal(SIGPIPE, SIG_IGN);
  });
  base_ = event_base_new();
  wake_ = event_new(base_, -1, EV_PERSIST, &NudgeFleet::OnWake, this);
  event_add(wake_, nullptr);
  tick_ = event_new(base_, -1, EV_PERSIST, &NudgeFleet::OnTick, this);
  timeval t{0, 50 * 1000};
  event_add(tick_, &t);
  for (SimClient* c : clients) {
    auto m = std::make_unique<Member>();
    m->client = c;
    m->index = members_.size();
    members_.push_back(std::move(m));
  }
  thread_ = std::thread([this] { event_base_dispatch(base_); });
}

NudgeFleet::~NudgeFleet() {
  Post([this] {
    for (auto& m : members_) m->conn.reset();
    dead_.clear();
    event_base_loopbreak(base_);
  });
  thread_.join();
  // gRPC fetches under way write into the members: wait for them (each has
  // a deadline). Fetches not started yet never will be (the loop ended).
  {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return fetches_in_flight_ == 0; };
    mu_.Await(absl::Condition(&done));
  }
  members_.clear();
  event_free(wake_);
  event_free(tick_);
  event_base_free(base_);
}

void NudgeFleet::Post(std::function<void()> fn) {
  {
    absl::MutexLock lock(&mu_);
    posted_.push_back(std::move(fn));
  }
  event_active(wake_, EV_READ, 0);
}

void NudgeFleet::OnWake(int, short, void* self) {
  auto* f = static_cast<NudgeFleet*>(self);
  std::vector<std::function<void()>> batch;
  {
    absl::MutexLock lock(&f->mu_);
    batch.swap(f->posted_);
  }
  for (auto& fn : batch) fn();
}

void NudgeFleet::OnTick(int, short, void* self) {
  auto* f = static_cast<NudgeFleet*>(self);
  f->dead_.clear();
  f->DialDue();
}

void NudgeFleet::OpenAll() {
  Post([this] {
    open_ = true;
    const auto now = Clock::now();
    for (auto& m : members_) {
      if (!m->conn && !m->dialing) m->dial_at = now;
    }
    DialDue();
  });
}

void NudgeFleet::CloseAll() {
  absl::Notification done;
  Post([this, &done] {
    open_ = false;
    for (auto& m : members_) {
      m->conn.reset();
      if (m->held) --held_;
      m->held = m->dialing = false;
      m->dial_at = Clock::time_point::max();
    }
    dialing_ = 0;
    done.Notify();
  });
  done.WaitForNotification();
}

void NudgeFleet::DialDue() {
  if (!open_) return;
  const auto now = Clock::now();
  for (auto& m : members_) {
    if (dialing_ >= concurrency_) return;
    if (m->dial_at <= now) Dial(*m);
  }
}

void NudgeFleet::Dial(Member& m) {
  m.dial_at = Clock::time_point::max();
  if (!m.ctx) {
    auto ctx = nudge::MakeClientContext(m.client->pem());
    if (!ctx.ok()) {
      Ended(m, ctx.status());
      return;
    }
    m.ctx = std::move(*ctx);
  }
  nudge::Connection::Handlers h;
  Member* mp = &m;
  h.welcome = [this, mp](const v1::NudgeWelcome&) {
    mp->dialing = false;
    --dialing_;
    mp->held = true;
    ++held_;
    ++welcomes_;
    if (mp->conn->resumed()) ++resumed_;
    mp->welcomed_ms = WallClockMs();
    mp->reconnect.Welcomed();
    if (SSL_SESSION* s = mp->conn->Session()) {
      if (mp->session) SSL_SESSION_free(mp->session);
      mp->session = s;
    }
  };
  h.acked = [mp](int64_t) {
    if (auto done = std::move(mp->report_done)) done(true);
  };
  h.nudge = [this, mp](const v1::Nudge& n) {
    if (n.kind() == v1::NOTIFICATION_KIND_WORK_WAITING) {
      std::function<void(size_t)> fn;
      {
        absl::MutexLock lock(&mu_);
        fn = on_work_waiting_;
      }
      if (fn) fn(mp->index);
      return;
    }
    if (n.kind() != v1::NOTIFICATION_KIND_POLICY_CHANGED) return;
    mp->policy_changed_ms = WallClockMs();
    if (n.has_policy() && !fetch_over_grpc_) {
      Hold(*mp, n.policy());
      mp->fetched_ms = mp->policy_changed_ms.load();  // nothing to fetch
      return;
    }
    Fetch(*mp, n.spread_ms());
  };
  h.closed = [this, mp](const absl::Status& why) { Ended(*mp, why); };
  m.conn = std::make_unique<nudge::Connection>(base_, m.ctx.get(), std::move(h));
  m.dialing = true;
  ++dialing_;
  v1::NudgeHello hello;
  hello.set_agent_version("clientsim");
  absl::Status s = m.conn->Start(address_, hello, m.session);
  if (!s.ok()) Ended(m, s);
}

void NudgeFleet::set_on_work_waiting(std::function<void(size_t)> fn) {
  absl::MutexLock lock(&mu_);
  on_work_waiting_ = std::move(fn);
}

void NudgeFleet::SendReports(size_t i, v1::ReportRequest reports, std::function<void(bool)> done) {
  Post([this, i, reports = std::move(reports), done = std::move(done)]() mutable {
    Member& m = *members_[i];
    if (!m.held || !m.conn || m.report_done || !m.conn->SendReports(reports)) {
      done(false);
      return;
    }
    m.report_done = std::move(done);
  });
}

void NudgeFleet::Ended(Member& m, const absl::Status& why) {
  if (auto done = std::move(m.report_done)) done(false);
  if (m.dialing) --dialing_;
  if (m.held) --held_;
  m.dialing = m.held = false;
  {
    absl::MutexLock lock(&mu_);
    const std::string key = why.ToString().substr(0, 120);
    if (end_reasons_.size() < 20 || end_reasons_.count(key)) ++end_reasons_[key];
  }
  // The connection is freed on the next tick (this runs inside its callback).
  dead_.push_back(std::move(m.conn));
  if (!open_) return;
  const auto wait = why.code() == absl::StatusCode::kPermissionDenied ? m.reconnect.Refused()
                                                                      : m.reconnect.Next();
  m.dial_at = Clock::now() + wait;
}

void NudgeFleet::Fetch(Member& m, int spread_ms) {
  struct Call {
    Member* m;
    NudgeFleet* fleet;
    grpc::ClientContext ctx;
    v1::PolicyRequest request;
    v1::PolicyResponse response;
  };
  auto start = [](int, short, void* arg) {
    auto* call = static_cast<Call*>(arg);
    {
      absl::MutexLock lock(&call->fleet->mu_);
      ++call->fleet->fetches_in_flight_;
    }
    call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    call->m->client->stub().async()->GetPolicy(
        &call->ctx, &call->request, &call->response, [call](grpc::Status s) {
          NudgeFleet* fleet = call->fleet;
          if (s.ok()) {
            Hold(*call->m, call->response);
            call->m->fetched_ms = WallClockMs();
          } else {
            ++fleet->fetch_failures_;
          }
          delete call;
          absl::MutexLock lock(&fleet->mu_);  // last: the destructor may go on after it
          --fleet->fetches_in_flight_;
        });
  };
  auto* call = new Call{&m, this, {}, {}, {}};
  const int wait = spread_ms > 0 ? static_cast<int>(std::hash<std::string>{}(m.client->id()) %
                                                    static_cast<size_t>(spread_ms))
                                 : 0;
  timeval t{wait / 1000, (wait % 1000) * 1000};
  event_base_once(base_, -1, EV_TIMEOUT, start, call, &t);
}

void NudgeFleet::Hold(Member& m, const v1::PolicyResponse& policy) {
  m.deployments = policy.deployments_size();
  absl::MutexLock lock(&m.work_mu);
  if (policy.script_runs_size() > 0) m.script_run = policy.script_runs().rbegin()->name();
  if (policy.live_queries_size() > 0) m.live_query = policy.live_queries().rbegin()->name();
}

std::vector<NudgeFleet::Times> NudgeFleet::times() {
  std::vector<Times> out;
  out.reserve(members_.size());
  for (auto& m : members_) {
    Times t;
    t.welcomed_ms = m->welcomed_ms.load();
    t.policy_changed_ms = m->policy_changed_ms.load();
    t.fetched_ms = m->fetched_ms.load();
    t.deployments = m->deployments.load();
    absl::MutexLock lock(&m->work_mu);
    t.script_run = m->script_run;
    t.live_query = m->live_query;
    out.push_back(std::move(t));
  }
  return out;
}

void NudgeFleet::ResetPolicyTimes() {
  for (auto& m : members_) {
    m->policy_changed_ms = 0;
    m->fetched_ms = 0;
  }
}

std::map<std::string, int> NudgeFleet::end_reasons() {
  absl::MutexLock lock(&mu_);
  return end_reasons_;
}

}  // namespace strata::sim
