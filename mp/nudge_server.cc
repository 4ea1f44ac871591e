#include "mp/nudge_server.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <malloc.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>

#include <atomic>
#include <deque>
#include <mutex>  // std::call_once
#include <thread>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/base/log.h"
#include "common/base/version.h"
#include "common/inventory/report_check.h"
#include "common/nudge/client.h"  // ResolveAddress
#include "common/nudge/frame.h"
#include "common/nudge/tls_context.h"

namespace strata::mp {
namespace {

// Kinds kept for a client not holding the channel, and how many clients.
constexpr uint32_t kPendable =
    (1u << v1::NOTIFICATION_KIND_RUN_NOW) | (1u << v1::NOTIFICATION_KIND_WORK_WAITING);
constexpr size_t kMaxPendingClients = 200000;
// A client that does not read what it is sent (pongs to its pings) is cut
// off before its output grows beyond this.
constexpr size_t kMaxOutputBytes = 64 * 1024;
constexpr int kMaxSpreadMs = 5 * 60 * 1000;
constexpr int kTrimEverySeconds = 5;
constexpr int64_t kTrimAfterChurn = 256;
// A policy larger than this (applications make it grow) is not carried in a
// frame (at most nudge::kMaxFrameBytes): the nudge names its version and the
// client fetches it.
constexpr size_t kMaxInlinePolicyBytes = 3072;

void InitLibeventThreads() {
  static std::once_flag once;
  std::call_once(once, [] {
    evthread_use_pthreads();
    // OpenSSL writes to sockets with write(): a client gone mid-write must
    // be an error on that connection, not SIGPIPE for the process.
    signal(SIGPIPE, SIG_IGN);
  });
}

// Logs at most one line a second for a kind of event (a fleet misbehaving
// must not flood the journal); the counters keep the totals.
class LogLimiter {
 public:
  bool Allow() {
    const absl::Time now = absl::Now();
    if (now - last_ < absl::Seconds(1)) return false;
    last_ = now;
    return true;
  }

 private:
  absl::Time last_ = absl::InfinitePast();
};

}  // namespace

std::string DefaultNudgeAddress(const std::string& grpc_listen) {
  if (absl::StartsWith(grpc_listen, "unix:")) return grpc_listen + ".nudge";
  const size_t colon = grpc_listen.rfind(':');
  if (colon == std::string::npos) return grpc_listen;
  const std::string port = grpc_listen.substr(colon + 1);
  return absl::StrCat(grpc_listen.substr(0, colon), ":", port == "0" ? "0" : "10123");
}

class NudgeServer::Impl {
 public:
  Impl(Options options, Hooks hooks) : options_(std::move(options)), hooks_(std::move(hooks)) {}

  ~Impl() { Stop("management point stopping"); }

