// runbook_submit: starts --jobs jobs of a runbook through the provider
// (StartRunbook, the call `stratactl start runbook` makes), --concurrency
// calls at once, spread round-robin over --groups; one result line:
// "submit jobs=N failed=N seconds=S rps=R" (bench/runbooks/run.sh).

#include <atomic>
#include <chrono>
#include <iostream>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/base/files.h"
#include "common/net/tls.h"
#include "strata/v1/admin/runbook_jobs.grpc.pb.h"

ABSL_FLAG(std::string, server, "", "The provider's address");
ABSL_FLAG(std::string, ca, "", "PEM file of the hierarchy root CA");
ABSL_FLAG(std::string, cert, "", "The administrator's certificate (PEM)");
ABSL_FLAG(std::string, key, "", "The administrator's key (PEM)");
ABSL_FLAG(std::string, runbook, "", "The runbook to start");
ABSL_FLAG(std::string, groups, "", "Worker groups, comma-separated (jobs go round-robin)");
ABSL_FLAG(int, jobs, 10000, "Jobs to start");
ABSL_FLAG(int, concurrency, 16, "Calls in flight");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  using namespace strata;
  auto ca = ReadFile(absl::GetFlag(FLAGS_ca));
  auto cert = ReadFile(absl::GetFlag(FLAGS_cert));
  auto key = ReadFile(absl::GetFlag(FLAGS_key));
  if (!ca.ok() || !cert.ok() || !key.ok()) {
    std::cerr << "runbook_submit: cannot read --ca, --cert or --key\n";
    return 2;
  }
  const std::vector<std::string> groups =
      absl::StrSplit(absl::GetFlag(FLAGS_groups), ',', absl::SkipEmpty());
  if (groups.empty() || absl::GetFlag(FLAGS_runbook).empty()) {
    std::cerr << "runbook_submit: --runbook and --groups are required\n";
    return 2;
  }
  auto channel = MakeChannel(absl::GetFlag(FLAGS_server), ChannelPem{*ca, *cert, *key});
  auto stub = v1::RunbookJobService::NewStub(channel);
  const int jobs = absl::GetFlag(FLAGS_jobs);
  std::atomic<int> next{0}, failed{0};
  std::atomic<bool> reported{false};
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < std::max(1, absl::GetFlag(FLAGS_concurrency)); ++t) {
    threads.emplace_back([&] {
      for (int i = next++; i < jobs; i = next++) {
        v1::StartRunbookRequest req;
        req.set_runbook(absl::GetFlag(FLAGS_runbook));
        req.set_group(groups[static_cast<size_t>(i) % groups.size()]);
        v1::RunbookJob out;
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
        grpc::Status s = stub->StartRunbook(&ctx, req, &out);
        if (!s.ok()) {
          ++failed;
          if (!reported.exchange(true))
            std::cerr << "runbook_submit: " << s.error_message() << "\n";
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << absl::StrFormat("submit jobs=%d failed=%d seconds=%.2f rps=%.0f\n", jobs,
                               failed.load(), seconds, jobs / seconds);
  return failed.load() == 0 ? 0 : 1;
}
