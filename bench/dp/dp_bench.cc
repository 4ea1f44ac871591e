// bench/dp's client side, driven by bench/dp/run.sh:
//   dp_bench fetch --dp ADDR --sha256 H --size N --cache DIR --ca F --cert F --key F
//     one agent's download (the agent's own code: agent/download.h, into a
//     fresh cache on disk, every byte hashed); prints "fetch: bytes=… seconds=…"
//   dp_bench grpc --site ADDR --sha256 H --ca F --cert F --key F
//     one ContentLibrary.GetBlob stream from a site server, bytes discarded
//     (the path site -> child site and site -> DP take); prints
//     "grpc: bytes=… seconds=…"
//   dp_bench fleet --url URL --sha256 H --size N --clients C --ca F --cert F --key F
//     C simulated clients downloading the same blob at once over libcurl's
//     multi interface (one connection each, mutual TLS, as many at once as
//     the open-file limit allows), each verifying the SHA-256 of what it
//     got; prints "fleet: clients=… ok=… concurrent=… seconds=… mb_s=… p50_s=… p99_s=…"

#include <curl/curl.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "agent/content_cache.h"
#include "agent/download.h"
#include "common/content/hash.h"
#include "common/net/tls.h"
#include "strata/v1/content.grpc.pb.h"

using namespace strata;
using Clock = std::chrono::steady_clock;