  absl::Status Start() {
    InitLibeventThreads();
    auto tls = nudge::ServerTls::Open(options_.tls);
    if (!tls.ok()) return tls.status();
    tls_ = std::move(*tls);
    base_ = event_base_new();
    if (base_ == nullptr) return absl::InternalError("event_base_new failed");
    wake_ = event_new(base_, -1, EV_PERSIST, &Impl::OnWake, this);
    event_add(wake_, nullptr);
    resume_accept_ = evtimer_new(base_, &Impl::OnResumeAccept, this);
    trim_ = event_new(base_, -1, EV_PERSIST, &Impl::OnTrim, this);
    const timeval every{kTrimEverySeconds, 0};
    event_add(trim_, &every);
    tls_refresh_ = event_new(base_, -1, EV_PERSIST, &Impl::OnTlsRefresh, this);
    const timeval refresh{static_cast<time_t>(RefreshSeconds(options_.tls)), 0};
    event_add(tls_refresh_, &refresh);

    nudge::SocketAddress at;
    std::string listen = options_.listen_address;
    const bool unix_socket = absl::StartsWith(listen, "unix:");
    if (!unix_socket) {
      // Resolve "host:0" too (ResolveAddress refuses port 0, which clients
      // never dial).
      const size_t colon = listen.rfind(':');
      if (colon != std::string::npos && listen.substr(colon + 1) == "0") {
        listen = listen.substr(0, colon) + ":1";
      }
    } else {
      ::unlink(listen.substr(5).c_str());  // a socket left by an earlier run
    }
    if (absl::Status s = nudge::ResolveAddress(listen, &at); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("nudge_listen_address ", options_.listen_address, ": ", s.message()));
    }
    if (!unix_socket && listen != options_.listen_address) {
      auto* sa = reinterpret_cast<sockaddr*>(&at.storage);
      if (sa->sa_family == AF_INET) reinterpret_cast<sockaddr_in*>(sa)->sin_port = 0;
      if (sa->sa_family == AF_INET6) reinterpret_cast<sockaddr_in6*>(sa)->sin6_port = 0;
    }
    listener_ =
        evconnlistener_new_bind(base_, &Impl::OnAccept, this,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
                                4096, reinterpret_cast<sockaddr*>(&at.storage), at.length);
    if (listener_ == nullptr) {
      return absl::UnavailableError(
          absl::StrCat("cannot listen on ", options_.listen_address,
                       " for the nudge channel: ", evutil_socket_error_to_string(errno)));
    }
    evconnlistener_set_error_cb(listener_, &Impl::OnAcceptError);
    if (unix_socket) {
      bound_ = options_.listen_address;
    } else {
      sockaddr_storage got{};
      socklen_t len = sizeof(got);
      getsockname(evconnlistener_get_fd(listener_), reinterpret_cast<sockaddr*>(&got), &len);
      const int port = got.ss_family == AF_INET6
                           ? ntohs(reinterpret_cast<sockaddr_in6*>(&got)->sin6_port)
                           : ntohs(reinterpret_cast<sockaddr_in*>(&got)->sin_port);
      std::string host = options_.listen_address.substr(0, options_.listen_address.rfind(':'));
      if (host.empty() || host == "0.0.0.0" || host == "[::]") host = "localhost";
      bound_ = absl::StrCat(host, ":", port);
    }
    thread_ = std::thread([this] { event_base_dispatch(base_); });
    return absl::OkStatus();
  }

  void Stop(const std::string& reason) {
    {
      absl::MutexLock lock(&mu_);
      if (stopped_ || base_ == nullptr) return;
      stopped_ = true;
      commands_.push_back(Command{Command::kStop, {}, {}, reason, 0, {}});
      event_active(wake_, EV_READ, 0);
    }
    if (thread_.joinable()) thread_.join();
    // The loop has ended: free what is left on this thread.
    for (auto& [serial, c] : conns_) FreeConn(c, /*erase=*/false);
    conns_.clear();
    if (listener_) evconnlistener_free(listener_);
    event_free(wake_);
    event_free(resume_accept_);
    event_free(trim_);
    event_free(tls_refresh_);
    event_base_free(base_);
    base_ = nullptr;
    if (absl::StartsWith(bound_, "unix:")) ::unlink(bound_.substr(5).c_str());
  }

  const std::string& bound_address() const { return bound_; }

  void Push(std::vector<std::string> ids, v1::NotificationKind kind) {
    if (ids.empty()) return;
    Enqueue(Command{Command::kPush, std::move(ids), kind, {}, 0, {}});
  }

  void Close(const std::string& id, const std::string& reason) {
    Enqueue(Command{Command::kClose, {id}, {}, reason, 0, {}});
  }

  std::vector<std::string> Ids() {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> ids;
    ids.reserve(held_.size());
    for (const auto& [id, _] : held_) ids.push_back(id);
    return ids;
  }

  Counts counts() {
    absl::MutexLock lock(&mu_);
    Counts c = counts_;
    c.held = static_cast<int64_t>(held_.size());
    c.connecting = open_.load() - c.held;
    return c;
  }

 private:
  struct Conn {
    Impl* server;
    bufferevent* bev;
    event* deadline;  // until the hello: the handshake and hello must be done by then
    uint64_t serial;
    std::string id;
    enum State : uint8_t { kHandshake, kHello, kAuthorizing, kHeld, kClosing } state;
    bool reports_in_flight = false;  // one batch of reports at a time
  };

