#include "common/replication/link_session.h"

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/hlc.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/replication/wal_reader.h"

namespace strata::replication {
namespace {

v1::Watermark ToWatermark(const std::string& epoch, const Position& p) {
  v1::Watermark w;
  w.set_epoch(epoch);
  w.set_xid(p.xid);
  w.set_log_id(p.log_id);
  return w;
}

Position FromWatermark(const v1::Watermark& w) { return Position{w.xid(), w.log_id()}; }

// A peer's LinkError as a status, its code and length bounded (peer input).
absl::Status PeerError(const std::string& peer, const v1::LinkError& e) {
  int code = e.code();
  if (code <= 0 || code > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    code = static_cast<int>(absl::StatusCode::kUnknown);
  }
  std::string message = e.message().substr(0, 1024);
  return absl::Status(static_cast<absl::StatusCode>(code),
                      absl::StrCat("peer ", peer, " ended the link: ", message));
}

}  // namespace

int ChangeNotifier::Subscribe(Callback cb) {
  absl::MutexLock lock(&mu_);
  int id = next_id_++;
  callbacks_.emplace(id, std::move(cb));
  return id;
}

void ChangeNotifier::Unsubscribe(int id) {
  absl::MutexLock lock(&mu_);
  callbacks_.erase(id);
}

void ChangeNotifier::Notify() {
  absl::MutexLock lock(&mu_);
  for (auto& [id, cb] : callbacks_) cb();
}

void LinkRegistry::Update(const std::string& peer, const std::function<void(LinkCounters&)>& fn) {
  absl::MutexLock lock(&mu_);
  LinkCounters& c = links_[peer];
  c.peer = peer;
  fn(c);
}

void LinkRegistry::Remove(const std::string& peer) {
  absl::MutexLock lock(&mu_);
  links_.erase(peer);
}

std::vector<LinkCounters> LinkRegistry::Snapshot() const {
  absl::MutexLock lock(&mu_);
  std::vector<LinkCounters> out;
  for (const auto& [peer, c] : links_) out.push_back(c);
  return out;
}

v1::ReplicationConfig WithDefaults(const v1::ReplicationConfig& in) {
  v1::ReplicationConfig c = in;
  if (c.retention_seconds() <= 0) c.set_retention_seconds(7 * 24 * 3600);
  if (c.batch_max_changes() <= 0) c.set_batch_max_changes(5000);
  if (c.max_batches_in_flight() <= 0) c.set_max_batches_in_flight(4);
  if (c.max_message_bytes() <= 0) c.set_max_message_bytes(16 << 20);
  if (c.degraded_lag_seconds() <= 0) c.set_degraded_lag_seconds(60);
  if (c.failed_after_seconds() <= 0) c.set_failed_after_seconds(30);
  if (c.max_backoff_ms() <= 0) c.set_max_backoff_ms(5000);
  return c;
}

LinkSession::LinkSession(const SiteContext& site, LinkPeer peer, LinkStream& stream)
    : site_(site), peer_(std::move(peer)), stream_(stream) {}

LinkSession::~LinkSession() = default;

void LinkSession::Stop() { Stop(true); }

void LinkSession::Stop(bool cancel_stream) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (cancel_stream) stream_.Cancel();
}

void LinkSession::Fail(const absl::Status& status, bool cancel_stream) {
  bool first;
  {
    absl::MutexLock lock(&mu_);
    first = error_.ok();
    if (first) error_ = status;
  }
  site_.registry->Update(peer_.code, [&](LinkCounters& c) { c.last_error = status.ToString(); });
  if (first && !status.message().empty() && status.code() != absl::StatusCode::kUnavailable) {
    // Tell the peer why before the stream goes (best effort).
    v1::LinkMessage m;
    m.mutable_error()->set_code(static_cast<int>(status.code()));
    m.mutable_error()->set_message(std::string(status.message()));
    stream_.Write(m);
  }
  Stop(cancel_stream);
}

PeerFilter LinkSession::Filter() const {
  PeerFilter f;
  f.peer = peer_.code;
  f.scopes = ScopesFor(peer_.is_parent, peer_.type);
  f.origins = snapshot_origins_;
  // Down: every origin except the child's subtree. Up: only our subtree.
  f.origins_exclude = !peer_.is_parent;
  return f;
}

