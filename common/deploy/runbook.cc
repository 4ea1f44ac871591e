#include "common/deploy/runbook.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "common/deploy/script.h"
#include "common/inventory/report_check.h"

namespace strata::deploy {
namespace {

absl::Status Bad(const std::string& what, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(what, ": ", why));
}

}  // namespace

absl::Status CheckRunbookDefinition(v1::RunbookDefinition& d) {
  if (auto st =
          CheckCode(d.mutable_interpreter(), d.body(), d.mutable_run_as(), d.mutable_parameters());
      !st.ok())
    return st;
  if (d.timeout_seconds() == 0) d.set_timeout_seconds(kDefaultRunbookTimeoutSeconds);
  if (d.timeout_seconds() < 1 || d.timeout_seconds() > kMaxRunbookTimeoutSeconds)
    return Bad("timeout_seconds", absl::StrCat(d.timeout_seconds(), ": 1 to ",
                                               kMaxRunbookTimeoutSeconds, " (7 days)"));
  if (d.on_worker_lost().empty()) d.set_on_worker_lost("retry");
  if (d.on_worker_lost() != "retry" && d.on_worker_lost() != "fail")
    return Bad("on_worker_lost", absl::StrCat("\"", d.on_worker_lost(), "\": retry or fail"));
  if (d.max_attempts() == 0) d.set_max_attempts(kDefaultRunbookAttempts);
  if (d.max_attempts() < 1 || d.max_attempts() > kMaxRunbookAttempts)
    return Bad("max_attempts", absl::StrCat(d.max_attempts(), ": 1 to ", kMaxRunbookAttempts));
  if (d.assets_size() > kMaxRunbookAssets)
    return Bad("assets", absl::StrCat(d.assets_size(), ": at most ", kMaxRunbookAssets));
  std::set<std::string> assets;
  for (const auto& a : d.assets()) {
    bool ok = !a.empty() && a.size() <= 64 && a[0] >= 'a' && a[0] <= 'z';
    for (char c : a) ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
    if (!ok) return Bad("assets", absl::StrCat("\"", a, "\" is not an asset name"));
    if (!assets.insert(a).second) return Bad("assets", absl::StrCat("\"", a, "\" named twice"));
  }
  return absl::OkStatus();
}

absl::Status CheckRunbookLabels(const v1::Runbook& r) {
  if (r.description().size() > 4096 || !inventory::IsCleanText(r.description()))
    return Bad("description", "at most 4 KiB of text");
  if (r.tags_size() > kMaxRunbookTags)
    return Bad("tags", absl::StrCat(r.tags_size(), ": at most ", kMaxRunbookTags));
  std::set<std::string> seen;
  for (const auto& t : r.tags()) {
    if (t.empty() || t.size() > 64 || !inventory::IsCleanText(t) ||
        t.find_first_of(",\n") != std::string::npos)
      return Bad("tags", absl::StrCat("\"", t, "\": 1 to 64 characters, no comma"));
    if (!seen.insert(t).second) return Bad("tags", absl::StrCat("\"", t, "\" given twice"));
  }
  return absl::OkStatus();
}

absl::Status CheckWorkRequest(const v1::RunbookWorkRequest& req) {
  if (req.free_slots() < 0 || req.free_slots() > kMaxWorkerJobs)
    return Bad("free_slots", absl::StrCat(req.free_slots(), ": 0 to ", kMaxWorkerJobs));
  if (req.jobs_size() > kMaxWorkerJobs)
    return Bad("jobs", absl::StrCat(req.jobs_size(), ": at most ", kMaxWorkerJobs));
  size_t bytes = 0;
  std::set<std::string> jobs;
  for (const auto& j : req.jobs()) {
    if (!inventory::IsUuid(j.job()))
      return Bad("jobs", absl::StrCat("\"", j.job(), "\" is not a job id"));
    if (!jobs.insert(j.job()).second) return Bad("jobs", absl::StrCat(j.job(), " given twice"));
    if (j.attempt() < 1 || j.attempt() > kMaxJobAttempts)
      return Bad("jobs", absl::StrCat(j.job(), ": attempt ", j.attempt()));
    if (j.state() == v1::RUNBOOK_JOB_STATE_UNSPECIFIED ||
        !v1::RunbookJobStateKind_IsValid(j.state()))
      return Bad("jobs", absl::StrCat(j.job(), ": no state"));
    if (j.detail().size() > 4096 || !inventory::IsCleanText(j.detail()))
      return Bad("jobs", absl::StrCat(j.job(), ": detail is at most 4 KiB of text"));
    if (j.has_checkpoint() && j.checkpoint().size() > kMaxCheckpointBytes)
      return Bad("jobs", absl::StrCat(j.job(), ": a checkpoint of ", j.checkpoint().size(),
                                      " bytes: at most ", kMaxCheckpointBytes));
    bytes += j.checkpoint().size();
    for (const auto& c : j.output()) {
      if (c.stream() != "output" && c.stream() != "error" && c.stream() != "verbose")
        return Bad("jobs", absl::StrCat(j.job(), ": stream \"", c.stream(),
                                        "\": output, error or verbose"));
      if (c.offset() < 0 || c.offset() >= kMaxStreamBytes)
        return Bad("jobs",
                   absl::StrCat(j.job(), ": offset ", c.offset(), " out of 0..", kMaxStreamBytes));
      if (c.text().empty() || c.text().size() > kMaxOutputChunkBytes ||
          !inventory::IsCleanText(c.text()))
        return Bad("jobs", absl::StrCat(j.job(), ": a chunk is 1 byte to ",
                                        kMaxOutputChunkBytes / 1024, " KiB of text"));
      bytes += c.text().size();
    }
  }
  if (bytes > kMaxWorkRequestOutputBytes)
    return Bad("jobs", absl::StrCat(bytes, " bytes of output and checkpoints: at most ",
                                    kMaxWorkRequestOutputBytes, " in one request"));
  return absl::OkStatus();
}

std::string RunbookJobStateName(v1::RunbookJobStateKind kind) {
  switch (kind) {
    case v1::RUNBOOK_JOB_STATE_RUNNING:
      return "running";
    case v1::RUNBOOK_JOB_STATE_COMPLETED:
      return "completed";
    case v1::RUNBOOK_JOB_STATE_FAILED:
      return "failed";
    case v1::RUNBOOK_JOB_STATE_STOPPED:
      return "stopped";
    default:
      return "unknown";
  }
}

bool IsFinal(v1::RunbookJobStateKind kind) {
  return kind == v1::RUNBOOK_JOB_STATE_COMPLETED || kind == v1::RUNBOOK_JOB_STATE_FAILED ||
         kind == v1::RUNBOOK_JOB_STATE_STOPPED;
}

}  // namespace strata::deploy