  struct Command {
    enum Type { kPush, kClose, kAuthorized, kStop, kAcked } type;
    std::vector<std::string> ids;
    v1::NotificationKind kind;
    std::string reason;  // kAuthorized: the policy version of the client's hello
    uint64_t serial;
    absl::Status status;
    int64_t seq = 0;  // kAcked: acknowledged through
  };

  void Enqueue(Command c) {
    // Under the lock: once Stop() has set stopped_, nobody touches wake_,
    // which it frees after the loop ends.
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    commands_.push_back(std::move(c));
    event_active(wake_, EV_READ, 0);
  }

  // --- the loop thread ----------------------------------------------------

  static void OnWake(evutil_socket_t, short, void* self) {
    auto* s = static_cast<Impl*>(self);
    std::deque<Command> batch;
    {
      absl::MutexLock lock(&s->mu_);
      batch.swap(s->commands_);
    }
    for (auto& c : batch) s->Run(c);
  }

  void Run(Command& c) {
    switch (c.type) {
      case Command::kPush:
        PushNow(c.ids, c.kind);
        break;
      case Command::kClose:
        if (Conn* conn = HeldConn(c.ids[0])) Goodbye(conn, c.reason, /*retry=*/false);
        break;
      case Command::kAuthorized:
        Authorized(c.serial, c.status, c.reason);
        break;
      case Command::kAcked:
        Acked(c.serial, c.status, c.seq);
        break;
      case Command::kStop: {
        stopping_ = true;
        evconnlistener_disable(listener_);
        std::vector<Conn*> all;
        for (auto& [serial, conn] : conns_) all.push_back(conn);
        for (Conn* conn : all) Goodbye(conn, c.reason, /*retry=*/true);
        // Goodbyes are small: a moment to flush them, then the loop ends.
        timeval t{0, 300 * 1000};
        event_base_loopexit(base_, &t);
        break;
      }
    }
  }

  Conn* HeldConn(const std::string& id) {
    absl::MutexLock lock(&mu_);
    auto it = held_.find(id);
    return it == held_.end() ? nullptr : it->second;
  }

  void PushNow(const std::vector<std::string>& ids, v1::NotificationKind kind) {
    v1::NudgeFrame frame;
    frame.mutable_nudge()->set_kind(kind);
    if (kind == v1::NOTIFICATION_KIND_POLICY_CHANGED && options_.fetches_per_second > 0) {
      const int64_t spread = static_cast<int64_t>(ids.size()) * 1000 / options_.fetches_per_second;
      frame.mutable_nudge()->set_spread_ms(
          static_cast<int32_t>(std::min<int64_t>(spread, kMaxSpreadMs)));
    }
    int64_t sent = 0;
    for (const auto& id : ids) {
      Conn* conn = HeldConn(id);
      if (conn == nullptr) {
        const uint32_t bit = 1u << kind;
        if ((bit & kPendable) && (pending_.size() < kMaxPendingClients || pending_.count(id))) {
          pending_[id] |= bit;
        }
        continue;
      }
      if (kind == v1::NOTIFICATION_KIND_POLICY_CHANGED) {
        auto policy = hooks_.policy(id);
        if (policy) {
          frame.mutable_nudge()->set_detail(policy->version());
          if (policy->ByteSizeLong() <= kMaxInlinePolicyBytes) {
            *frame.mutable_nudge()->mutable_policy() = std::move(*policy);
          } else {  // the version alone: the client fetches it over gRPC
            frame.mutable_nudge()->clear_policy();
          }
        } else {
          frame.mutable_nudge()->clear_detail();
          frame.mutable_nudge()->clear_policy();
        }
      }
      Send(conn, frame);
      ++sent;
    }
    absl::MutexLock lock(&mu_);
    counts_.nudges_sent += sent;
  }

  static void OnAccept(evconnlistener*, evutil_socket_t fd, sockaddr*, int, void* self) {
    static_cast<Impl*>(self)->Accept(fd);
  }

