#include "mp/site_uplink.h"

#include "common/base/backoff.h"
#include "common/base/log.h"

namespace strata::mp {
namespace {

constexpr absl::Duration kStatusSoonest = absl::Seconds(1);

}  // namespace

SiteUplink::SiteUplink(SiteClient& site, Spool& spool, UplinkOptions options,
                       UplinkHandlers handlers)
    : site_(site), spool_(spool), options_(std::move(options)), handlers_(std::move(handlers)) {}

SiteUplink::~SiteUplink() { Stop(); }

void SiteUplink::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void SiteUplink::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_.HasBeenNotified()) stopping_.Notify();
    if (stream_) stream_->Cancel();
  }
  spool_.Wake();
  if (thread_.joinable()) thread_.join();
}

void SiteUplink::Loop() {
  Backoff backoff(std::chrono::milliseconds(100), std::chrono::seconds(5));
  while (!stopping()) {
    auto started = std::chrono::steady_clock::now();
    absl::Status s = RunStream();
    if (stopping()) break;
    LogWarning("mp.site_link_down", {{"site", options_.site_address},
                                     {"error", s},
                                     {"spooled", spool_.last_seq() - spool_.acknowledged()}});
    backoff.ResetIfLived(std::chrono::steady_clock::now() - started);
    stopping_.WaitForNotificationWithTimeout(absl::FromChrono(backoff.Next()));
  }
}

void SiteUplink::Dispatch(const v1::MpDown& m, bool* bundle_seen) {
  if (m.has_bundle()) {
    if (handlers_.bundle) handlers_.bundle(m.bundle(), !*bundle_seen);
    *bundle_seen = true;
  } else if (m.has_assignments()) {
    std::vector<Assignment> changes;
    for (const auto& a : m.assignments().clients()) {
      changes.emplace_back(a.client_id(), policy::FromProto(a));
    }
    if (handlers_.assignments) handlers_.assignments(changes);
  } else if (m.has_request()) {
    if (handlers_.request) handlers_.request(m.request());
  } else if (m.has_access_changed()) {
    const auto& ids = m.access_changed().client_ids();
    if (handlers_.access_changed) handlers_.access_changed({ids.begin(), ids.end()});
  } else if (m.has_error()) {
    LogWarning("mp.site_refused_batch", {{"error", m.error()}});
  }
}

absl::Status SiteUplink::RunStream() {
  std::unique_ptr<SiteStream> stream = site_.Connect();
  {
    absl::MutexLock lock(&mu_);
    if (stopping()) return absl::OkStatus();
    stream_ = stream.get();
  }
  v1::MpUp hello;
  *hello.mutable_hello() = options_.hello;
  absl::Mutex in_flight_mu;
  int in_flight = 0;                  // under in_flight_mu
  bool down = !stream->Write(hello);  // under in_flight_mu
  std::thread reader([&] {
    bool bundle_seen = false;
    v1::MpDown m;
    while (stream->Read(&m)) {
      if (m.body_case() == v1::MpDown::kAckedSpoolSeq) {
        LogDebug("mp.batch_acked", {{"through", m.acked_spool_seq()}});
        absl::Status s = spool_.Acknowledge(m.acked_spool_seq());
        if (!s.ok()) LogWarning("mp.spool_ack_failed", {{"error", s}});
        absl::MutexLock lock(&in_flight_mu);
        --in_flight;
      } else {
        Dispatch(m, &bundle_seen);
      }
    }
    {
      absl::MutexLock lock(&in_flight_mu);
      down = true;
    }
    spool_.Wake();
  });
  {
    absl::MutexLock lock(&in_flight_mu);
    if (!down) LogInfo("mp.site_link_up", {{"site", options_.site_address}});
  }
  int64_t sent = spool_.acknowledged();
  absl::Status result;
  absl::Time last_status = absl::InfinitePast();
  int64_t last_clients = -1;
  bool first_status = true;
  while (!stopping()) {
    // What the site records of this MP (stratactl get site-systems): every
    // status interval, and sooner (at most every second) when the clients
    // it holds changed. The first of a stream carries every client held.
    const int64_t clients = handlers_.clients_connected ? handlers_.clients_connected() : 0;
    const bool changed =
        clients != last_clients || (handlers_.presence_pending && handlers_.presence_pending());
    const absl::Time now = absl::Now();
    if (now - last_status >= options_.status_every ||
        (changed && now - last_status >= kStatusSoonest)) {
      v1::MpUp status;
      status.mutable_status()->set_clients_connected(clients);
      if (handlers_.presence) handlers_.presence(status.mutable_status(), first_status);
      first_status = false;
      if (!stream->Write(status)) break;
      last_status = now;
      last_clients = clients;
    }
    {
      absl::MutexLock lock(&in_flight_mu);
      auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(in_flight_mu) {
        return down || in_flight < options_.max_batches_in_flight;
      };
      in_flight_mu.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(200));
      if (down) break;
      if (in_flight >= options_.max_batches_in_flight) continue;
    }
    auto records = spool_.Read(sent, options_.batch_max_reports, options_.batch_max_bytes, 200);
    if (!records.ok()) {
      result = records.status();
      break;
    }
    if (records->empty()) continue;
    v1::MpUp up;
    auto* batch = up.mutable_batch();
    for (const auto& rec : *records) {
      if (!batch->add_reports()->ParseFromString(rec.data)) {
        // Cannot happen for records this MP wrote (checksummed); dropped.
        batch->mutable_reports()->RemoveLast();
        LogError("mp.spool_record_unreadable", {{"seq", rec.seq}});
      }
    }
    batch->set_spool_seq(records->back().seq);
    {
      absl::MutexLock lock(&in_flight_mu);
      ++in_flight;
    }
    if (!stream->Write(up)) break;
    sent = records->back().seq;
    LogDebug("mp.batch_sent", {{"reports", batch->reports_size()}, {"through", sent}});
  }
  stream->Cancel();
  reader.join();
  absl::Status finish = stream->Finish();
  {
    absl::MutexLock lock(&mu_);
    stream_ = nullptr;
  }
  if (result.ok()) result = finish;
  return result;
}

}  // namespace strata::mp