absl::Status LinkSession::Handshake(v1::LinkHello* peer_hello) {
  ASSIGN_OR_RETURN(send_conn_, store::Connection::Open(site_.conninfo));
  ASSIGN_OR_RETURN(recv_conn_, store::Connection::Open(site_.conninfo));
  ASSIGN_OR_RETURN(ack_conn_, store::Connection::Open(site_.conninfo));
  v1::LinkMessage hello;
  RETURN_IF_ERROR(recv_conn_->Transact([&](store::Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Catalog catalog, Catalog::Load(tx));
    catalog_ = std::make_unique<Catalog>(std::move(catalog));
    ASSIGN_OR_RETURN(types_, TypeMap::Load(tx));
    ASSIGN_OR_RETURN(LogHead head, ReadLogHead(tx));
    my_epoch_ = head.epoch;
    ASSIGN_OR_RETURN(std::optional<Inbound> inbound, LockInbound(tx, peer_.code));
    auto* h = hello.mutable_hello();
    h->set_site_code(site_.site_code);
    h->set_log_epoch(my_epoch_);
    if (inbound) *h->mutable_applied() = ToWatermark(inbound->epoch, inbound->position);
    // Origins a snapshot we send speaks for.
    ASSIGN_OR_RETURN(snapshot_origins_,
                     Subtree(tx, peer_.is_parent ? site_.site_code : peer_.code));
    return absl::OkStatus();
  }));
  // What this connection applies carries the peer's replication origin:
  // this site's readers send it on to other peers, never back to this one.
  const std::string origin = OriginName(site_.site_code, peer_.code);
  RETURN_IF_ERROR(recv_conn_
                      ->Exec("SELECT pg_replication_origin_create($1) WHERE NOT EXISTS (SELECT "
                             "1 FROM pg_replication_origin WHERE roname = $1)",
                             {origin})
                      .status());
  // Everything it writes is an apply (BeginApply, for the whole session).
  RETURN_IF_ERROR(recv_conn_
                      ->Exec("SELECT pg_replication_origin_session_setup($1), "
                             "set_config('strata.applying', 'on', false)",
                             {origin})
                      .status());
  // Acknowledgements are recorded for the status views only (the slot holds
  // the peer's real position): no flush to wait for.
  RETURN_IF_ERROR(ack_conn_->Exec("SET synchronous_commit = off").status());
  if (!stream_.Write(hello)) return absl::UnavailableError("link closed before the hello was sent");
  v1::LinkMessage reply;
  if (!stream_.Read(&reply)) return absl::UnavailableError("link closed before the peer's hello");
  if (reply.has_error()) return PeerError(peer_.code, reply.error());
  if (!reply.has_hello()) return absl::InvalidArgumentError("the link must start with a hello");
  if (reply.hello().site_code() != peer_.code) {
    return absl::PermissionDeniedError(absl::StrCat(
        "peer says it is site ", reply.hello().site_code(), " on the link to ", peer_.code));
  }
  if (reply.hello().log_epoch().empty())
    return absl::InvalidArgumentError("peer hello has no log epoch");
  peer_epoch_ = reply.hello().log_epoch();
  *peer_hello = reply.hello();
  return absl::OkStatus();
}

