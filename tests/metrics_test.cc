// Every server's Prometheus endpoint (common/metrics/metrics.h), scraped
// over HTTP as a monitoring stack would, from real processes.

#include <curl/curl.h>

#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "catch2/catch.hpp"
#include "common/metrics/metrics.h"
#include "common/net/tls.h"
#include "strata/v1/admin/administrators.grpc.pb.h"
#include "tests/fixture/admin_fixture.h"
#include "tests/fixture/client_fixture.h"
#include "tests/fixture/dp_fixture.h"
#include "tests/fixture/site_fixture.h"
#include "tests/fixture/testing.h"

namespace strata::testing {
namespace {

struct Scrape {
  long code = 0;  // HTTP status (0: no answer)
  std::string body;
};

size_t Append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// GET http://ADDRESS/metrics, with basic auth USER:PASSWORD if given.
Scrape Get(const std::string& address, const std::string& userpwd = "") {
  Scrape r;
  CURL* curl = curl_easy_init();
  REQUIRE(curl != nullptr);
  const std::string url = absl::StrCat("http://", address, "/metrics");
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 10L);
  if (!userpwd.empty()) {
    curl_easy_setopt(curl, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(curl, CURLOPT_USERPWD, userpwd.c_str());
  }
  if (curl_easy_perform(curl) == CURLE_OK) {
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.code);
  }
  curl_easy_cleanup(curl);
  return r;
}

// The metrics endpoint's address, once the server wrote it.
std::string MetricsAddress(const std::string& file) {
  REQUIRE(WaitFor([&] { return !ReadWholeFile(file).empty(); }, std::chrono::seconds(90)));
  std::string a = ReadWholeFile(file);
  return a.substr(0, a.find('\n'));
}

// Scrapes until the exposition has `line` (a whole sample line; with
// `prefix`, a line starting so).
bool EventuallyShows(const std::string& address, const std::string& line,
                     const std::string& userpwd = "", bool prefix = false) {
  Scrape last;
  bool seen = WaitFor(
      [&] {
        last = Get(address, userpwd);
        return absl::StrContains("\n" + last.body, "\n" + line + (prefix ? "" : "\n"));
      },
      std::chrono::seconds(60));
  if (!seen)
    UNSCOPED_INFO("last scrape of " << address << " (" << last.code << "):\n" << last.body);
  return seen;
}

std::string MetricsBlock(const std::string& address_file, const std::string& extra = "") {
  return absl::StrCat("metrics { listen_address: \"127.0.0.1:0\" address_file: \"", address_file,
                      "\" ", extra, "}\n");
}

}  // namespace

TEST_CASE(
    "every server serves its counters to Prometheus: links at sites, channels and spool at the "
    "MP, content at the DP, calls at the provider; with credentials, none without them",
    "[metrics]") {
  TempDir dir;
  const std::string d = dir.path();
  SiteProcess cas("CAS", v1::SITE_TYPE_CAS, dir, "");
  std::ofstream(cas.config_path(), std::ios::app) << MetricsBlock(d + "/cas.metrics");
  cas.Start();
  SiteProcess p01("P01", v1::SITE_TYPE_PRIMARY, dir, cas.address());
  std::ofstream(d + "/scraper") << "prometheus:s3cret\n";
  std::ofstream(p01.config_path(), std::ios::app)
      << MetricsBlock(d + "/p01.metrics", absl::StrCat("credentials_file: \"", d, "/scraper\" "));
  p01.Start();

  const std::string cas_metrics = MetricsAddress(d + "/cas.metrics");
  CHECK(EventuallyShows(cas_metrics, "strata_link_connected{peer=\"P01\",role=\"child\"} 1"));
  CHECK(EventuallyShows(cas_metrics,
                        "strata_link_state{peer=\"P01\",role=\"child\",state=\"active\"} 1"));
  const std::string body = Get(cas_metrics).body;
  CHECK(absl::StrContains(body, "strata_database_up 1\n"));
  CHECK(absl::StrContains(body, "strata_build_info{component=\"cas\",version=\"0.1.0\"} 1\n"));
  CHECK(absl::StrContains(body, "# TYPE strata_link_changes_sent_total counter\n"));
  CHECK(absl::StrContains(body, "\nprocess_open_fds "));
  CHECK(absl::StrContains(body, "\nprocess_max_fds "));
  // The WAL the CAS keeps for P01's slot: lag in bytes.
  CHECK(absl::StrContains(body, "\nstrata_link_slot_retained_bytes{peer=\"P01\"} "));

  // P01 asks for credentials: none or wrong ones are refused.
  const std::string p01_metrics = MetricsAddress(d + "/p01.metrics");
  CHECK(Get(p01_metrics).code == 401);
  CHECK(Get(p01_metrics, "prometheus:wrong").code == 401);
  CHECK(Get(p01_metrics, "someone:s3cret").code == 401);
  CHECK(EventuallyShows(p01_metrics, "strata_link_connected{peer=\"CAS\",role=\"parent\"} 1",
                        "prometheus:s3cret"));

  MpProcess mp("P01.mp1", dir, p01.address());
  mp.add_config(MetricsBlock(d + "/mp.metrics"));
  mp.Start();
  const std::string mp_metrics = MetricsAddress(d + "/mp.metrics");
  CHECK(EventuallyShows(mp_metrics, "strata_mp_site_connected 1"));
  CHECK(EventuallyShows(mp_metrics, "strata_mp_nudge_channels 0"));
  CHECK(EventuallyShows(mp_metrics, "strata_mp_spool_pending_records 0"));
  // The site lists its MP with the age of its last report.
  CHECK(EventuallyShows(p01_metrics,
                        "strata_site_system_last_seen_age_seconds{role=\"mp\",name=\"P01.mp1\"} ",
                        "prometheus:s3cret", /*prefix=*/true));

  DpProcess dp("P01.dp1", dir, p01.address());
  dp.add_config(MetricsBlock(d + "/dp.metrics"));
  dp.Start();
  const std::string dp_metrics = MetricsAddress(d + "/dp.metrics");
  CHECK(EventuallyShows(dp_metrics, "strata_dp_site_attached 1"));
  CHECK(EventuallyShows(dp_metrics, "strata_dp_content_versions{state=\"installed\"} 0"));

  ProviderProcess provider("P01", dir, p01.db(), p01.address(), "alice");
  provider.add_config(MetricsBlock(d + "/provider.metrics"));
  provider.Start();
  auto call = [&](const std::string& who) {
    v1::TlsConfig tls;
    tls.set_ca_file(TestPki() + "/ca.pem");
    tls.set_cert_file(TestPki() + "/" + who + ".pem");
    tls.set_key_file(TestPki() + "/" + who + ".key");
    auto channel = MakeChannel(provider.address(), tls);
    REQUIRE(channel.ok());
    grpc::ClientContext ctx;
    v1::Administrator me;
    return v1::AdministratorService::NewStub(*channel)
        ->WhoAmI(&ctx, v1::WhoAmIRequest(), &me)
        .error_code();
  };
  CHECK(call("admin-alice") == grpc::StatusCode::OK);
  CHECK(call("admin-alice") == grpc::StatusCode::OK);
  CHECK(call("site-P01") == grpc::StatusCode::PERMISSION_DENIED);
  const std::string provider_metrics = MetricsAddress(d + "/provider.metrics");
  CHECK(EventuallyShows(provider_metrics, "strata_provider_calls_total{code=\"OK\"} 2"));
  CHECK(EventuallyShows(provider_metrics,
                        "strata_provider_calls_total{code=\"PERMISSION_DENIED\"} 1"));
  CHECK(EventuallyShows(provider_metrics, "strata_database_up 1"));
}

