#pragma once

// gRPC over mutual TLS: server and channel builders from PEM files, and the
// peer identity taken from the client certificate.
//
// Certificates name what their holder is: subject OU = role ("site", "mp",
// "agent", "admin"), CN = the name (site code, client id, admin name).
// deploy/pki.sh makes a development hierarchy of them.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/base/files.h"  // ReadFile
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_context.h"
#include "strata/v1/config.pb.h"

struct x509_st;  // OpenSSL's X509
typedef struct grpc_ssl_session_cache grpc_ssl_session_cache;

namespace strata {

struct PeerIdentity {
  std::string role;  // subject OU
  std::string name;  // subject CN
  std::string ToString() const { return role + "/" + name; }
};

// Server credentials that verify the client's certificate against the CA
// and refuse, in the handshake, a chain with a certificate listed in
// tls.crl_file (common/net/revocation.h). The certificate, key and CA files
// are re-read every RefreshSeconds(): replace them by rename, key first (or
// keep the key: `strata-pki renew` re-certifies the same key).
// With `require_client_certificate` (every server but the management point)
// a client without one fails the TLS handshake: it never reaches a service,
// health or reflection. Without it (the MP, whose agents register before
// they hold a certificate), a certificate is verified when presented and
// handlers must call PeerFromContext(), which refuses a peer without one
// (Unauthenticated).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const v1::TlsConfig& tls, bool require_client_certificate = true);

// How often servers look for renewed TLS files (tls.refresh_seconds, 10 by
// default).
unsigned RefreshSeconds(const v1::TlsConfig& tls);
// The stamps (common/base/files.h FileStamp) of the CA, certificate and key
// files: a client with a long-lived connection (a site's link to its
// parent, an MP's or DP's to its site) compares it now and then and, when
// it changed, reconnects with a channel made from the new files.
std::string TlsFilesStamp(const v1::TlsConfig& tls);

// Channel credentials presenting cert_file/key_file and trusting ca_file.
// An empty cert_file makes a channel with no client certificate (tests only).
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const v1::TlsConfig& tls);

struct ChannelOptions {
  int64_t max_message_bytes = 16 << 20;
  int reconnect_max_backoff_ms = 5000;
  // HTTP/2 keepalive pings: site links ping often to notice a dead peer
  // fast; agents (tens of thousands per MP) ping less.
  int keepalive_ms = 10000;
  // A connection of its own rather than one shared with other channels to
  // the same target (gRPC's global subchannel pool): simulated agents.
  bool own_connection = false;
  // A channel without calls for this long lets its connection go (0: gRPC's
  // default, 30 min). Agents hold the nudge channel, not gRPC connections.
  int idle_timeout_ms = 0;
  // Resumes TLS sessions (tickets) of earlier connections: a reconnect
  // skips the full handshake. Not owned; outlives the channel.
  grpc_ssl_session_cache* session_cache = nullptr;
};

// PEM contents (not paths) for a channel: the CA to trust, and the client
// certificate chain and key (both empty: no client certificate).
struct ChannelPem {
  std::string ca;
  std::string cert_chain;
  std::string key;
};

// A channel to `address` ("host:port" or "unix:/path"). Server certificates
// must name "localhost" (unix sockets) or the host.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& address,
                                                           const v1::TlsConfig& tls,
                                                           const ChannelOptions& options = {});
// The same with PEM held in memory.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address, const ChannelPem& pem,
                                           const ChannelOptions& options = {});

struct ServerOptions {
  int64_t max_message_bytes = 16 << 20;
  int keepalive_ms = 10000;  // server-initiated pings on idle connections
  // A connection whose TLS handshake has not finished by then is closed
  // (gRPC's default, 120 s, lets a reconnect storm pile up half-open
  // connections until the process runs out of files).
  int handshake_timeout_ms = 20000;
  // A connection with no call for this long is closed by the server (0:
  // never). The MP's agents hold the nudge channel, not gRPC connections.
  int max_connection_idle_ms = 0;
  // See MakeServerCredentials: only the management point asks without
  // requiring.
  bool require_client_certificate = true;
};

// Builds and starts a server on `listen_address` (port 0 picks a free port).
// `bound_address` receives the address clients can dial.
absl::StatusOr<std::unique_ptr<grpc::Server>> StartServer(
    const std::string& listen_address, const v1::TlsConfig& tls,
    const std::vector<grpc::Service*>& services, const ServerOptions& options,
    std::string* bound_address);

// The verified identity of the caller, or Unauthenticated.
absl::StatusOr<PeerIdentity> PeerFromContext(const grpc::ServerContextBase& context);
// The identity a PEM certificate names (subject OU and CN).
absl::StatusOr<PeerIdentity> IdentityFromPem(const std::string& pem);
// The same for a parsed (and already verified) certificate, e.g. the peer's
// of a TLS connection outside gRPC (the nudge channel).
absl::StatusOr<PeerIdentity> IdentityFromCert(x509_st* cert);

// gRPC health of the server behind `channel`, the server as a whole: OK
// when it answers SERVING, FailedPrecondition when it answers otherwise,
// else the call's status (Unavailable: unreachable, or the TLS handshake
// refused). Waits at most `timeout_ms`.
absl::Status CheckServing(const std::shared_ptr<grpc::Channel>& channel, int timeout_ms);

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

// Writes `address` (and a newline) to `path` atomically (a temporary file,
// then rename), for scripts and tests waiting for a server to serve. An
// empty path writes nothing.
void WriteAddressFile(const std::string& path, const std::string& address);

}  // namespace strata
