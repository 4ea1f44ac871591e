#pragma once

// One replication link between two site servers, run over one bidirectional
// gRPC stream. The same session runs on both ends (child dials, parent
// accepts): each side sends its changes to the other from the peer's
// watermark, read from the peer's logical slot (wal_reader.h), and applies
// what it receives on a connection carrying the peer's replication origin,
// acknowledging each batch once it committed.
//
// Threading: Run() is called on one thread (the gRPC handler or the child's
// link thread), which sends. It starts a reader thread (reads the stream,
// handles acknowledgements and snapshots, checks and prepares batches) and
// an applier thread (applies the prepared batches in order, so reading and
// preparing the next batch overlaps applying this one), and joins both
// before returning. Stop() may be called from any
// thread.

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/replication/applier.h"
#include "common/replication/change_log.h"
#include "common/replication/routing.h"
#include "common/replication/wal_reader.h"
#include "common/replication/wal_rows.h"
#include "strata/v1/config.pb.h"
#include "strata/v1/site_link.pb.h"

namespace strata::replication {

// Wakes whoever subscribed (the client service) when this site's replicated
// data changed: fed by the site's WAL watch (local writes), LISTEN
// strata_repl and this process's applies. Thread-safe.
class ChangeNotifier {
 public:
  using Callback = std::function<void()>;
  int Subscribe(Callback cb);
  void Unsubscribe(int id);
  void Notify();

 private:
  absl::Mutex mu_;
  int next_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<int, Callback> callbacks_ ABSL_GUARDED_BY(mu_);
};

// Health counters per link, for GetStatus. Thread-safe.
struct LinkCounters {
  std::string peer;
  bool peer_is_parent = false;
  v1::SiteType peer_type = v1::SITE_TYPE_UNSPECIFIED;
  bool connected = false;
  std::string last_error;
  int64_t last_contact_unix_ms = 0;
  int64_t disconnected_since_unix_ms = 0;
  int64_t changes_sent = 0;
  int64_t changes_applied = 0;
  int64_t snapshots_sent = 0;
  int64_t snapshots_applied = 0;
  Position acked;  // how far the peer acknowledged our log
  bool acked_known = false;
  // Sent, not yet acknowledged: the lag of a connected link.
  int64_t unacked_changes = 0;
  int64_t oldest_unacked_unix_ms = 0;
};

class LinkRegistry {
 public:
  void Update(const std::string& peer, const std::function<void(LinkCounters&)>& fn);
  void Remove(const std::string& peer);
  std::vector<LinkCounters> Snapshot() const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, LinkCounters> links_ ABSL_GUARDED_BY(mu_);
};

// A full-duplex message stream; Write may be called from two threads.
class LinkStream {
 public:
  virtual ~LinkStream() = default;
  virtual bool Read(v1::LinkMessage* message) = 0;
  virtual bool Write(const v1::LinkMessage& message) = 0;
  virtual void Cancel() = 0;
};

struct SiteContext {
  std::string site_code;
  v1::SiteType site_type = v1::SITE_TYPE_UNSPECIFIED;
  bool has_parent = false;  // configured with a parent (routing.h)
  std::string conninfo;
  v1::ReplicationConfig settings;  // defaults filled in
  ChangeNotifier* notifier = nullptr;
  LinkRegistry* registry = nullptr;
};

struct LinkPeer {
  std::string code;
  v1::SiteType type = v1::SITE_TYPE_UNSPECIFIED;
  bool is_parent = false;  // the peer is this site's parent
};

// Fills unset replication settings with their defaults.
v1::ReplicationConfig WithDefaults(const v1::ReplicationConfig& in);

class LinkSession {
 public:
  LinkSession(const SiteContext& site, LinkPeer peer, LinkStream& stream);
  ~LinkSession();

  // Runs the link until the stream ends, Stop() is called, or an error
  // occurs. Returns OK for a clean end, otherwise why the link broke (a
  // rejected batch is InvalidArgument / PermissionDenied).
  absl::Status Run();
  void Stop();

 private:
  absl::Status Handshake(v1::LinkHello* peer_hello);
  absl::Status SendLoop(const v1::LinkHello& peer_hello);
  absl::Status SendSnapshot(Position* position);
  struct QueuedBatch {
    v1::ChangeBatch batch;
    PreparedBatch prepared;  // refers into `batch`: a QueuedBatch never moves
  };
  void ReceiveLoop();
  void ApplyLoop();
  absl::Status ApplyBatch(const QueuedBatch& queued);
  int MaxChanges() const;
  absl::Status ApplySnapshot(const v1::LinkMessage& first);
  absl::Status HandleAck(const v1::Ack& ack);
  absl::Status RecordAck(const Position& acked);
  // repl_outbound: the peer is in contact now.
  absl::Status MarkContact(store::Connection& conn);
  absl::StatusOr<ApplyPolicy> PolicyFor(store::Transaction& tx);
  PeerFilter Filter() const;
  // Records the first error and stops. `cancel_stream` is false when the
  // receiver fails: the server then ends the call with that status instead
  // of a bare cancellation.
  void Fail(const absl::Status& status, bool cancel_stream);
  void Stop(bool cancel_stream);
  bool ApplierIdleOrStopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const SiteContext& site_;
  const LinkPeer peer_;
  LinkStream& stream_;
  store::ConnectionPtr send_conn_;
  store::ConnectionPtr recv_conn_;  // applier thread; the reader for snapshots when idle
  store::ConnectionPtr ack_conn_;   // reader thread: acknowledgements
  std::unique_ptr<Catalog> catalog_;
  std::string my_epoch_;
  std::string peer_epoch_;
  std::vector<std::string> snapshot_origins_;  // for the snapshot we send
  TypeMap types_;
  std::unique_ptr<WalReader> reader_;  // the sending thread's
  // The reader thread's: when repl_outbound last got an acknowledgement,
  // and the newest one it has not got yet (written when the session ends).
  std::chrono::steady_clock::time_point ack_recorded_at_;
  std::optional<Position> unrecorded_ack_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // The newest acknowledgement, for the sender to confirm on the slot.
  std::optional<Position> to_confirm_ ABSL_GUARDED_BY(mu_);
  // Batches not yet acknowledged: their ends, changes and oldest commit.
  struct InFlight {
    Position end;
    int64_t changes = 0;
    int64_t oldest_unix_ms = 0;
  };
  std::deque<InFlight> in_flight_ ABSL_GUARDED_BY(mu_);
  // The registry's unacknowledged changes and age, from in_flight_.
  void CountInFlight() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status error_ ABSL_GUARDED_BY(mu_);  // the first error
  std::deque<std::unique_ptr<QueuedBatch>> apply_queue_ ABSL_GUARDED_BY(mu_);
  bool applying_ ABSL_GUARDED_BY(mu_) = false;     // the applier holds recv_conn_
  bool reader_done_ ABSL_GUARDED_BY(mu_) = false;  // the reader left Read()
};

}  // namespace strata::replication
