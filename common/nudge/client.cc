#include "common/nudge/client.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sys/un.h>

#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/nudge/frame.h"
#include "common/nudge/tls_context.h"

namespace strata::nudge {
namespace {

constexpr int kConnectTimeoutS = 15;
constexpr int kPongGraceS = 30;

}  // namespace

absl::Status ResolveAddress(const std::string& address, SocketAddress* out) {
  *out = SocketAddress();
  if (absl::StartsWith(address, "unix:")) {
    const std::string path = address.substr(5);
    sockaddr_un* un = reinterpret_cast<sockaddr_un*>(&out->storage);
    if (path.empty() || path.size() >= sizeof(un->sun_path)) {
      return absl::InvalidArgumentError(absl::StrCat("nudge address ", address,
                                                     ": a unix socket path of 1 to ",
                                                     sizeof(un->sun_path) - 1, " bytes"));
    }
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, path.data(), path.size());
    out->length = static_cast<int>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
    out->host = "localhost";
    return absl::OkStatus();
  }
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      port <= 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("nudge address ", address, ": expected host:port or unix:/path"));
  }
  std::string host = address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
  if (rc != 0 || found == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("nudge address ", address, ": cannot resolve ", host, ": ", gai_strerror(rc)));
  }
  std::memcpy(&out->storage, found->ai_addr, found->ai_addrlen);
  out->length = static_cast<int>(found->ai_addrlen);
  freeaddrinfo(found);
  out->host = host;
  return absl::OkStatus();
}

std::string BufferEventSslErrors(bufferevent* bev) {
  std::string out;
  while (unsigned long e = bufferevent_get_openssl_error(bev)) {
    if (ERR_GET_LIB(e) == 0) continue;  // libevent's own marker, not an OpenSSL error
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    absl::StrAppend(&out, out.empty() ? "" : "; ", buf);
  }
  return out;
}

Connection::Connection(event_base* base, SSL_CTX* ctx, Handlers handlers)
    : base_(base),
      ctx_(ctx),
      handlers_(std::move(handlers)),
      rng_(static_cast<unsigned>(reinterpret_cast<uintptr_t>(this) ^ std::random_device{}())) {}

Connection::~Connection() { Free(); }

void Connection::Free() {
  if (ping_) {
    event_free(ping_);
    ping_ = nullptr;
  }
  if (bev_) {
    bufferevent_free(bev_);  // closes the socket and frees the SSL
    bev_ = nullptr;
    ssl_ = nullptr;
  }
}

absl::Status Connection::Start(const std::string& address, const v1::NudgeHello& hello,
                               SSL_SESSION* resume) {
  SocketAddress to;
  if (absl::Status s = ResolveAddress(address, &to); !s.ok()) return s;
  hello_ = hello;
  ssl_ = SSL_new(ctx_);
  if (ssl_ == nullptr) return absl::InternalError("SSL_new: " + SslErrors());
  // The MP's certificate must name the host dialled (as on the gRPC path).
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
  in6_addr ip;
  if (inet_pton(AF_INET, to.host.c_str(), &ip) == 1 ||
      inet_pton(AF_INET6, to.host.c_str(), &ip) == 1) {
    X509_VERIFY_PARAM_set1_ip_asc(param, to.host.c_str());
  } else {
    X509_VERIFY_PARAM_set1_host(param, to.host.c_str(), 0);
  }
  if (resume) SSL_set_session(ssl_, resume);
  bev_ = bufferevent_openssl_socket_new(base_, -1, ssl_, BUFFEREVENT_SSL_CONNECTING,
                                        BEV_OPT_CLOSE_ON_FREE);
  if (bev_ == nullptr) {
    SSL_free(ssl_);
    ssl_ = nullptr;
    return absl::InternalError("bufferevent_openssl_socket_new failed");
  }
  bufferevent_openssl_set_allow_dirty_shutdown(bev_, 1);
  bufferevent_setcb(bev_, &Connection::OnRead, nullptr, &Connection::OnEvent, this);
  timeval t{kConnectTimeoutS, 0};
  bufferevent_set_timeouts(bev_, &t, &t);
  bufferevent_enable(bev_, EV_READ | EV_WRITE);
  if (bufferevent_socket_connect(bev_, reinterpret_cast<sockaddr*>(&to.storage), to.length) != 0) {
    Free();
    return absl::UnavailableError(absl::StrCat("cannot connect to ", address));
  }
  return absl::OkStatus();
}

SSL_SESSION* Connection::Session() const { return ssl_ ? SSL_get1_session(ssl_) : nullptr; }

bool Connection::resumed() const { return ssl_ && SSL_session_reused(ssl_); }

void Connection::Fail(const absl::Status& status) {
  if (done_) return;
  done_ = true;
  Free();
  // A copy: the handler may delete this Connection, and with it handlers_.
  auto closed = handlers_.closed;
  if (closed) closed(status);
}

