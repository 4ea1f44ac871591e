#include "agent/outbound_queue.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/base/files.h"
#include "common/base/hlc.h"
#include "common/base/log.h"
#include "common/base/status.h"

namespace strata::agent {

namespace fs = std::filesystem;

OutboundQueue::OutboundQueue(std::string dir, int64_t max_reports)
    : dir_(std::move(dir)), max_reports_(max_reports) {}

absl::Status OutboundQueue::Open() {
  std::error_code ec;
  fs::create_directories(dir_ + "/queue", ec);
  if (ec) return absl::InternalError(absl::StrCat("state_dir: ", ec.message()));
  int64_t seq = 0;
  auto text = ReadFile(dir_ + "/seq");
  if (text.ok()) (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &seq);
  absl::MutexLock lock(&mu_);
  seq_ = seq;
  return absl::OkStatus();
}

int64_t OutboundQueue::next_seq() {
  absl::MutexLock lock(&mu_);
  return seq_ + 1;
}

absl::Status OutboundQueue::Enqueue(v1::ClientReport report) {
  absl::MutexLock lock(&mu_);
  const int64_t seq = seq_ + 1;
  RETURN_IF_ERROR(WriteFileDurably(dir_ + "/seq", absl::StrCat(seq, "\n")));
  seq_ = seq;
  report.set_seq(seq);
  report.set_created_unix_ms(WallClockMs());
  RETURN_IF_ERROR(WriteFileDurably(QueuePath(seq), report.SerializeAsString()));
  Trim();
  return absl::OkStatus();
}

std::string OutboundQueue::QueuePath(int64_t seq) const {
  return absl::StrFormat("%s/queue/%020d.pb", dir_, seq);
}

std::vector<std::string> OutboundQueue::Files() const {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_ + "/queue", ec)) {
    if (e.path().extension() == ".pb") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

void OutboundQueue::Trim() {
  auto files = Files();
  int64_t excess = static_cast<int64_t>(files.size()) - max_reports_;
  for (const auto& f : files) {
    if (excess <= 0) break;
    v1::ClientReport r;
    auto data = ReadFile(f);
    // Never an inventory (the site would see a gap) nor a deployment's state
    // or a script's result (its status at the CAS would stay wrong).
    if (data.ok() && r.ParseFromString(*data) && !r.has_inventory() && !r.has_deployment() &&
        !r.has_script()) {
      fs::remove(f);
      --excess;
    }
  }
}

OutboundQueue::Batch OutboundQueue::Next(int max_reports, int64_t max_bytes) {
  Batch batch;
  int64_t bytes = 0;
  for (const auto& f : Files()) {
    v1::ClientReport r;
    auto data = ReadFile(f);
    if (!data.ok() || !r.ParseFromString(*data)) {
      LogWarning("agent.queue_unreadable", {{"file", f}});
      fs::remove(f);
      continue;
    }
    if (!batch.files.empty() && (batch.request.reports_size() >= max_reports ||
                                 bytes + static_cast<int64_t>(data->size()) > max_bytes)) {
      break;
    }
    bytes += data->size();
    *batch.request.add_reports() = std::move(r);
    batch.files.push_back(f);
  }
  return batch;
}

void OutboundQueue::Remove(const std::vector<std::string>& files) {
  for (const auto& f : files) fs::remove(f);
}

size_t OutboundQueue::size() { return Files().size(); }

v1::ClientReport StateReport(const std::string& topic, int severity, const std::string& text) {
  v1::ClientReport r;
  r.mutable_state()->set_topic(topic);
  r.mutable_state()->set_severity(severity);
  r.mutable_state()->set_text(text.substr(0, 4000));
  r.mutable_state()->set_at_unix_ms(WallClockMs());
  return r;
}

}  // namespace strata::agent
