// The install engine's files (install_engine.h): its journal of each
// deployment, the folders its jobs run in, and install requests from
// `strata-agent install`.

#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "agent/install_engine.h"
#include "agent/runner.h"
#include "common/base/files.h"
#include "common/base/log.h"
#include "common/content/hash.h"

namespace strata::agent {

namespace fs = std::filesystem;

absl::Status InstallEngine::RequestInstall(const std::string& state_dir,
                                           const std::string& deployment) {
  std::error_code ec;
  fs::create_directories(state_dir + "/requests", ec);
  return WriteFileAtomically(
      absl::StrCat(state_dir, "/requests/", content::Sha256::Of(deployment).substr(0, 24)),
      deployment);
}

bool InstallEngine::RequestTaken(const std::string& state_dir, const std::string& deployment) {
  return !fs::exists(
      absl::StrCat(state_dir, "/requests/", content::Sha256::Of(deployment).substr(0, 24)));
}

v1::InstallRecord InstallEngine::ReadRecord(const std::string& state_dir,
                                            const std::string& deployment) {
  v1::InstallRecord rec;
  auto bytes = ReadFile(absl::StrCat(state_dir, "/deployments/",
                                     content::Sha256::Of(deployment).substr(0, 24), ".pb"));
  if (!bytes.ok() || !rec.ParseFromString(*bytes) || rec.deployment() != deployment) rec.Clear();
  return rec;
}

bool InstallEngine::HasRequests() const {
  std::error_code ec;
  fs::directory_iterator it(options_.state_dir + "/requests", ec);
  return !ec && it != fs::end(it);
}

void InstallEngine::TakeRequests() {
  std::error_code ec;
  for (auto it = fs::directory_iterator(options_.state_dir + "/requests", ec);
       !ec && it != fs::end(it); it.increment(ec)) {
    auto name = ReadFile(it->path().string());
    fs::remove(it->path(), ec);
    if (!name.ok() || name->empty()) continue;
    v1::InstallRecord rec = Load(*name);
    // A new request (after a failure too) starts the count again.
    rec.set_requested(true);
    rec.set_settled(false);
    rec.set_attempt(0);
    rec.set_next_try_unix_ms(0);
    Save(rec);
    LogInfo("agent.install_requested", {{"deployment", *name}});
  }
}

// What every job and detection script is told of the agent: its state
// folder (a script may keep its own files there) and the dpkg database it
// inventories (a test root, or /var/lib/dpkg).
std::vector<std::string> InstallEngine::JobEnv() const {
  return {"STRATA_AGENT_DIR=" + options_.state_dir,
          "STRATA_DPKG_DIR=" + (options_.detect.dpkg_dir.empty() ? std::string("/var/lib/dpkg")
                                                                 : options_.detect.dpkg_dir)};
}

std::string InstallEngine::RecordPath(const std::string& deployment) const {
  return absl::StrCat(options_.state_dir, "/deployments/",
                      content::Sha256::Of(deployment).substr(0, 24), ".pb");
}

std::string InstallEngine::RunDir(const std::string& deployment) const {
  const std::string dir =
      absl::StrCat(options_.state_dir, "/runs/", content::Sha256::Of(deployment).substr(0, 24));
  std::error_code ec;
  fs::create_directories(dir, ec);
  fs::permissions(dir, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec, ec);
  return dir;
}

v1::InstallRecord InstallEngine::Load(const std::string& deployment) {
  v1::InstallRecord rec;
  auto bytes = ReadFile(RecordPath(deployment));
  if (!bytes.ok() || !rec.ParseFromString(*bytes) || rec.deployment() != deployment) {
    rec.Clear();
    rec.set_deployment(deployment);
  }
  return rec;
}

void InstallEngine::Save(const v1::InstallRecord& rec) {
  absl::Status s = WriteFileDurably(RecordPath(rec.deployment()), rec.SerializeAsString());
  if (!s.ok()) LogWarning("agent.deployment_journal_failed", {{"error", s}});
}

// Journals of deployments no longer in the policy go (a deployment made
// again is evaluated afresh), unless a job of theirs still runs.
void InstallEngine::ForgetOthers(const std::vector<v1::DeploymentPolicy>& deployments) {
  std::set<std::string> keep;
  for (const auto& d : deployments) keep.insert(RecordPath(d.name()));
  std::error_code ec;
  for (auto it = fs::directory_iterator(options_.state_dir + "/deployments", ec);
       !ec && it != fs::end(it); it.increment(ec)) {
    const std::string path = it->path().string();
    if (keep.count(path)) continue;
    v1::InstallRecord rec;
    auto bytes = ReadFile(path);
    if (bytes.ok() && rec.ParseFromString(*bytes) && rec.running() && rec.pid() > 0 &&
        ProcessStartTicks(static_cast<pid_t>(rec.pid())) == rec.pid_start_ticks())
      continue;
    fs::remove(path, ec);
  }
}

}  // namespace strata::agent
