#pragma once

// The agent's end of the nudge channel: one connection, driven by a libevent
// loop the caller runs (the agent runs one for its single channel; the
// client simulator one for thousands). It connects (TCP or unix socket),
// does the TLS 1.3 handshake (resuming an earlier session when given one),
// checks that the server is a management point, says hello, then hands on
// the welcome and each nudge, and pings every keep-alive the MP asked for
// (jittered, so that a fleet does not ping in step). A silent MP (no pong
// within 30 s of a ping's due time) ends the connection.
//
// Not thread-safe: everything happens on the loop's thread, including the
// destructor.

#include <functional>
#include <random>
#include <string>

#include <openssl/ssl.h>
#include <sys/socket.h>

#include "absl/status/status.h"
#include "strata/v1/client.pb.h"

struct event_base;
struct bufferevent;
struct event;

namespace strata::nudge {

class Connection {
 public:
  struct Handlers {
    std::function<void(const v1::NudgeWelcome&)> welcome;
    std::function<void(const v1::Nudge&)> nudge;
    // The MP spooled the reports sent with SendReports through this seq.
    std::function<void(int64_t)> acked;
    // Once, when the connection ends for any reason but the destructor
    // (refused, closed by the MP with a goodbye, timed out). The Connection
    // may be destroyed from inside it.
    std::function<void(const absl::Status&)> closed;
  };

  Connection(event_base* base, SSL_CTX* ctx, Handlers handlers);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Starts connecting to `address` ("host:port" or "unix:/path"); `resume`
  // (may be null) is a session from an earlier connection to the same MP.
  // An address that cannot be resolved is an error here; everything later
  // arrives through the handlers.
  absl::Status Start(const std::string& address, const v1::NudgeHello& hello,
                     SSL_SESSION* resume = nullptr);

  // The session to resume the next connection with (a new reference the
  // caller frees with SSL_SESSION_free), or null.
  SSL_SESSION* Session() const;
  bool welcomed() const { return welcomed_; }
  // Sends small reports up (once welcomed; the frame at most
  // kMaxFrameBytes): false when they could not be sent. One batch at a time:
  // the next after `acked`.
  bool SendReports(const v1::ReportRequest& reports);
  // Whether the handshake resumed a session.
  bool resumed() const;

 private:
  static void OnRead(bufferevent* bev, void* self);
  static void OnEvent(bufferevent* bev, short what, void* self);
  static void OnPingDue(int fd, short what, void* self);
  void Fail(const absl::Status& status);
  bool Send(const v1::NudgeFrame& frame);
  void SchedulePing();
  void Free();

  event_base* const base_;
  SSL_CTX* const ctx_;
  const Handlers handlers_;
  bufferevent* bev_ = nullptr;
  SSL* ssl_ = nullptr;  // owned by bev_
  event* ping_ = nullptr;
  v1::NudgeHello hello_;
  int keepalive_s_ = 120;
  bool welcomed_ = false;
  bool done_ = false;
  std::minstd_rand rng_;
};

// Parses "unix:/path" or "host:port" ("[v6]:port") into a socket address;
// InvalidArgument when it cannot be.
struct SocketAddress {
  sockaddr_storage storage{};
  int length = 0;
  std::string host;  // "localhost" for unix sockets: the name certificates carry
};
absl::Status ResolveAddress(const std::string& address, SocketAddress* out);

// What OpenSSL said about a bufferevent_openssl's connection (libevent keeps
// its errors per bufferevent), "; "-separated; "" when nothing.
std::string BufferEventSslErrors(bufferevent* bev);

}  // namespace strata::nudge
