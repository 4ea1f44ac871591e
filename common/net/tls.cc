#include "common/net/tls.h"

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <chrono>
#include <future>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/net/revocation.h"
#include "grpc/grpc_security.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/auth_context.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_certificate_verifier.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "grpcpp/server_builder.h"

namespace strata {

void WriteAddressFile(const std::string& path, const std::string& address) {
  if (path.empty()) return;
  absl::Status s = WriteFileDurably(path, address + "\n", 0644);
  if (!s.ok()) LogWarning("address_file.failed", {{"error", s}});
}

namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, absl::string_view what) {
  if (path.empty())
    return absl::InvalidArgumentError(absl::StrCat("tls: no ", what, " file configured"));
  auto content = ReadFile(path);
  if (!content.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls: ", what, " file ", path, " cannot be read"));
  }
  if (!absl::StrContains(*content, "-----BEGIN")) {
    return absl::InvalidArgumentError(absl::StrCat("tls: ", what, " file ", path, " is not PEM"));
  }
  return content;
}

std::string SubjectEntry(X509_NAME* name, int nid) {
  int idx = X509_NAME_get_index_by_NID(name, nid, -1);
  if (idx < 0) return "";
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
  unsigned char* utf8 = nullptr;
  int len = ASN1_STRING_to_UTF8(&utf8, data);
  if (len < 0) return "";
  std::string out(reinterpret_cast<char*>(utf8), len);
  OPENSSL_free(utf8);
  return out;
}

}  // namespace

namespace {

// Refuses, at the end of the TLS handshake, a peer whose certificate chain
// names a revoked certificate (the chain itself was verified by then).
class RevocationVerifier : public grpc::experimental::ExternalCertificateVerifier {
 public:
  explicit RevocationVerifier(std::shared_ptr<RevocationList> list) : list_(std::move(list)) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)> /*callback*/, grpc::Status* sync_status) override {
    // The leaf, then what the peer sent with it (on a server, OpenSSL's
    // peer chain leaves the leaf out): an agent's issuing CA is checked too.
    grpc::string_ref leaf = request->peer_cert(), chain = request->peer_cert_full_chain();
    std::string pem(leaf.data(), leaf.size());
    pem.append(chain.data(), chain.size());
    absl::Status s = list_->CheckChain(pem);
    if (!s.ok()) LogWarning("tls.peer_revoked", {{"error", s}});
    *sync_status = ToGrpcStatus(s);
    return true;  // answered synchronously
  }
  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  std::shared_ptr<RevocationList> list_;
};

}  // namespace

unsigned RefreshSeconds(const v1::TlsConfig& tls) {
  return tls.refresh_seconds() > 0 ? tls.refresh_seconds() : 10;
}

std::string TlsFilesStamp(const v1::TlsConfig& tls) {
  return absl::StrCat(FileStamp(tls.ca_file()), "|", FileStamp(tls.cert_file()), "|",
                      FileStamp(tls.key_file()));
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const v1::TlsConfig& tls, bool require_client_certificate) {
  // Read once here for a clear error at start; the provider re-reads them.
  RETURN_IF_ERROR(ReadPem(tls.ca_file(), "CA").status());
  RETURN_IF_ERROR(ReadPem(tls.cert_file(), "certificate").status());
  RETURN_IF_ERROR(ReadPem(tls.key_file(), "key").status());
  ASSIGN_OR_RETURN(std::shared_ptr<RevocationList> revocations,
                   RevocationList::Open(tls.crl_file(), tls.ca_file()));
  // The files are watched: a renewed certificate (or CA bundle) is served
  // to new connections without a restart.
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      tls.key_file(), tls.cert_file(), tls.ca_file(), RefreshSeconds(tls));
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(require_client_certificate
                                    ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                    : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  options.set_certificate_verifier(
      grpc::experimental::ExternalCertificateVerifier::Create<RevocationVerifier>(
          std::move(revocations)));
  return grpc::experimental::TlsServerCredentials(options);
}

namespace {

absl::StatusOr<ChannelPem> ReadChannelPem(const v1::TlsConfig& tls) {
  ChannelPem pem;
  ASSIGN_OR_RETURN(pem.ca, ReadPem(tls.ca_file(), "CA"));
  if (!tls.cert_file().empty()) {
    ASSIGN_OR_RETURN(pem.cert_chain, ReadPem(tls.cert_file(), "certificate"));
    ASSIGN_OR_RETURN(pem.key, ReadPem(tls.key_file(), "key"));
  }
  return pem;
}

std::shared_ptr<grpc::ChannelCredentials> CredentialsFromPem(const ChannelPem& pem) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = pem.ca;
  options.pem_cert_chain = pem.cert_chain;
  options.pem_private_key = pem.key;
  return grpc::SslCredentials(options);
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const v1::TlsConfig& tls) {
  ASSIGN_OR_RETURN(ChannelPem pem, ReadChannelPem(tls));
  return CredentialsFromPem(pem);
}