absl::Status LinkSession::Run() {
  v1::LinkHello peer_hello;
  absl::Status hs = Handshake(&peer_hello);
  if (!hs.ok()) {
    // No thread reads the stream yet: the caller ends the call with `hs`.
    site_.registry->Update(peer_.code, [&](LinkCounters& c) { c.last_error = hs.ToString(); });
    LogWarning("link.handshake_failed", {{"peer", peer_.code}, {"error", hs}});
    return hs;
  }
  site_.registry->Update(peer_.code, [&](LinkCounters& c) {
    c.peer_is_parent = peer_.is_parent;
    c.peer_type = peer_.type;
    c.connected = true;
    c.last_contact_unix_ms = WallClockMs();
    c.last_error.clear();
  });
  LogInfo("link.up", {{"peer", peer_.code}, {"peer_role", peer_.is_parent ? "parent" : "child"}});
  std::thread reader([this] { ReceiveLoop(); });
  std::thread applier([this] { ApplyLoop(); });
  absl::Status send = SendLoop(peer_hello);
  if (!send.ok()) Fail(send, true);
  bool reader_done;
  {
    absl::MutexLock lock(&mu_);
    reader_done = reader_done_;
  }
  // A reader that already left Read() needs no cancellation: the server then
  // ends the call with the session's own status.
  Stop(!reader_done);
  reader.join();
  applier.join();
  // The last contact (and acknowledgement): the peer's slot is kept for
  // the retention window from now.
  if (ack_conn_) {
    absl::Status s = unrecorded_ack_ ? RecordAck(*unrecorded_ack_) : MarkContact(*ack_conn_);
    if (!s.ok()) LogWarning("link.contact_not_recorded", {{"peer", peer_.code}, {"error", s}});
  }
  // The receiving connection holds the peer's replication origin, the
  // reader the peer's slot: let go of both now, so that a session replacing
  // this one can take them at once.
  reader_.reset();
  recv_conn_.reset();
  absl::Status result;
  {
    absl::MutexLock lock(&mu_);
    result = error_;
  }
  site_.registry->Update(peer_.code, [&](LinkCounters& c) {
    c.connected = false;
    c.disconnected_since_unix_ms = WallClockMs();
    if (!result.ok()) c.last_error = result.ToString();
  });
  LogInfo("link.down",
          {{"peer", peer_.code}, {"reason", result.ok() ? "closed" : result.ToString()}});
  return result;
}

absl::Status LinkSession::SendSnapshot(Position* position) {
  const int chunk = site_.settings.batch_max_changes();
  // Like batches, snapshot messages stay within a quarter of the message limit.
  const int64_t max_bytes = site_.settings.max_message_bytes() / 4;
  int64_t rows = 0;
  absl::StatusOr<SnapshotInfo> info;
  PeerFilter filter = Filter();
  auto send = [&](std::vector<v1::Change>&& changes, bool begin) -> absl::Status {
    v1::LinkMessage m;
    m.mutable_batch()->set_snapshot_begin(begin);
    int64_t bytes = 0;
    for (auto& c : changes) {
      if (bytes > 0 && bytes + static_cast<int64_t>(c.ByteSizeLong()) > max_bytes) {
        if (!stream_.Write(m)) return absl::UnavailableError("link closed during a snapshot");
        m.mutable_batch()->clear_changes();
        m.mutable_batch()->set_snapshot_begin(false);
        bytes = 0;
      }
      bytes += static_cast<int64_t>(c.ByteSizeLong());
      *m.mutable_batch()->add_changes() = std::move(c);
    }
    if (!stream_.Write(m)) return absl::UnavailableError("link closed during a snapshot");
    return absl::OkStatus();
  };
  // The peer's slot is made anew; its exported snapshot is what the peer
  // gets now, and the slot's stream everything after it.
  WalPosition end;
  RETURN_IF_ERROR(reader_->Reinitialize(
      [&](const std::string& snapshot) {
        return send_conn_->Transact(
            [&](store::Transaction& tx) -> absl::Status {
              rows = 0;
              RETURN_IF_ERROR(
                  tx.Exec(absl::StrCat("SET TRANSACTION SNAPSHOT ", store::QuoteLiteral(snapshot)))
                      .status());
              RETURN_IF_ERROR(send({}, true));
              info = ReadSnapshot(tx, filter, chunk, [&](std::vector<v1::Change>&& c) {
                rows += static_cast<int64_t>(c.size());
                return send(std::move(c), false);
              });
              return info.status();
            },
            store::Isolation::kRepeatableRead, 1);
      },
      &end));
  *position = Position{end.commit, end.index};
  v1::LinkMessage m;
  auto* b = m.mutable_batch();
  b->set_snapshot_end(true);
  for (const auto& t : info->tables) b->add_snapshot_tables(t);
  *b->mutable_end() = ToWatermark(my_epoch_, *position);
  if (!stream_.Write(m)) return absl::UnavailableError("link closed during a snapshot");
  {
    absl::MutexLock lock(&mu_);
    in_flight_.push_back(InFlight{*position, rows, WallClockMs()});
    CountInFlight();
  }
  site_.registry->Update(peer_.code, [&](LinkCounters& c) {
    c.snapshots_sent++;
    c.changes_sent += rows;
  });
  LogInfo("link.snapshot_sent", {{"peer", peer_.code}, {"rows", rows}, {"at", end.commit}});
  return absl::OkStatus();
}