TEST_CASE(
    "a metrics endpoint other hosts could reach needs credentials: check says so and the server "
    "refuses to start",
    "[metrics]") {
  TempDir dir;
  SiteProcess cas("CAS", v1::SITE_TYPE_CAS, dir, "");
  std::ofstream(cas.config_path(), std::ios::app) << "metrics { listen_address: \"0.0.0.0:0\" }\n";
  const std::string cas_bin = BinaryDir() + "/cas/strata-cas";
  CommandResult r = RunCommandWithStatus(cas_bin + " check --config " + cas.config_path());
  CHECK(r.code == 1);
  CHECK(absl::StrContains(r.out,
                          "FAIL  configuration: metrics.listen_address 0.0.0.0:0 is "
                          "reachable from other hosts: set metrics.credentials_file"));
  cas.StartNoWait();
  CHECK(cas.WaitExit(std::chrono::seconds(30)) == 2);
  CHECK(absl::StrContains(cas.LogText(), "set metrics.credentials_file"));
}

TEST_CASE(
    "a metrics address is one IP address or localhost and a port; only loopback goes without "
    "credentials, and the credentials file must hold user:password",
    "[metrics]") {
  TempDir dir;
  auto check = [&](const std::string& address, const std::string& credentials = "") {
    v1::MetricsConfig c;
    c.set_listen_address(address);
    c.set_credentials_file(credentials);
    return metrics::ValidateMetricsConfig(c);
  };
  CHECK(check("127.0.0.1:9250").ok());
  CHECK(check("127.0.0.2:0").ok());
  CHECK(check("localhost:9250").ok());
  CHECK(check("[::1]:9250").ok());
  // Reachable from other hosts: only with credentials.
  CHECK(absl::IsInvalidArgument(check("0.0.0.0:9250")));
  CHECK(absl::IsInvalidArgument(check("[::]:9250")));
  CHECK(absl::IsInvalidArgument(check("10.0.0.5:9250")));
  // Not one address CivetWeb would bind as given: a list, a suffix, a name.
  CHECK(absl::IsInvalidArgument(check("127.0.0.1:9250,0.0.0.0:9251")));
  CHECK(absl::IsInvalidArgument(check("127.0.0.1:9250s")));
  CHECK(absl::IsInvalidArgument(check("127.evil.example:9250")));
  CHECK(absl::IsInvalidArgument(check("::1:9250")));
  CHECK(absl::IsInvalidArgument(check("127.0.0.1")));
  std::ofstream(dir.path() + "/good") << "prometheus:s3cret\n";
  std::ofstream(dir.path() + "/bad") << "no colon here\n";
  CHECK(check("0.0.0.0:9250", dir.path() + "/good").ok());
  const absl::Status bad = check("0.0.0.0:9250", dir.path() + "/bad");
  CHECK(absl::StrContains(bad.message(), "one line user:password"));
  CHECK(absl::IsNotFound(check("0.0.0.0:9250", dir.path() + "/missing")));
}

}  // namespace strata::testing