namespace {

grpc::ChannelArguments ChannelArgs(const std::string& address, const ChannelOptions& options) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  args.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, options.keepalive_ms);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, options.reconnect_max_backoff_ms);
  // gRPC reads this argument as the shortest time a connection attempt
  // (TCP, TLS, the server's SETTINGS) may take, not as a backoff: at 100 ms,
  // a handshake with a busy MP timed out. 20 s is gRPC's default.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 20000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  if (options.own_connection) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  if (options.idle_timeout_ms > 0)
    args.SetInt(GRPC_ARG_CLIENT_IDLE_TIMEOUT_MS, options.idle_timeout_ms);
  if (options.session_cache) {
    grpc_arg arg = grpc_ssl_session_cache_create_channel_arg(options.session_cache);
    args.SetPointerWithVtable(arg.key, arg.value.pointer.p, arg.value.pointer.vtable);
  }
  if (absl::StartsWith(address, "unix:")) {
    args.SetSslTargetNameOverride("localhost");
  }
  return args;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& address,
                                                           const v1::TlsConfig& tls,
                                                           const ChannelOptions& options) {
  // Read once here for a clear error; the provider re-reads the files, so a
  // reconnect presents a renewed certificate without a new channel.
  ASSIGN_OR_RETURN(ChannelPem pem, ReadChannelPem(tls));
  grpc::experimental::TlsChannelCredentialsOptions creds;
  if (tls.cert_file().empty()) {
    creds.set_certificate_provider(
        std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(tls.ca_file(),
                                                                             RefreshSeconds(tls)));
  } else {
    creds.set_certificate_provider(
        std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
            tls.key_file(), tls.cert_file(), tls.ca_file(), RefreshSeconds(tls)));
    creds.watch_identity_key_cert_pairs();
  }
  creds.watch_root_certs();
  creds.set_verify_server_certs(true);
  return grpc::CreateCustomChannel(address, grpc::experimental::TlsCredentials(creds),
                                   ChannelArgs(address, options));
}

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address, const ChannelPem& pem,
                                           const ChannelOptions& options) {
  return grpc::CreateCustomChannel(address, CredentialsFromPem(pem), ChannelArgs(address, options));
}

absl::StatusOr<std::unique_ptr<grpc::Server>> StartServer(
    const std::string& listen_address, const v1::TlsConfig& tls,
    const std::vector<grpc::Service*>& services, const ServerOptions& options,
    std::string* bound_address) {
  auto creds = MakeServerCredentials(tls, options.require_client_certificate);
  if (!creds.ok()) return creds.status();
  if (absl::StartsWith(listen_address, "unix:")) {
    // A stale socket from a killed process would make the bind fail.
    std::string path = listen_address.substr(5);
    ::unlink(path.c_str());
  }
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen_address, *creds, &port);
  for (grpc::Service* s : services) builder.RegisterService(s);
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, options.keepalive_ms);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, options.handshake_timeout_ms);
  if (options.max_connection_idle_ms > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, options.max_connection_idle_ms);
  }
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", listen_address));
  }
  if (absl::StartsWith(listen_address, "unix:")) {
    *bound_address = listen_address;
  } else {
    if (port == 0) return absl::UnavailableError(absl::StrCat("cannot listen on ", listen_address));
    std::string host = listen_address.substr(0, listen_address.rfind(':'));
    if (host.empty() || host == "0.0.0.0" || host == "[::]") host = "localhost";
    *bound_address = absl::StrCat(host, ":", port);
  }
  return server;
}

absl::StatusOr<PeerIdentity> IdentityFromPem(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (cert == nullptr) return absl::UnauthenticatedError("peer certificate cannot be parsed");
  auto id = IdentityFromCert(cert);
  X509_free(cert);
  return id;
}

absl::StatusOr<PeerIdentity> IdentityFromCert(x509_st* cert) {
  X509_NAME* subject = X509_get_subject_name(cert);
  PeerIdentity id{SubjectEntry(subject, NID_organizationalUnitName),
                  SubjectEntry(subject, NID_commonName)};
  X509_NAME* issuer = X509_get_issuer_name(cert);
  const std::string issuer_ou = SubjectEntry(issuer, NID_organizationalUnitName);
  const std::string issuer_cn = SubjectEntry(issuer, NID_commonName);
  if (id.role.empty() || id.name.empty()) {
    return absl::UnauthenticatedError(
        "peer certificate does not name a Strata role (subject OU) and name (subject CN)");
  }
  // A site's issuing CA signs its clients; whoever holds a site's key must
  // not be able to mint site servers, MPs or administrators with it: every
  // identity but an agent's comes straight from the root CA (OU=ca).
  if (id.role != "agent" && issuer_ou != "ca") {
    return absl::UnauthenticatedError(absl::StrCat(
        "certificate ", id.ToString(), " was issued by ", issuer_cn, " (OU=", issuer_ou,
        "), not the hierarchy's root CA; only agent certificates come "
        "from a site's issuing CA"));
  }
  return id;
}

absl::StatusOr<PeerIdentity> PeerFromContext(const grpc::ServerContextBase& context) {
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (!auth || !auth->IsPeerAuthenticated()) {
    return absl::UnauthenticatedError(
        "no client certificate: every Strata connection is mutual TLS; configure tls.cert_file");
  }
  auto pems = auth->FindPropertyValues("x509_pem_cert");
  if (pems.empty()) return absl::UnauthenticatedError("no client certificate presented");
  return IdentityFromPem(std::string(pems.front().data(), pems.front().size()));
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status CheckServing(const std::shared_ptr<grpc::Channel>& channel, int timeout_ms) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
  // An empty HealthCheckRequest (no bytes): the server as a whole.
  grpc::Slice empty(std::string(""));
  grpc::ByteBuffer request(&empty, 1), response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&done](grpc::Status s) { done.set_value(s); });
  RETURN_IF_ERROR(FromGrpcStatus(done.get_future().get()));
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (response.Dump(&slices).ok()) {
    for (const auto& slice : slices) bytes.append(slice.begin(), slice.end());
  }
  // HealthCheckResponse{status: SERVING} is the two bytes 08 01.
  if (bytes != std::string("\x08\x01", 2)) {
    return absl::FailedPreconditionError("the server answers health, but not SERVING");
  }
  return absl::OkStatus();
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

}  // namespace strata