absl::Status LinkSession::SendLoop(const v1::LinkHello& peer_hello) {
  Position position = FromWatermark(peer_hello.applied());
  // In contact: the prune loop keeps this peer's slot (DropLapsedSlots).
  RETURN_IF_ERROR(MarkContact(*send_conn_));
  PeerFilter stream_filter = Filter();
  stream_filter.scopes = StreamScopesFor(peer_.is_parent, peer_.type);
  ASSIGN_OR_RETURN(
      reader_, WalReader::Open(site_.conninfo, site_.site_code, stream_filter, *catalog_, types_));
  {
    absl::StatusOr<SlotState> slot;
    RETURN_IF_ERROR(send_conn_->Transact([&](store::Transaction& tx) {
      slot = ReadSlot(tx, SlotName(site_.site_code, peer_.code));
      return slot.status();
    }));
    const char* reason = SnapshotReason(*slot, peer_hello.applied().epoch(), my_epoch_,
                                        WalPosition{position.xid, position.log_id});
    if (reason != nullptr) {
      LogInfo("link.reinitialize", {{"peer", peer_.code}, {"reason", reason}});
      RETURN_IF_ERROR(SendSnapshot(&position));
    } else {
      site_.registry->Update(peer_.code, [&](LinkCounters& c) {
        c.acked = position;
        c.acked_known = true;
      });
    }
  }
  RETURN_IF_ERROR(reader_->Start(WalPosition{position.xid, position.log_id}));
  const int max_changes = site_.settings.batch_max_changes();
  // A quarter of the message limit leaves room for framing and one large row.
  const int64_t max_bytes = site_.settings.max_message_bytes() / 4;
  const size_t window = static_cast<size_t>(site_.settings.max_batches_in_flight());
  auto last_sent = std::chrono::steady_clock::now();
  // Caught up (the last batch took all there was), the next batch waits
  // until the peer applied the one in flight, and then takes everything
  // that came meanwhile: one batch per round trip, as a group commit,
  // instead of one per few transactions, each costing both sites a
  // transaction and the link's threads their hand-offs. Behind (the last
  // batch was full), up to `window` batches are in flight, so reading and
  // preparing overlap applying.
  bool behind = true;
  while (true) {
    std::optional<Position> confirm;
    bool window_full = false;
    {
      absl::MutexLock lock(&mu_);
      const size_t limit = behind ? window : 1;
      auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || in_flight_.size() < limit;
      };
      mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(200));
      if (stopping_) return absl::OkStatus();
      confirm.swap(to_confirm_);
      window_full = in_flight_.size() >= limit;
    }
    if (window_full) {
      if (confirm) RETURN_IF_ERROR(reader_->Confirm(WalPosition{confirm->xid, confirm->log_id}));
      RETURN_IF_ERROR(reader_->KeepAlive());  // not reading: still alive
      continue;
    }
    if (confirm) RETURN_IF_ERROR(reader_->Confirm(WalPosition{confirm->xid, confirm->log_id}));
    const auto read_started = std::chrono::steady_clock::now();
    ASSIGN_OR_RETURN(WalBatch batch,
                     reader_->Read(max_changes, max_bytes, absl::Milliseconds(200)));
    const Position end{batch.end.commit, batch.end.index};
    const int64_t read_us = std::chrono::duration_cast<std::chrono::microseconds>(
                                std::chrono::steady_clock::now() - read_started)
                                .count();
    behind = batch.full;
    if (end == position) continue;  // nothing new
    if (batch.changes.empty()) {
      // Only the position moved (other scopes, the peer's own changes). Tell
      // the peer at most once a second, so its watermark (and the slot)
      // stays fresh without acks feeding more empty batches.
      position = end;
      if (std::chrono::steady_clock::now() - last_sent < std::chrono::seconds(1)) continue;
    }
    v1::LinkMessage m;
    auto* b = m.mutable_batch();
    for (auto& c : batch.changes) *b->add_changes() = std::move(c);
    *b->mutable_end() = ToWatermark(my_epoch_, end);
    b->set_oldest_change_unix_ms(batch.oldest_unix_ms);
    last_sent = std::chrono::steady_clock::now();
    {
      absl::MutexLock lock(&mu_);
      in_flight_.push_back(
          InFlight{end, static_cast<int64_t>(batch.changes.size()), batch.oldest_unix_ms});
      CountInFlight();
    }
    if (!stream_.Write(m)) return absl::OkStatus();  // the receiver sees why
    position = end;
    site_.registry->Update(peer_.code,
                           [&](LinkCounters& c) { c.changes_sent += b->changes_size(); });
    LogDebug("link.batch_sent",
             {{"peer", peer_.code}, {"changes", b->changes_size()}, {"read_us", read_us}});
  }
}