  void Accept(evutil_socket_t fd) {
    if (stopping_ || static_cast<int64_t>(conns_.size()) >= options_.max_clients) {
      ::close(fd);
      absl::MutexLock lock(&mu_);
      ++counts_.refused_full;
      if (full_log_.Allow()) {
        LogWarning("mp.nudge_full", {{"clients", conns_.size()},
                                     {"refused_total", counts_.refused_full},
                                     {"action", "closed at accept; such agents poll meanwhile"}});
      }
      return;
    }
    SSL* ssl = SSL_new(tls_->ctx());
    bufferevent* bev = ssl ? bufferevent_openssl_socket_new(
                                 base_, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE)
                           : nullptr;
    if (bev == nullptr) {
      if (ssl) SSL_free(ssl);
      ::close(fd);
      return;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    auto* conn = new Conn{this, bev, nullptr, ++next_serial_, {}, Conn::kHandshake};
    ++open_;
    conns_[conn->serial] = conn;
    bufferevent_setcb(bev, &Impl::OnRead, &Impl::OnWritten, &Impl::OnEvent, conn);
    // The handshake and the hello must be done within hello_timeout of the
    // accept, however the peer trickles its bytes (slow-loris): a deadline,
    // not an idle timeout, which each byte would reset.
    const timeval t = absl::ToTimeval(options_.hello_timeout);
    conn->deadline = evtimer_new(base_, &Impl::OnDeadline, conn);
    evtimer_add(conn->deadline, &t);
    bufferevent_set_timeouts(bev, &t, &t);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
  }

  static void OnDeadline(evutil_socket_t, short, void* arg) {
    auto* conn = static_cast<Conn*>(arg);
    conn->server->Refused(
        conn, absl::DeadlineExceededError("no TLS handshake and hello within the hello timeout"));
    conn->server->FreeConn(conn);
  }

  static void OnAcceptError(evconnlistener* listener, void* self) {
    auto* s = static_cast<Impl*>(self);
    const int err = EVUTIL_SOCKET_ERROR();
    LogError("mp.nudge_accept_failed", {{"error", evutil_socket_error_to_string(err)},
                                        {"action", "not accepting for 1 s (out of open files?)"}});
    evconnlistener_disable(listener);
    timeval t{1, 0};
    evtimer_add(s->resume_accept_, &t);
  }

  // Handshakes leave their temporary memory free but still resident in the
  // loop thread's malloc arena, in holes between the connections that stay;
  // connections that came and went (a reconnect storm, a scan, a
  // slow-loris) leave all of theirs. After a burst of either, give the free
  // pages back to the system, so that the MP's memory is what its held
  // clients need.
  static void OnTrim(evutil_socket_t, short, void* self) {
    auto* s = static_cast<Impl*>(self);
    if (s->churn_since_trim_ < kTrimAfterChurn) return;
    s->churn_since_trim_ = 0;
    malloc_trim(0);
  }

  static void OnTlsRefresh(evutil_socket_t, short, void* self) {
    static_cast<Impl*>(self)->tls_->Refresh();
  }

  static void OnResumeAccept(evutil_socket_t, short, void* self) {
    auto* s = static_cast<Impl*>(self);
    if (!s->stopping_) evconnlistener_enable(s->listener_);
  }

  static void OnEvent(bufferevent*, short what, void* arg) {
    auto* conn = static_cast<Conn*>(arg);
    Impl* s = conn->server;
    if (what & BEV_EVENT_CONNECTED) {
      s->Handshaken(conn);
      return;
    }
    if (conn->state == Conn::kHandshake && (what & BEV_EVENT_ERROR)) {
      // Not one of ours (no certificate, another CA's): the handshake failed.
      const std::string why = nudge::BufferEventSslErrors(conn->bev);
      s->Refused(conn, absl::UnauthenticatedError(absl::StrCat(
                           "TLS handshake failed: ", why.empty() ? "connection closed" : why)));
      s->FreeConn(conn);
      return;
    }
    nudge::SslErrors();  // clear the queue for the next connection
    s->FreeConn(conn);   // closed, timed out or broken
  }

  void Handshaken(Conn* conn) {
    SSL* ssl = bufferevent_openssl_get_ssl(conn->bev);
    auto peer = nudge::PeerOf(ssl);
    absl::Status refusal;
    if (!peer.ok()) {
      refusal = peer.status();
    } else if (absl::Status revoked = tls_->CheckRevoked(ssl); !revoked.ok()) {
      refusal = revoked;
    } else if (peer->role != "agent" || !inventory::IsUuid(peer->name)) {
      refusal = absl::PermissionDeniedError(absl::StrCat(
          "only registered agents hold the nudge channel; the certificate is ", peer->ToString()));
    }
    if (!refusal.ok()) {
      Refused(conn, refusal);
      conn->state = Conn::kHello;  // TLS is up: the goodbye can say why
      Goodbye(conn, std::string(refusal.message()), /*retry=*/false);
      return;
    }
    conn->id = peer->name;
    conn->state = Conn::kHello;
  }

  static void OnRead(bufferevent* bev, void* arg) {
    auto* conn = static_cast<Conn*>(arg);
    Impl* s = conn->server;
    evbuffer* in = bufferevent_get_input(bev);
    while (conn->state != Conn::kClosing) {
      const size_t have = std::min(evbuffer_get_length(in), nudge::kMaxFrameBytes + 2);
      if (have < 2) return;
      const unsigned char* data = evbuffer_pullup(in, static_cast<ev_ssize_t>(have));
      v1::NudgeFrame frame;
      size_t used = 0;
      absl::Status st = nudge::DecodeFrame(data, have, &frame, &used);
      if (!st.ok()) {
        s->Refused(conn, st);
        s->FreeConn(conn);  // no goodbye to a peer that does not speak the protocol
        return;
      }
      if (used == 0) return;
      evbuffer_drain(in, used);
      if (!s->Received(conn, frame)) return;
    }
    evbuffer_drain(in, evbuffer_get_length(in));  // closing: ignore the rest
  }

  // False once the connection is freed.
  bool Received(Conn* conn, const v1::NudgeFrame& frame) {
    switch (conn->state) {
      case Conn::kHello:
        if (frame.body_case() != v1::NudgeFrame::kHello) {
          Refused(conn, absl::InvalidArgumentError("the first frame must be a hello"));
          FreeConn(conn);
          return false;
        }
        conn->state = Conn::kAuthorizing;
        // The peer has done its part: the lookup may take a while (a fleet
        // reconnecting at once is looked up in batches) and always answers.
        event_free(conn->deadline);
        conn->deadline = nullptr;
        // Nothing is read while the client is looked up.
        bufferevent_disable(conn->bev, EV_READ);
        hooks_.authorize(conn->id, [this, serial = conn->serial,
                                    held = frame.hello().policy_version()](absl::Status st) {
          Enqueue(Command{Command::kAuthorized, {}, {}, held, serial, std::move(st)});
        });
        return true;
      case Conn::kHeld:
        if (frame.body_case() == v1::NudgeFrame::kPing) {
          if (evbuffer_get_length(bufferevent_get_output(conn->bev)) > kMaxOutputBytes) {
            Refused(conn, absl::ResourceExhaustedError("pings without reading the pongs"));
            FreeConn(conn);
            return false;
          }
          v1::NudgeFrame pong;
          pong.mutable_pong();
          Send(conn, pong);
        }
        if (frame.body_case() == v1::NudgeFrame::kReports && hooks_.report) {
          if (conn->reports_in_flight) {
            Refused(conn, absl::InvalidArgumentError("reports sent before the last was acked"));
            FreeConn(conn);
            return false;
          }
          conn->reports_in_flight = true;
          hooks_.report(
              conn->id, frame.reports(),
              [this, serial = conn->serial](absl::StatusOr<int64_t> acked) {
                Enqueue(Command{
                    Command::kAcked, {}, {}, {}, serial, acked.status(), acked.ok() ? *acked : 0});
              });
        }
        return true;  // anything else: ignored (newer clients)
      default:
        return true;
    }
  }

  // Reports of a channel spooled (or refused: the channel ends saying why).
  void Acked(uint64_t serial, const absl::Status& st, int64_t seq) {
    auto it = conns_.find(serial);
    if (it == conns_.end()) return;  // gone meanwhile: the agent sends them again
    Conn* conn = it->second;
    conn->reports_in_flight = false;
    if (conn->state != Conn::kHeld) return;
    if (!st.ok()) {
      Refused(conn, st);
      Goodbye(conn, std::string(st.message()), /*retry=*/true);
      return;
    }
    v1::NudgeFrame ack;
    ack.mutable_acked()->set_acknowledged_through_seq(seq);
    Send(conn, ack);
    absl::MutexLock lock(&mu_);
    ++counts_.reports_received;
  }

  // `held_version`: of the policy the client's hello said it holds.
  void Authorized(uint64_t serial, const absl::Status& st, const std::string& held_version) {
    auto it = conns_.find(serial);
    if (it == conns_.end()) return;  // gone meanwhile
    Conn* conn = it->second;
    if (conn->state != Conn::kAuthorizing) return;
    if (!st.ok()) {
      Refused(conn, st);
      Goodbye(conn, std::string(st.message()), /*retry=*/false);
      return;
    }
    Conn* older = nullptr;
    {
      absl::MutexLock lock(&mu_);
      Conn*& slot = held_[conn->id];
      older = slot;
      slot = conn;
    }
    if (hooks_.presence) hooks_.presence(conn->id, true);
    if (older) {
      // The older connection is usually half-open (the agent's network
      // changed); told goodbye, it is no longer the one nudges go to.
      older->id.clear();
      Goodbye(older, "replaced by a newer connection of this client", /*retry=*/false);
    }
    conn->state = Conn::kHeld;
    ++churn_since_trim_;
    const timeval read_timeout{3 * options_.keepalive_s, 0};
    const timeval write_timeout{60, 0};
    bufferevent_set_timeouts(conn->bev, &read_timeout, &write_timeout);
    bufferevent_enable(conn->bev, EV_READ);

    v1::NudgeFrame welcome;
    welcome.mutable_welcome()->set_keepalive_seconds(options_.keepalive_s);
    if (auto policy = hooks_.policy(conn->id)) {
      welcome.mutable_welcome()->set_policy_version(policy->version());
      if (policy->version() != held_version && policy->ByteSizeLong() <= kMaxInlinePolicyBytes) {
        *welcome.mutable_welcome()->mutable_policy() = std::move(*policy);
      }
    }
    Send(conn, welcome);
    uint32_t missed = 0;
    if (auto p = pending_.find(conn->id); p != pending_.end()) {
      missed = p->second;
      pending_.erase(p);
    }
    if (hooks_.full_requested(conn->id)) missed |= 1u << v1::NOTIFICATION_KIND_FULL_INVENTORY;
    for (int kind = 1; kind < 32; ++kind) {
      if (!(missed & (1u << kind))) continue;
      v1::NudgeFrame nudge;
      nudge.mutable_nudge()->set_kind(static_cast<v1::NotificationKind>(kind));
      Send(conn, nudge);
    }
  }

  void Send(Conn* conn, const v1::NudgeFrame& frame) {
    std::string bytes;
    if (!nudge::EncodeFrame(frame, &bytes).ok()) return;
    bufferevent_write(conn->bev, bytes.data(), bytes.size());
  }

  // Says why, then closes once the goodbye is written (or its write times out).
  void Goodbye(Conn* conn, const std::string& reason, bool retry) {
    if (conn->state == Conn::kClosing) return;
    if (conn->state == Conn::kHandshake) {  // no TLS yet to say it over
      FreeConn(conn);
      return;
    }
    Unhold(conn);
    conn->state = Conn::kClosing;
    v1::NudgeFrame bye;
    bye.mutable_goodbye()->set_reason(reason.substr(0, 1000));
    bye.mutable_goodbye()->set_retry(retry);
    Send(conn, bye);
    if (evbuffer_get_length(bufferevent_get_output(conn->bev)) == 0) {
      FreeConn(conn);  // nothing to flush (no write callback would come)
      return;
    }
    bufferevent_disable(conn->bev, EV_READ);
    const timeval t{5, 0};
    bufferevent_set_timeouts(conn->bev, nullptr, &t);
  }

  static void OnWritten(bufferevent* bev, void* arg) {
    auto* conn = static_cast<Conn*>(arg);
    if (conn->state == Conn::kClosing && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
      conn->server->FreeConn(conn);
    }
  }

  void Refused(Conn* conn, const absl::Status& why) {
    absl::MutexLock lock(&mu_);
    ++counts_.refused;
    if (refused_log_.Allow()) {
      LogWarning("mp.nudge_refused", {{"client", conn->id.empty() ? "?" : conn->id},
                                      {"error", why},
                                      {"refused_total", counts_.refused}});
    }
  }

  void Unhold(Conn* conn) {
    if (conn->id.empty()) return;
    absl::MutexLock lock(&mu_);
    auto it = held_.find(conn->id);
    if (it == held_.end() || it->second != conn) return;
    held_.erase(it);
    if (hooks_.presence) hooks_.presence(conn->id, false);
  }

  void FreeConn(Conn* conn, bool erase = true) {
    Unhold(conn);
    if (erase) conns_.erase(conn->serial);
    bufferevent_free(conn->bev);  // closes the socket, frees the SSL
    if (conn->deadline) event_free(conn->deadline);
    delete conn;
    --open_;
    ++churn_since_trim_;
  }

  const Options options_;
  const Hooks hooks_;
  std::unique_ptr<nudge::ServerTls> tls_;
  event_base* base_ = nullptr;
  event* wake_ = nullptr;
  event* resume_accept_ = nullptr;
  evconnlistener* listener_ = nullptr;
  std::string bound_;
  std::thread thread_;

  // The loop thread's own.
  std::unordered_map<uint64_t, Conn*> conns_;
  std::unordered_map<std::string, uint32_t> pending_;  // kinds missed, by client
  uint64_t next_serial_ = 0;
  bool stopping_ = false;
  std::atomic<int64_t> open_{0};  // connections, in any state
  int64_t churn_since_trim_ = 0;  // handshakes and closes since the last trim
  event* trim_ = nullptr;
  event* tls_refresh_ = nullptr;  // tls_->Refresh() every tls.refresh_seconds

  absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<Command> commands_ ABSL_GUARDED_BY(mu_);
  // Written by the loop thread, read by any.
  std::unordered_map<std::string, Conn*> held_ ABSL_GUARDED_BY(mu_);
  Counts counts_ ABSL_GUARDED_BY(mu_);
  LogLimiter full_log_ ABSL_GUARDED_BY(mu_);
  LogLimiter refused_log_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<std::unique_ptr<NudgeServer>> NudgeServer::Start(Options options, Hooks hooks) {
  auto impl = std::make_unique<Impl>(std::move(options), std::move(hooks));
  if (absl::Status s = impl->Start(); !s.ok()) return s;
  return std::unique_ptr<NudgeServer>(new NudgeServer(std::move(impl)));
}

NudgeServer::NudgeServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
NudgeServer::~NudgeServer() = default;
void NudgeServer::Stop(const std::string& reason) { impl_->Stop(reason); }
const std::string& NudgeServer::bound_address() const { return impl_->bound_address(); }
void NudgeServer::Push(std::vector<std::string> ids, v1::NotificationKind kind) {
  impl_->Push(std::move(ids), kind);
}
void NudgeServer::Close(const std::string& id, const std::string& reason) {
  impl_->Close(id, reason);
}
std::vector<std::string> NudgeServer::Ids() { return impl_->Ids(); }
int64_t NudgeServer::held() { return impl_->counts().held; }
NudgeServer::Counts NudgeServer::counts() { return impl_->counts(); }

}  // namespace strata::mp
