#include "common/content/download.h"

#include <curl/curl.h>

#include <mutex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace strata::content {

std::string BlobUrlPath(absl::string_view sha256) {
  return absl::StrCat("/content/sha256/", sha256);
}

namespace {

struct CurlFree {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};

class HttpsSource final : public BlobSource {
 public:
  HttpsSource(std::string address, v1::TlsConfig tls, std::string name)
      : tls_(std::move(tls)), name_(std::move(name)), curl_(curl_easy_init()) {
    if (absl::StartsWith(address, "unix:")) {
      socket_ = address.substr(5);
      base_ = "https://localhost";
    } else {
      base_ = absl::StrCat("https://", address);
    }
  }

  absl::Status Fetch(const BlobRef& blob, BlobWriter& writer,
                     const std::function<bool(int64_t)>& chunk) override {
    if (!curl_) return absl::InternalError("libcurl: no handle");
    CURL* c = curl_.get();
    curl_easy_reset(c);
    const std::string url = base_ + BlobUrlPath(blob.sha256);
    const std::string range = absl::StrCat(writer.offset(), "-");
    Transfer t{c, &writer, &chunk, absl::OkStatus(), 0};
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    if (!socket_.empty()) curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket_.c_str());
    curl_easy_setopt(c, CURLOPT_CAINFO, tls_.ca_file().c_str());
    curl_easy_setopt(c, CURLOPT_SSLCERT, tls_.cert_file().c_str());
    curl_easy_setopt(c, CURLOPT_SSLKEY, tls_.key_file().c_str());
    curl_easy_setopt(c, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_3);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    // A stalled transfer (under 1 KB/s for 30 s) is dropped.
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 30L);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 256L * 1024);
    if (writer.offset() > 0) curl_easy_setopt(c, CURLOPT_RANGE, range.c_str());
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &HttpsSource::OnData);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
    CURLcode rc = curl_easy_perform(c);
    long http = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http);
    if (!t.failed.ok()) return t.failed;
    if (rc != CURLE_OK) {
      const std::string what = absl::StrCat(name_, ": ", curl_easy_strerror(rc));
      switch (rc) {
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_PEER_FAILED_VERIFICATION:
          return absl::PermissionDeniedError(what);
        default:
          return absl::UnavailableError(what);
      }
    }
    if (http == 404)
      return absl::NotFoundError(absl::StrCat(name_, " does not hold blob ", blob.sha256));
    if (http == 400 || http == 403 || http == 495 || http == 496)
      return absl::PermissionDeniedError(
          absl::StrCat(name_, " refused the request (HTTP ", http, ")"));
    if (http != 200 && http != 206)
      return absl::UnavailableError(absl::StrCat(name_, " answered HTTP ", http));
    if (writer.offset() != blob.size)
      return absl::DataLossError(absl::StrCat(name_, " sent ", writer.offset(), " of blob ",
                                              blob.sha256, "'s ", blob.size, " bytes"));
    return absl::OkStatus();
  }

  std::string name() const override { return name_; }

 private:
  struct Transfer {
    CURL* curl;
    BlobWriter* writer;
    const std::function<bool(int64_t)>* chunk;
    absl::Status failed;
    int64_t bytes;
  };

  static size_t OnData(char* data, size_t size, size_t n, void* arg) {
    auto* t = static_cast<Transfer*>(arg);
    const size_t len = size * n;
    long http = 0;
    curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &http);
    // Only a success's body is the blob's bytes; an error page is dropped.
    if (http != 200 && http != 206) return len;
    if (http == 200 && t->writer->offset() > 0 && t->bytes == 0) {
      t->failed = absl::UnavailableError("the server sent the whole blob, not the range asked for");
      return 0;
    }
    if (absl::Status s = t->writer->Append(absl::string_view(data, len)); !s.ok()) {
      t->failed = s;
      return 0;
    }
    t->bytes += static_cast<int64_t>(len);
    if (!(*t->chunk)(static_cast<int64_t>(len))) {
      t->failed = absl::CancelledError("transfer stopped");
      return 0;
    }
    return len;
  }

  const v1::TlsConfig tls_;
  const std::string name_;
  std::unique_ptr<CURL, CurlFree> curl_;
  std::string socket_;
  std::string base_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<BlobSource>> HttpsBlobSource(const std::string& address,
                                                            const v1::TlsConfig& tls,
                                                            std::string name) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (address.empty()) return absl::InvalidArgumentError("a DP's address is required");
  auto source = std::make_unique<HttpsSource>(address, tls, std::move(name));
  return std::unique_ptr<BlobSource>(std::move(source));
}

}  // namespace strata::content
