#include "common/nudge/tls_context.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "absl/strings/str_cat.h"
#include "common/base/files.h"
#include "common/base/log.h"
#include "common/base/status.h"

namespace strata::nudge {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};

std::unique_ptr<BIO, BioFree> MemBio(const std::string& pem) {
  return std::unique_ptr<BIO, BioFree>(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

absl::Status Failed(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("nudge channel TLS: ", what, ": ", SslErrors()));
}

absl::Status TrustCa(SSL_CTX* ctx, const std::string& ca_pem) {
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  auto bio = MemBio(ca_pem);
  int added = 0;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    const int ok = X509_STORE_add_cert(store, cert);
    X509_free(cert);
    if (!ok) return Failed("the CA certificate cannot be used");
    ++added;
  }
  ERR_clear_error();  // the end of the PEM
  if (added == 0) return absl::InvalidArgumentError("nudge channel TLS: no CA certificate");
  return absl::OkStatus();
}

absl::Status UseCertificate(SSL_CTX* ctx, const std::string& chain_pem,
                            const std::string& key_pem) {
  auto bio = MemBio(chain_pem);
  X509* leaf = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
  if (leaf == nullptr) return Failed("the certificate cannot be parsed");
  const int ok = SSL_CTX_use_certificate(ctx, leaf);
  X509_free(leaf);
  if (!ok) return Failed("the certificate cannot be used");
  while (X509* extra = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    if (!SSL_CTX_add0_chain_cert(ctx, extra)) {
      X509_free(extra);
      return Failed("the certificate chain cannot be used");
    }
  }
  ERR_clear_error();
  auto key_bio = MemBio(key_pem);
  EVP_PKEY* key = PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr);
  if (key == nullptr) return Failed("the private key cannot be parsed");
  const int key_ok = SSL_CTX_use_PrivateKey(ctx, key);
  EVP_PKEY_free(key);
  if (!key_ok || !SSL_CTX_check_private_key(ctx)) {
    return Failed("the private key does not match the certificate");
  }
  return absl::OkStatus();
}

absl::StatusOr<SslCtx> NewContext(const SSL_METHOD* method) {
  SslCtx ctx(SSL_CTX_new(method));
  if (!ctx) return Failed("SSL_CTX_new");
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS);
  return ctx;
}

}  // namespace

std::string SslErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    absl::StrAppend(&out, out.empty() ? "" : "; ", buf);
  }
  return out;
}

absl::StatusOr<SslCtx> MakeServerContext(const v1::TlsConfig& tls) {
  ChannelPem pem;
  ASSIGN_OR_RETURN(pem.ca, ReadFile(tls.ca_file()));
  ASSIGN_OR_RETURN(pem.cert_chain, ReadFile(tls.cert_file()));
  ASSIGN_OR_RETURN(pem.key, ReadFile(tls.key_file()));
  ASSIGN_OR_RETURN(SslCtx ctx, NewContext(TLS_server_method()));
  RETURN_IF_ERROR(TrustCa(ctx.get(), pem.ca));
  RETURN_IF_ERROR(UseCertificate(ctx.get(), pem.cert_chain, pem.key));
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  // Stateless TLS 1.3 tickets (OpenSSL's default); resumption with client
  // certificates needs a session id context. No server-side session cache:
  // it would hold memory per client.
  static const unsigned char kContext[] = "strata-nudge";
  SSL_CTX_set_session_id_context(ctx.get(), kContext, sizeof(kContext) - 1);
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx.get(), 1);
  return ctx;
}

std::string ServerTls::Stamp() const {
  return TlsFilesStamp(tls_) + "|" + FileStamp(tls_.crl_file());
}

absl::StatusOr<std::unique_ptr<ServerTls>> ServerTls::Open(const v1::TlsConfig& tls) {
  std::unique_ptr<ServerTls> out(new ServerTls(tls));
  out->stamp_ = out->Stamp();  // before reading: a renewal meanwhile is seen next time
  ASSIGN_OR_RETURN(out->ctx_, MakeServerContext(tls));
  ASSIGN_OR_RETURN(out->revocations_, RevocationList::Open(tls.crl_file(), tls.ca_file()));
  return out;
}

bool ServerTls::Refresh() {
  const std::string stamp = Stamp();
  if (stamp == stamp_) return false;
  stamp_ = stamp;
  auto ctx = MakeServerContext(tls_);
  if (!ctx.ok()) {
    LogWarning("mp.nudge_tls_unusable", {{"error", ctx.status()}, {"kept", "the last good files"}});
    return false;
  }
  ctx_ = std::move(*ctx);
  LogInfo("mp.nudge_tls_renewed", {{"cert", tls_.cert_file()}});
  return true;
}

absl::Status ServerTls::CheckRevoked(SSL* ssl) {
  RETURN_IF_ERROR(revocations_->CheckCertificate(SSL_get0_peer_certificate(ssl)));
  STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl);
  for (int i = 0; chain != nullptr && i < sk_X509_num(chain); ++i) {
    RETURN_IF_ERROR(revocations_->CheckCertificate(sk_X509_value(chain, i)));
  }
  return absl::OkStatus();
}

absl::StatusOr<SslCtx> MakeClientContext(const ChannelPem& pem) {
  ASSIGN_OR_RETURN(SslCtx ctx, NewContext(TLS_client_method()));
  RETURN_IF_ERROR(TrustCa(ctx.get(), pem.ca));
  if (!pem.cert_chain.empty()) RETURN_IF_ERROR(UseCertificate(ctx.get(), pem.cert_chain, pem.key));
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
  return ctx;
}

absl::StatusOr<PeerIdentity> PeerOf(SSL* ssl) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr) return absl::UnauthenticatedError("no peer certificate");
  if (SSL_get_verify_result(ssl) != X509_V_OK) {
    return absl::UnauthenticatedError(
        absl::StrCat("peer certificate not verified: ",
                     X509_verify_cert_error_string(SSL_get_verify_result(ssl))));
  }
  return IdentityFromCert(cert);
}

}  // namespace strata::nudge