void LinkSession::CountInFlight() {
  int64_t changes = 0;
  int64_t oldest = 0;
  for (const InFlight& f : in_flight_) {
    changes += f.changes;
    if (f.oldest_unix_ms > 0 && (oldest == 0 || f.oldest_unix_ms < oldest))
      oldest = f.oldest_unix_ms;
  }
  site_.registry->Update(peer_.code, [&](LinkCounters& c) {
    c.unacked_changes = changes;
    c.oldest_unacked_unix_ms = oldest;
  });
}

bool LinkSession::ApplierIdleOrStopping() const {
  return stopping_ || (apply_queue_.empty() && !applying_);
}

int LinkSession::MaxChanges() const { return std::max(site_.settings.batch_max_changes(), 10000); }

absl::StatusOr<ApplyPolicy> LinkSession::PolicyFor(store::Transaction& tx) {
  ApplyPolicy policy;
  policy.peer = peer_.code;
  policy.max_changes = MaxChanges();
  policy.allowed_scopes = ScopesFrom(SitePlace{site_.site_type, site_.has_parent}, peer_.is_parent);
  if (!peer_.is_parent) {
    ASSIGN_OR_RETURN(policy.allowed_origins, Subtree(tx, peer_.code));
  }
  return policy;
}

absl::Status LinkSession::ApplyBatch(const QueuedBatch& queued) {
  const v1::ChangeBatch& batch = queued.batch;
  if (batch.end().epoch() != peer_epoch_) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch rejected: its watermark names log epoch \"", batch.end().epoch(),
                     "\", not the peer's"));
  }
  int64_t applied = 0;
  bool duplicate = false;
  const auto started = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(recv_conn_->Transact([&](store::Transaction& tx) -> absl::Status {
    applied = 0;
    duplicate = false;
    // The watermark first: one statement moves it and locks it (a replaced
    // session's applier waits), or finds the batch applied already.
    ASSIGN_OR_RETURN(
        bool advanced,
        AdvanceInbound(tx, peer_.code, Inbound{peer_epoch_, FromWatermark(batch.end())}));
    if (!advanced) {
      ASSIGN_OR_RETURN(std::optional<Inbound> inbound, LockInbound(tx, peer_.code));
      if (!inbound || inbound->epoch != peer_epoch_) {
        return absl::FailedPreconditionError(
            "batch rejected: the peer's log is new here and must start with a snapshot");
      }
      duplicate = true;  // redelivery: already applied
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(ApplyPolicy policy, PolicyFor(tx));
    ASSIGN_OR_RETURN(ApplyStats stats, ApplyPrepared(tx, policy, queued.prepared, false));
    applied = stats.applied;
    return absl::OkStatus();
  }));
  site_.registry->Update(peer_.code, [&](LinkCounters& c) { c.changes_applied += applied; });
  if (applied > 0) site_.notifier->Notify();
  LogDebug("link.batch_applied",
           {{"peer", peer_.code},
            {"changes", batch.changes_size()},
            {"applied", applied},
            {"duplicate", duplicate},
            {"us", static_cast<int64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                            std::chrono::steady_clock::now() - started)
                                            .count())}});
  return absl::OkStatus();
}

