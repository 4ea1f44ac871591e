#include "provider/stratactl/client.h"

#include <unistd.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/base/config.h"
#include "common/net/tls.h"

namespace strata::ctl {

int ExitFor(const grpc::Status& s) {
  switch (s.error_code()) {
    case grpc::StatusCode::OK:
      return kOk;
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
      return kDenied;
    case grpc::StatusCode::NOT_FOUND:
      return kNotFound;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return kUnavailable;
    default:
      return kFailed;
  }
}

const char* CodeName(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::PERMISSION_DENIED:
      return "permission denied";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "not authenticated";
    case grpc::StatusCode::NOT_FOUND:
      return "not found";
    case grpc::StatusCode::UNAVAILABLE:
      return "server unavailable";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "timed out";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "invalid";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "already exists";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "refused";
    default:
      return "error";
  }
}

void PointAt(const std::string& error, const std::vector<std::string>& queries) {
  const size_t at = error.find("query: character ");
  if (at == std::string::npos || queries.empty()) return;
  int n = std::atoi(error.c_str() + at + 17);
  const std::string* query = queries.size() == 1 ? &queries[0] : nullptr;
  if (size_t r = error.find("rule \"query-"); r != std::string::npos && r < at) {
    int k = std::atoi(error.c_str() + r + 12);
    if (k >= 1 && static_cast<size_t>(k) <= queries.size()) query = &queries[k - 1];
  }
  if (query == nullptr || n < 1 || query->find('\n') != std::string::npos) return;
  std::string caret;
  int chars = 0;
  for (char ch : *query) {
    if (chars >= n - 1) break;
    if ((static_cast<unsigned char>(ch) & 0xC0) != 0x80) {
      caret.push_back(' ');
      ++chars;
    }
  }
  std::cerr << "  " << *query << "\n  " << caret << "^\n";
}

int Client::Connect() {
  v1::StratactlConfig conf;
  std::string path = o_.config;
  bool explicit_path = !path.empty();
  if (path.empty() && std::getenv("STRATACTL_CONFIG")) path = std::getenv("STRATACTL_CONFIG");
  if (path.empty() && std::getenv("HOME")) {
    path = absl::StrCat(std::getenv("HOME"), "/.config/strata/stratactl.conf");
  }
  if (!path.empty() && (explicit_path || access(path.c_str(), R_OK) == 0)) {
    absl::Status s = LoadTextProtoFile(path, &conf);
    if (!s.ok()) {
      std::cerr << "stratactl: " << s.message() << "\n";
      return kUsage;
    }
  }
  if (!o_.server.empty()) conf.set_server(o_.server);
  if (!o_.ca.empty()) conf.set_ca_file(o_.ca);
  if (!o_.cert.empty()) conf.set_cert_file(o_.cert);
  if (!o_.key.empty()) conf.set_key_file(o_.key);
  if (conf.server().empty() || conf.ca_file().empty() || conf.cert_file().empty() ||
      conf.key_file().empty()) {
    std::cerr << "stratactl: no provider configured: write ~/.config/strata/stratactl.conf "
                 "(server, ca_file, cert_file, key_file) or pass --server --ca --cert --key\n";
    return kUsage;
  }
  v1::TlsConfig tls;
  tls.set_ca_file(conf.ca_file());
  tls.set_cert_file(conf.cert_file());
  tls.set_key_file(conf.key_file());
  auto channel = MakeChannel(conf.server(), tls);
  if (!channel.ok()) {
    std::cerr << "stratactl: " << channel.status().message() << "\n";
    return kUsage;
  }
  channel_ = *channel;
  server_ = conf.server();
  return kOk;
}

v1::ListRequest Client::List() const {
  v1::ListRequest r;
  r.set_filter(o_.filter);
  r.set_order_by(o_.sort_by);
  r.set_page_token(o_.page_token);
  r.set_page_size(o_.limit);
  return r;
}

int Client::Report(const grpc::Status& s) {
  last_error_ = s.error_message();
  if (!s.ok()) {
    std::cerr << "stratactl: " << CodeName(s.error_code()) << ": " << s.error_message();
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE) std::cerr << " (server " << server_ << ")";
    std::cerr << "\n";
  }
  return ExitFor(s);
}

}  // namespace strata::ctl
