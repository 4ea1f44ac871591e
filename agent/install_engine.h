#pragma once

// The agent's install engine: takes the deployments its policy names and,
// one job at a time (as Configuration Manager's client does), brings the
// machine to what each asks — waiting for the deadline, choosing the first
// deployment type whose requirements the device meets, installing
// dependencies first and uninstalling superseded applications that say so,
// keeping to the device's maintenance windows (an install starts only where
// its maximum run time fits),
// detecting, downloading the content (the content cache, best DP, resume,
// verify), running the command (runner.h: its own folder, user, process
// group, time limit, bounded output), judging its return code and detecting
// again, retrying with backoff, recording a pending reboot. Every state goes
// up as a DeploymentState report through the agent's durable queue.
//
// A journal per deployment (InstallRecord, state_dir/deployments/) is
// written before and after every step: an agent restarted mid-install finds
// its job (still running or ended), waits for it and judges it; it never
// starts an interrupted install again unless the deployment allows it.

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/detection.h"
#include "agent/download.h"
#include "strata/v1/client.pb.h"

namespace strata::agent {

struct EngineOptions {
  std::string state_dir;
  DetectContext detect;  // dpkg database, rpm (work_dir set by the engine)
  DownloadOptions download;
  int64_t cache_max_bytes = 0;
  // Queues a report durably (the agent's outbound queue) and wakes its sender.
  std::function<absl::Status(v1::ClientReport)> report;
  // Where a content version is (the agent asks its MP).
  std::function<absl::StatusOr<v1::ContentLocation>(const std::string& package, int64_t version)>
      locate;
  // The device's inventory now, for requirements.
  std::function<v1::InventoryReport()> inventory;
  std::string site;  // for device.site in requirements
  // The unit of max_run_minutes (a unit test shortens it to run its
  // time limits in seconds).
  absl::Duration minute = absl::Minutes(1);
  // The device's zone, for maintenance windows in local time.
  absl::TimeZone zone = absl::LocalTimeZone();
};

class InstallEngine {
 public:
  explicit InstallEngine(EngineOptions options);
  ~InstallEngine();

  // The deployments and maintenance windows of the policy now (a change
  // wakes the engine).
  void SetDeployments(std::vector<v1::DeploymentPolicy> deployments,
                      std::vector<v1::MaintenanceWindow> windows = {});
  // Runs passes on a thread of its own until Stop(); a job under way is left
  // running (the next start adopts it).
  void Start();
  void Stop();
  // One pass over every deployment, on the caller's thread; the time the
  // next one is due (InfiniteFuture: nothing waits).
  absl::Time RunPass();

  // `strata-agent install NAME`: asks the engine of the agent whose state is
  // in `state_dir` to install an available deployment (a request file it
  // takes within a second).
  static absl::Status RequestInstall(const std::string& state_dir, const std::string& deployment);
  // Whether the engine took the request for `deployment` (or none is waiting).
  static bool RequestTaken(const std::string& state_dir, const std::string& deployment);
  // The journal of a deployment (empty when there is none).
  static v1::InstallRecord ReadRecord(const std::string& state_dir, const std::string& deployment);

 private:
  struct Outcome;
  void Loop();
  void Process(const v1::DeploymentPolicy& d, v1::InstallRecord& rec);
  void Wait(const v1::DeploymentPolicy& d, v1::InstallRecord& rec, const std::string& why);
  static bool Done(const v1::InstallRecord& rec, const std::string& application);
  // The main application detected as the deployment wants it (nothing to run).
  bool AlreadyThere(const v1::DeploymentPolicy& d);
  void Resume(const v1::DeploymentPolicy& d, v1::InstallRecord& rec);
  Outcome Apply(const v1::DeploymentPolicy& d, const v1::Application& app, bool install,
                v1::InstallRecord& rec);
  Outcome RunJob(const v1::DeploymentPolicy& d, const v1::Application& app,
                 const v1::DeploymentType& dt, bool install, v1::InstallRecord& rec);
  Outcome Judge(const v1::Application& app, const v1::DeploymentType& dt, bool install, bool exited,
                int exit_code, bool timed_out, const std::string& tail);
  void Conclude(const v1::DeploymentPolicy& d, v1::InstallRecord& rec, const Outcome& o);
  const v1::DeploymentType* ChooseType(const v1::Application& app, std::string* why);
  absl::StatusOr<bool> Detected(const v1::DeploymentType& dt);
  absl::Status Fetch(const v1::DeploymentPolicy& d, const v1::DeploymentType& dt,
                     v1::InstallRecord& rec, const std::string& dest);
  void Report(const v1::DeploymentPolicy& d, v1::InstallRecord& rec, v1::DeploymentStateKind state,
              const std::string& detail, int exit_code = 0, int64_t bytes_done = 0,
              int64_t bytes_total = 0);
  v1::InstallRecord Load(const std::string& deployment);
  void Save(const v1::InstallRecord& rec);
  std::string RunDir(const std::string& deployment) const;
  std::vector<std::string> JobEnv() const;
  std::string RecordPath(const std::string& deployment) const;
  void ForgetOthers(const std::vector<v1::DeploymentPolicy>& deployments);
  // Install requests for available deployments, into their journals.
  void TakeRequests();
  bool HasRequests() const;

  const EngineOptions options_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<v1::DeploymentPolicy> deployments_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::MaintenanceWindow> windows_ ABSL_GUARDED_BY(mu_);
  bool changed_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace strata::agent