absl::Status LinkSession::ApplySnapshot(const v1::LinkMessage& first) {
  int64_t rows = 0;
  int64_t deleted = 0;
  v1::ChangeBatch last;
  absl::Status s = recv_conn_->Transact(
      [&](store::Transaction& tx) -> absl::Status {
        RETURN_IF_ERROR(StartSnapshot(tx));
        // Serializes with any other apply for this peer (a replaced session).
        RETURN_IF_ERROR(LockInbound(tx, peer_.code).status());
        ASSIGN_OR_RETURN(ApplyPolicy policy, PolicyFor(tx));
        v1::LinkMessage m = first;
        for (int n = 0;; ++n) {
          if (m.has_ack()) {
            RETURN_IF_ERROR(HandleAck(m.ack()));
          } else if (m.has_batch()) {
            if (m.batch().snapshot_begin() && n > 0) {
              return absl::InvalidArgumentError("snapshot restarted before it ended");
            }
            ASSIGN_OR_RETURN(ApplyStats stats,
                             ApplyChanges(tx, *catalog_, policy, m.batch().changes(), true));
            rows += stats.received;
            if (m.batch().snapshot_end()) break;
          } else if (m.has_error()) {
            return PeerError(peer_.code, m.error());
          } else {
            return absl::InvalidArgumentError("unexpected message inside a snapshot");
          }
          if (!stream_.Read(&m)) return absl::UnavailableError("link closed during a snapshot");
        }
        last = m.batch();
        if (last.end().epoch() != peer_epoch_) {
          return absl::InvalidArgumentError("snapshot end names another log epoch");
        }
        std::vector<std::string> tables(last.snapshot_tables().begin(),
                                        last.snapshot_tables().end());
        // What the snapshot speaks for is decided here, not by the peer: from
        // the parent every origin outside this site's subtree, from a child
        // the child's subtree.
        std::vector<std::string> origins = policy.allowed_origins;
        if (peer_.is_parent) {
          ASSIGN_OR_RETURN(origins, Subtree(tx, site_.site_code));
        }
        ASSIGN_OR_RETURN(deleted, FinishSnapshot(tx, *catalog_, policy, tables, origins,
                                                 /*origins_exclude=*/peer_.is_parent));
        return StoreInbound(tx, peer_.code, Inbound{peer_epoch_, FromWatermark(last.end())});
      },
      store::Isolation::kReadCommitted, 1);
  RETURN_IF_ERROR(s);
  site_.registry->Update(peer_.code, [&](LinkCounters& c) {
    c.snapshots_applied++;
    c.changes_applied += rows;
  });
  LogInfo("link.snapshot_applied",
          {{"peer", peer_.code}, {"rows", rows}, {"stale_deleted", deleted}});
  site_.notifier->Notify();
  v1::LinkMessage ack;
  *ack.mutable_ack()->mutable_applied() = last.end();
  if (!stream_.Write(ack)) return absl::UnavailableError("link closed");
  return absl::OkStatus();
}

absl::Status LinkSession::HandleAck(const v1::Ack& ack) {
  if (ack.applied().epoch() != my_epoch_) {
    return absl::InvalidArgumentError("acknowledgement names another log epoch");
  }
  const Position acked = FromWatermark(ack.applied());
  {
    absl::MutexLock lock(&mu_);
    while (!in_flight_.empty() && in_flight_.front().end <= acked) in_flight_.pop_front();
    CountInFlight();
    to_confirm_ = acked;  // the sender moves the slot (it owns the reader)
  }
  site_.registry->Update(peer_.code, [&](LinkCounters& c) {
    c.acked = acked;
    c.acked_known = true;
  });
  // repl_outbound shows the position (and that the peer is in contact) at
  // most a second late: a write per batch would cost the sending site a
  // commit per batch.
  const auto now = std::chrono::steady_clock::now();
  if (now - ack_recorded_at_ < std::chrono::seconds(1)) {
    unrecorded_ack_ = acked;
    return absl::OkStatus();
  }
  ack_recorded_at_ = now;
  unrecorded_ack_.reset();
  return RecordAck(acked);
}