bool Connection::Send(const v1::NudgeFrame& frame) {
  std::string bytes;
  if (!EncodeFrame(frame, &bytes).ok() || !bev_) return false;
  bufferevent_write(bev_, bytes.data(), bytes.size());
  return true;
}

bool Connection::SendReports(const v1::ReportRequest& reports) {
  if (!welcomed_ || done_) return false;
  v1::NudgeFrame frame;
  *frame.mutable_reports() = reports;
  return Send(frame);
}

void Connection::SchedulePing() {
  if (!ping_) ping_ = evtimer_new(base_, &Connection::OnPingDue, this);
  // Between 3/4 of the keep-alive and all of it: pings of a fleet spread out.
  std::uniform_int_distribution<int> ms(keepalive_s_ * 750, keepalive_s_ * 1000);
  const int wait = ms(rng_);
  timeval t{wait / 1000, (wait % 1000) * 1000};
  evtimer_add(ping_, &t);
}

void Connection::OnPingDue(int, short, void* self) {
  auto* c = static_cast<Connection*>(self);
  v1::NudgeFrame ping;
  ping.mutable_ping();
  c->Send(ping);
  c->SchedulePing();
}

void Connection::OnEvent(bufferevent*, short what, void* self) {
  auto* c = static_cast<Connection*>(self);
  if (what & BEV_EVENT_CONNECTED) {
    auto peer = PeerOf(c->ssl_);
    if (!peer.ok() || peer->role != "mp") {
      c->Fail(absl::UnauthenticatedError(
          peer.ok() ? absl::StrCat("the nudge server is ", peer->ToString(), ", not an MP")
                    : std::string(peer.status().message())));
      return;
    }
    v1::NudgeFrame hello;
    *hello.mutable_hello() = c->hello_;
    c->Send(hello);
    return;
  }
  if (what & BEV_EVENT_TIMEOUT) {
    c->Fail(absl::DeadlineExceededError(c->welcomed_ ? "the MP did not answer a keep-alive"
                                                     : "no welcome from the MP in time"));
    return;
  }
  const std::string why = BufferEventSslErrors(c->bev_);
  if (what & BEV_EVENT_EOF) {
    c->Fail(absl::UnavailableError("the MP closed the nudge channel"));
  } else {
    const int err = EVUTIL_SOCKET_ERROR();
    c->Fail(absl::UnavailableError(
        absl::StrCat("nudge channel: ", why.empty() ? evutil_socket_error_to_string(err) : why)));
  }
}

void Connection::OnRead(bufferevent* bev, void* self) {
  auto* c = static_cast<Connection*>(self);
  evbuffer* in = bufferevent_get_input(bev);
  while (true) {
    const size_t have = evbuffer_get_length(in);
    if (have < 2) return;
    const unsigned char* data =
        evbuffer_pullup(in, static_cast<ev_ssize_t>(std::min(have, kMaxFrameBytes + 2)));
    v1::NudgeFrame frame;
    size_t used = 0;
    absl::Status s = DecodeFrame(data, std::min(have, kMaxFrameBytes + 2), &frame, &used);
    if (!s.ok()) {
      c->Fail(absl::DataLossError(absl::StrCat("from the MP: ", s.message())));
      return;
    }
    if (used == 0) return;
    evbuffer_drain(in, used);
    switch (frame.body_case()) {
      case v1::NudgeFrame::kWelcome: {
        c->welcomed_ = true;
        if (frame.welcome().keepalive_seconds() > 0) {
          c->keepalive_s_ = std::min(frame.welcome().keepalive_seconds(), 86400);
        }
        timeval t{c->keepalive_s_ + kPongGraceS, 0};
        bufferevent_set_timeouts(bev, &t, nullptr);
        c->SchedulePing();
        if (c->handlers_.welcome) c->handlers_.welcome(frame.welcome());
        break;
      }
      case v1::NudgeFrame::kNudge:
        if (c->welcomed_ && c->handlers_.nudge) c->handlers_.nudge(frame.nudge());
        break;
      case v1::NudgeFrame::kAcked:
        if (c->welcomed_ && c->handlers_.acked)
          c->handlers_.acked(frame.acked().acknowledged_through_seq());
        break;
      case v1::NudgeFrame::kGoodbye: {
        const auto& g = frame.goodbye();
        const std::string why = absl::StrCat("the MP closed the nudge channel: ", g.reason());
        c->Fail(g.retry() ? absl::UnavailableError(why) : absl::PermissionDeniedError(why));
        return;
      }
      default:  // pong (the read timeout is what it resets), anything newer
        break;
    }
    if (c->done_) return;
  }
}

}  // namespace strata::nudge
