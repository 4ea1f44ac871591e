#pragma once

// OpenSSL contexts of the nudge channel: TLS 1.3 only, both ends verified
// against the hierarchy root CA (as gRPC does on the request path), idle
// read and write buffers released (SSL_MODE_RELEASE_BUFFERS: ~34 KB less
// per held idle connection), and session resumption (TLS 1.3 tickets: a
// reconnecting fleet skips the full handshake).

#include <memory>
#include <string>

#include <openssl/ssl.h>

#include "absl/status/statusor.h"
#include "common/net/revocation.h"
#include "common/net/tls.h"
#include "strata/v1/config.pb.h"

namespace strata::nudge {

struct SslCtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
using SslCtx = std::unique_ptr<SSL_CTX, SslCtxFree>;

// A server context presenting tls.cert_file/key_file; a client must present
// a certificate that chains to tls.ca_file, or the handshake fails.
absl::StatusOr<SslCtx> MakeServerContext(const v1::TlsConfig& tls);

// A client context trusting pem.ca and presenting pem.cert_chain/key (both
// empty: no client certificate, which servers refuse; for tests).
absl::StatusOr<SslCtx> MakeClientContext(const ChannelPem& pem);

// The nudge server's TLS, owned by its event loop (not thread-safe): the
// context new connections use, made again when the certificate, key, CA
// or CRL files change, and the CRL check of a finished handshake.
class ServerTls {
 public:
  static absl::StatusOr<std::unique_ptr<ServerTls>> Open(const v1::TlsConfig& tls);
  SSL_CTX* ctx() const { return ctx_.get(); }
  // A new context from changed files (a connection keeps a reference to its
  // own). The CRL counts: a new context has new session-ticket keys, so no
  // agent resumes a session made before a revocation (a resumed session
  // brings no chain to check). Unusable files are logged, the last good
  // context kept. Returns whether it made one.
  bool Refresh();
  // Unauthenticated when the peer's certificate, or one in the chain it sent
  // (an agent's: its site's issuing CA), is in tls.crl_file.
  absl::Status CheckRevoked(SSL* ssl);

 private:
  ServerTls(const v1::TlsConfig& tls) : tls_(tls) {}
  std::string Stamp() const;

  const v1::TlsConfig tls_;
  SslCtx ctx_;
  std::string stamp_;  // of the files ctx_ was made from
  std::shared_ptr<RevocationList> revocations_;
};

// The verified peer of a finished handshake, or why not.
absl::StatusOr<PeerIdentity> PeerOf(SSL* ssl);

// OpenSSL's queued errors as text (and clears them); "" when none.
std::string SslErrors();

}  // namespace strata::nudge