absl::Status LinkSession::MarkContact(store::Connection& conn) {
  return conn
      .Exec(
          "INSERT INTO repl_outbound (peer) VALUES ($1) ON CONFLICT (peer) DO UPDATE SET "
          "updated_at = now()",
          {peer_.code})
      .status();
}

absl::Status LinkSession::RecordAck(const Position& acked) {
  return ack_conn_
      ->Exec(
          "INSERT INTO repl_outbound (peer, xid, log_id) VALUES ($1, $2, $3) ON CONFLICT "
          "(peer) DO UPDATE SET xid = EXCLUDED.xid, log_id = EXCLUDED.log_id, updated_at = now()",
          {peer_.code, std::to_string(acked.xid), std::to_string(acked.log_id)})
      .status();
}

void LinkSession::ReceiveLoop() {
  v1::LinkMessage m;
  absl::Status s;
  while (s.ok() && stream_.Read(&m)) {
    site_.registry->Update(peer_.code,
                           [&](LinkCounters& c) { c.last_contact_unix_ms = WallClockMs(); });
    if (m.has_batch() && !m.batch().snapshot_begin()) {
      auto queued = std::make_unique<QueuedBatch>();
      queued->batch = std::move(*m.mutable_batch());
      absl::StatusOr<PreparedBatch> prepared =
          PrepareChanges(*catalog_, queued->batch.changes(), MaxChanges());
      if (!prepared.ok()) {
        s = prepared.status();
        continue;  // leaves the loop: s is not OK
      }
      queued->prepared = std::move(*prepared);
      absl::MutexLock lock(&mu_);
      auto room = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || apply_queue_.size() < 2;
      };
      mu_.Await(absl::Condition(&room));
      if (stopping_) break;
      apply_queue_.push_back(std::move(queued));
    } else if (m.has_batch()) {
      // A snapshot reads the stream itself, on recv_conn_: wait until the
      // applier has finished what it holds.
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(this, &LinkSession::ApplierIdleOrStopping));
        if (stopping_) break;
      }
      s = ApplySnapshot(m);
    } else if (m.has_ack()) {
      s = HandleAck(m.ack());
    } else if (m.has_error()) {
      s = PeerError(peer_.code, m.error());
      LogWarning("link.peer_error", {{"peer", peer_.code}, {"error", s}});
      absl::MutexLock lock(&mu_);
      if (error_.ok()) error_ = s;
      break;
    } else {
      s = absl::InvalidArgumentError("unexpected message on the link");
    }
  }
  {
    absl::MutexLock lock(&mu_);
    reader_done_ = true;
    // What arrived before the stream ended is still applied.
    mu_.Await(absl::Condition(this, &LinkSession::ApplierIdleOrStopping));
  }
  if (!s.ok() && !m.has_error()) {
    LogWarning("link.receive_failed", {{"peer", peer_.code}, {"error", s}});
    Fail(s, false);
  }
  Stop(false);
}

void LinkSession::ApplyLoop() {
  while (true) {
    std::unique_ptr<QueuedBatch> queued;
    {
      absl::MutexLock lock(&mu_);
      auto work = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !apply_queue_.empty();
      };
      mu_.Await(absl::Condition(&work));
      if (stopping_) return;  // the peer resends what was not acknowledged
      queued = std::move(apply_queue_.front());
      apply_queue_.pop_front();
      applying_ = true;
    }
    absl::Status s = ApplyBatch(*queued);
    if (s.ok()) {
      v1::LinkMessage ack;
      *ack.mutable_ack()->mutable_applied() = queued->batch.end();
      if (!stream_.Write(ack)) s = absl::UnavailableError("link closed");
    }
    {
      absl::MutexLock lock(&mu_);
      applying_ = false;
    }
    if (!s.ok()) {
      LogWarning("link.apply_failed", {{"peer", peer_.code}, {"error", s}});
      // The reader may be blocked in Read(): cancel (the peer got the reason first).
      Fail(s, true);
      return;
    }
  }
}

}  // namespace strata::replication