namespace {

std::map<std::string, std::string> Flags(int argc, char** argv) {
  std::map<std::string, std::string> out;
  for (int i = 2; i + 1 < argc; i += 2) out[std::string(argv[i]).substr(2)] = argv[i + 1];
  return out;
}

int64_t Int(const std::map<std::string, std::string>& f, const std::string& k) {
  int64_t v = 0;
  auto it = f.find(k);
  return it != f.end() && absl::SimpleAtoi(it->second, &v) ? v : 0;
}

double CpuSeconds(int who) {
  struct rusage u;
  ::getrusage(who, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

int Fetch(const std::map<std::string, std::string>& f) {
  v1::ContentLocation where;
  auto* m = where.mutable_manifest();
  m->set_package("bench");
  m->set_version(1);
  auto* file = m->add_files();
  file->set_path("big.bin");
  file->set_size(Int(f, "size"));
  file->set_mode(0644);
  file->set_sha256(f.at("sha256"));
  where.add_distribution_points(f.at("dp"));
  auto cache = agent::ContentCache::Open(f.at("cache"), Int(f, "size") * 2);
  if (!cache.ok()) {
    std::cerr << cache.status() << "\n";
    return 1;
  }
  agent::DownloadOptions o;
  o.tls.set_ca_file(f.at("ca"));
  o.tls.set_cert_file(f.at("cert"));
  o.tls.set_key_file(f.at("key"));
  const double main0 = CpuSeconds(RUSAGE_THREAD), all0 = CpuSeconds(RUSAGE_SELF);
  auto start = Clock::now();
  auto r = agent::Download(**cache, where, o);
  double s = std::chrono::duration<double>(Clock::now() - start).count();
  if (!r.ok()) {
    std::cerr << r.status() << "\n";
    return 1;
  }
  // The receiving thread (libcurl: TLS, copying into the writer's buffers)
  // and the writer's worker (SHA-256, the disk write), which has exited:
  // its time is the process's less the main thread's.
  const double receive = CpuSeconds(RUSAGE_THREAD) - main0;
  const double verify_write = CpuSeconds(RUSAGE_SELF) - all0 - receive;
  std::printf("fetch: bytes=%lld seconds=%.3f cpu_receive_s=%.3f cpu_verify_write_s=%.3f\n",
              static_cast<long long>(r->bytes_downloaded), s, receive, verify_write);
  return 0;
}

int Grpc(const std::map<std::string, std::string>& f) {
  v1::TlsConfig tls;
  tls.set_ca_file(f.at("ca"));
  tls.set_cert_file(f.at("cert"));
  tls.set_key_file(f.at("key"));
  auto channel = MakeChannel(f.at("site"), tls, ChannelOptions());
  if (!channel.ok()) {
    std::cerr << channel.status() << "\n";
    return 1;
  }
  auto stub = v1::ContentLibrary::NewStub(*channel);
  grpc::ClientContext ctx;
  v1::BlobRequest req;
  req.set_sha256(f.at("sha256"));
  auto start = Clock::now();
  auto reader = stub->GetBlob(&ctx, req);
  v1::BlobChunk chunk;
  int64_t bytes = 0;
  while (reader->Read(&chunk)) bytes += static_cast<int64_t>(chunk.data().size());
  grpc::Status s = reader->Finish();
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  if (!s.ok()) {
    std::cerr << s.error_message() << "\n";
    return 1;
  }
  std::printf("grpc: bytes=%lld seconds=%.3f\n", static_cast<long long>(bytes), secs);
  return 0;
}

struct Client {
  CURL* curl = nullptr;
  content::Sha256 hash;
  int64_t bytes = 0;
  double seconds = 0;
  bool ok = false;
};

size_t OnData(char* data, size_t size, size_t n, void* arg) {
  auto* c = static_cast<Client*>(arg);
  c->hash.Update(data, size * n);
  c->bytes += static_cast<int64_t>(size * n);
  return size * n;
}

int Fleet(const std::map<std::string, std::string>& f) {
  const int clients = static_cast<int>(Int(f, "clients"));
  const int64_t size = Int(f, "size");
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  const int concurrent = std::min<int>(clients, static_cast<int>(rl.rlim_cur) - 200);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURLM* multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, static_cast<long>(concurrent));
  std::vector<Client> all(clients);
  const auto start = Clock::now();
  for (Client& c : all) {
    c.curl = curl_easy_init();
    curl_easy_setopt(c.curl, CURLOPT_URL, f.at("url").c_str());
    curl_easy_setopt(c.curl, CURLOPT_CAINFO, f.at("ca").c_str());
    curl_easy_setopt(c.curl, CURLOPT_SSLCERT, f.at("cert").c_str());
    curl_easy_setopt(c.curl, CURLOPT_SSLKEY, f.at("key").c_str());
    curl_easy_setopt(c.curl, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_3);
    curl_easy_setopt(c.curl, CURLOPT_FORBID_REUSE, 1L);  // a connection per client
    curl_easy_setopt(c.curl, CURLOPT_CONNECTTIMEOUT, 120L);
    curl_easy_setopt(c.curl, CURLOPT_WRITEFUNCTION, OnData);
    curl_easy_setopt(c.curl, CURLOPT_WRITEDATA, &c);
    curl_easy_setopt(c.curl, CURLOPT_PRIVATE, &c);
    curl_multi_add_handle(multi, c.curl);
  }
  int running = 0;
  do {
    curl_multi_perform(multi, &running);
    int msgs = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &msgs)) {
      if (msg->msg != CURLMSG_DONE) continue;
      Client* c = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &c);
      long http = 0;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &http);
      c->seconds = std::chrono::duration<double>(Clock::now() - start).count();
      c->ok = msg->data.result == CURLE_OK && http == 200 && c->bytes == size &&
              c->hash.HexDigest() == f.at("sha256");
      if (msg->data.result != CURLE_OK)
        std::fprintf(stderr, "client failed: %s\n", curl_easy_strerror(msg->data.result));
      curl_multi_remove_handle(multi, msg->easy_handle);
      curl_easy_cleanup(msg->easy_handle);
    }
    if (running > 0) curl_multi_poll(multi, nullptr, 0, 100, nullptr);
  } while (running > 0);
  const double total = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<double> times;
  int ok = 0;
  for (const Client& c : all) {
    if (!c.ok) continue;
    ++ok;
    times.push_back(c.seconds);
  }
  std::sort(times.begin(), times.end());
  auto pct = [&](double p) {
    return times.empty() ? 0.0
                         : times[std::min(times.size() - 1, static_cast<size_t>(p * times.size()))];
  };
  std::printf(
      "fleet: clients=%d ok=%d concurrent=%d seconds=%.2f mb_s=%.1f p50_s=%.2f p99_s=%.2f\n",
      clients, ok, concurrent, total, ok * (size / 1048576.0) / total, pct(0.5), pct(0.99));
  curl_multi_cleanup(multi);
  return ok == clients ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: dp_bench fetch|fleet --flag value ... (see bench/dp/run.sh)\n";
    return 2;
  }
  const std::string cmd = argv[1];
  auto flags = Flags(argc, argv);
  if (cmd == "fetch") return Fetch(flags);
  if (cmd == "fleet") return Fleet(flags);
  if (cmd == "grpc") return Grpc(flags);
  std::cerr << "dp_bench: unknown command " << cmd << "\n";
  return 2;
}
