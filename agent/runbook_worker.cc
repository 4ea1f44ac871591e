#include "agent/runbook_worker.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/runner.h"
#include "common/base/files.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/content/hash.h"
#include "common/deploy/runbook.h"
#include "common/deploy/script.h"
#include "common/inventory/report_check.h"

namespace strata::agent {
namespace {

namespace fs = std::filesystem;

constexpr const char* kStreams[] = {"output", "error", "verbose"};
constexpr int kNumStreams = 3;
// New output sent in one exchange, at most.
constexpr size_t kOutputBudget = 512 * 1024;

int64_t NowMs() { return absl::ToUnixMillis(absl::Now()); }

// How much of `bytes` to send without splitting a UTF-8 character at its
// end (the rest goes with the next piece).
size_t WholeCharacters(const std::string& bytes) {
  size_t i = bytes.size();
  int cont = 0;
  while (i > 0 && cont < 3 && (static_cast<unsigned char>(bytes[i - 1]) & 0xC0) == 0x80) {
    --i;
    ++cont;
  }
  if (i == 0) return bytes.size();
  const unsigned char lead = static_cast<unsigned char>(bytes[i - 1]);
  const int need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
  return need > 1 && cont + 1 < need ? i - 1 : bytes.size();
}

// The secrets of an order's assets (encrypted variables' values,
// credentials' secrets, private keys), longest first: masked in its output.
std::vector<std::string> Secrets(const v1::RunbookJobOrder& o) {
  std::vector<std::string> out;
  for (const auto& a : o.assets()) {
    for (const std::string* v : {&a.secret(), &a.private_key()})
      if (v->size() >= 4) out.push_back(*v);
    if (a.encrypted() && a.value().size() >= 4) out.push_back(a.value());
  }
  std::sort(out.begin(), out.end(),
            [](const auto& x, const auto& y) { return x.size() > y.size(); });
  return out;
}

// `text` with every occurrence of a secret replaced by as many '*' (the
// length stays: pieces are placed by their offsets).
std::string Mask(std::string text, const std::vector<std::string>& secrets) {
  for (const auto& s : secrets)
    for (size_t at = text.find(s); at != std::string::npos; at = text.find(s, at + s.size()))
      text.replace(at, s.size(), std::string(s.size(), '*'));
  return text;
}

// The user and group the job runs as (root for "" and "root").
absl::Status JobUser(const v1::RunbookJobOrder& o, uid_t* uid, gid_t* gid) {
  *uid = 0;
  *gid = 0;
  if (o.run_as().empty() || o.run_as() == "root") return absl::OkStatus();
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (getpwnam_r(o.run_as().c_str(), &pw, buf.data(), buf.size(), &found) != 0 || !found)
    return absl::FailedPreconditionError(absl::StrCat("no local user \"", o.run_as(), "\""));
  *uid = pw.pw_uid;
  *gid = pw.pw_gid;
  return absl::OkStatus();
}

// A resumable job's checkpoint folder (`dir`/checkpoint, the job's user's:
// it may write a new file there and rename it over the old one) with the
// checkpoint its order carries as `data`, which $STRATA_CHECKPOINT_FILE
// names.
absl::Status WriteCheckpoint(const v1::RunbookJobOrder& o, const std::string& dir,
                             std::vector<std::string>* env) {
  uid_t uid = 0;
  gid_t gid = 0;
  RETURN_IF_ERROR(JobUser(o, &uid, &gid));
  const std::string folder = dir + "/checkpoint", path = folder + "/data";
  std::error_code ec;
  fs::create_directories(folder, ec);
  if (ec) return absl::InternalError(absl::StrCat(folder, ": ", ec.message()));
  chmod(folder.c_str(), 0700);
  (void)!chown(folder.c_str(), uid, gid);
  if (o.has_checkpoint()) {
    RETURN_IF_ERROR(WriteFileDurably(path, o.checkpoint(), 0600));
    (void)!chown(path.c_str(), uid, gid);
  }
  env->push_back("STRATA_CHECKPOINT_FILE=" + path);
  return absl::OkStatus();
}

// What a checkpoint file was when read (a new one renamed into place, or
// one rewritten, differs: a rename changes the inode's ctime too).
struct FileStamp {
  int64_t ino = -1, size = -1, mtime_ns = -1, ctime_ns = -1;
  bool operator==(const FileStamp& o) const {
    return ino == o.ino && size == o.size && mtime_ns == o.mtime_ns && ctime_ns == o.ctime_ns;
  }
};

// The piece `*bytes` of a stream (read at `off` from `fd`, whose kept part
// ends at `end`) as it goes up: every secret masked as in the whole stream,
// one across the piece's edges too (the bytes around it are read for that).
// A stream that may still grow keeps back a tail that could begin a secret
// not all written yet: `*bytes` is shortened (empty: nothing to send now).
std::string MaskPiece(int fd, int64_t off, int64_t end, bool growing,
                      const std::vector<std::string>& secrets, std::string* bytes) {
  if (secrets.empty()) return inventory::CleanText(*bytes);
  const int64_t around = static_cast<int64_t>(secrets.front().size()) - 1;  // longest first
  const int64_t from = std::max<int64_t>(0, off - around);
  const int64_t to = std::min<int64_t>(end, off + static_cast<int64_t>(bytes->size()) + around);
  std::string all(static_cast<size_t>(std::max<int64_t>(0, to - from)), '\0');
  const ssize_t got = pread(fd, all.data(), all.size(), from);
  const size_t at = static_cast<size_t>(off - from);
  if (got < static_cast<ssize_t>(at + bytes->size())) {  // not readable around it: alone
    all = *bytes;
    return inventory::CleanText(Mask(std::move(all), secrets));
  }
  all.resize(static_cast<size_t>(got));
  all.replace(at, bytes->size(), *bytes);
  if (growing && from + static_cast<int64_t>(all.size()) == end) {
    size_t keep_back = 0;  // the longest tail that begins a secret
    for (const auto& secret : secrets)
      for (size_t k = std::min(secret.size() - 1, all.size()); k > keep_back; --k)
        if (all.compare(all.size() - k, k, secret, 0, k) == 0) {
          keep_back = k;
          break;
        }
    const size_t upto = all.size() - keep_back;
    if (upto < at + bytes->size()) bytes->resize(upto > at ? upto - at : 0);
  }
  return inventory::CleanText(Mask(std::move(all), secrets).substr(at, bytes->size()));
}

// The job's assets in files under `dir`/assets (a folder per credential or
// certificate, owned by the job's user) and environment variables naming
// them ($STRATA_ASSET_<name>: a variable's value, else the folder).
absl::Status WriteAssets(const v1::RunbookJobOrder& o, const std::string& dir,
                         std::vector<std::string>* env) {
  uid_t uid = 0;
  gid_t gid = 0;
  RETURN_IF_ERROR(JobUser(o, &uid, &gid));
  for (const auto& a : o.assets()) {
    if (a.kind() == "variable") {
      env->push_back(absl::StrCat("STRATA_ASSET_", a.name(), "=", a.value()));
      continue;
    }
    const std::string folder = absl::StrCat(dir, "/assets/", a.name());
    std::error_code ec;
    fs::create_directories(folder, ec);
    if (ec) return absl::InternalError(absl::StrCat(folder, ": ", ec.message()));
    chmod((dir + "/assets").c_str(), 0711);
    chmod(folder.c_str(), 0700);
    (void)!chown(folder.c_str(), uid, gid);
    const std::vector<std::pair<std::string, std::string>> files =
        a.kind() == "credential"
            ? std::vector<std::pair<std::string, std::string>>{{"user", a.user()},
                                                               {"secret", a.secret()}}
            : std::vector<std::pair<std::string, std::string>>{{"cert.pem", a.certificate()},
                                                               {"key.pem", a.private_key()}};
    for (const auto& [file, text] : files) {
      const std::string path = folder + "/" + file;
      RETURN_IF_ERROR(WriteFileDurably(path, text, 0600));
      (void)!chown(path.c_str(), uid, gid);
    }
    env->push_back(absl::StrCat("STRATA_ASSET_", a.name(), "=", folder));
  }
  return absl::OkStatus();
}

}  // namespace

// A job attempt this worker holds (its record, its thread, its streams).
struct RunbookWorker::Held {
  v1::RunbookJobRecord rec;
  std::thread thread;
  bool ended = false;       // rec.final is how it ended
  bool stop_asked = false;  // the site said to stop it
  absl::Time lease_until = absl::InfinitePast();
  int64_t sent[kNumStreams] = {0, 0, 0};       // acknowledged, per stream
  int64_t in_flight[kNumStreams] = {0, 0, 0};  // after the exchange under way
  bool truncated = false;                      // a stream went past what is kept
  std::vector<std::string> secrets;            // masked in its output (its assets')
  // A resumable job's checkpoint file as last sent and acknowledged, and as
  // sent in the exchange under way.
  FileStamp checkpoint_sent, checkpoint_in_flight;
  bool checkpoint_too_big = false;  // one larger than the site keeps was written
};

RunbookWorker::RunbookWorker(RunbookWorkerOptions options) : options_(std::move(options)) {
  std::error_code ec;
  fs::create_directories(options_.state_dir + "/runbooks", ec);
  chmod((options_.state_dir + "/runbooks").c_str(), 0711);
}

RunbookWorker::~RunbookWorker() { Stop(); }

std::string RunbookWorker::JobDir(const std::string& job) const {
  return absl::StrCat(options_.state_dir, "/runbooks/", job);
}

std::string RunbookWorker::RecordPath(const std::string& job) const {
  return absl::StrCat(options_.state_dir, "/runbooks/", job, ".pb");
}

absl::Status RunbookWorker::Save(const v1::RunbookJobRecord& rec) const {
  return WriteFileDurably(RecordPath(rec.order().job()), rec.SerializeAsString());
}

void RunbookWorker::SetLease(const std::string& job, absl::Time until) const {
  const int64_t seconds = until == absl::InfinitePast() ? 0 : absl::ToUnixSeconds(until);
  // Renamed into place (never half-written); not fsynced: after a crash of
  // the machine the job is gone too.
  const std::string path = JobDir(job) + "/lease", tmp = path + ".tmp";
  const std::string text = absl::StrCat(seconds, "\n");
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  const bool wrote = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  if (wrote) rename(tmp.c_str(), path.c_str());
}

void RunbookWorker::SetGroups(std::vector<std::string> groups) {
  absl::MutexLock lock(&mu_);
  if (groups != groups_) wake_ = true;
  groups_ = std::move(groups);
}

void RunbookWorker::Wake() {
  absl::MutexLock lock(&mu_);
  wake_ = true;
}

void RunbookWorker::Start() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = false;
  }
  abandon_ = false;
  LoadRecords();
  thread_ = std::thread([this] { Loop(); });
}

void RunbookWorker::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  abandon_ = true;
  if (thread_.joinable()) thread_.join();
  std::map<std::string, std::shared_ptr<Held>> held;
  {
    absl::MutexLock lock(&mu_);
    held.swap(held_);
  }
  for (auto& [job, h] : held)
    if (h->thread.joinable()) h->thread.join();
}

void RunbookWorker::LoadRecords() {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(options_.state_dir + "/runbooks", ec)) {
    if (e.path().extension() != ".pb") continue;
    auto data = ReadFile(e.path().string());
    v1::RunbookJobRecord rec;
    if (!data.ok() || !rec.ParseFromString(*data) || rec.order().job().empty()) continue;
    const std::string job = rec.order().job();
    if (!deploy::IsFinal(rec.final().state()) && rec.pid() == 0) {
      // Never started (the runner starts a job only once its pid is
      // recorded): forgotten; the site sends it again while it is ours.
      Forget(job);
      continue;
    }
    auto h = std::make_shared<Held>();
    h->rec = rec;
    h->secrets = Secrets(rec.order());
    h->ended = deploy::IsFinal(rec.final().state());
    absl::MutexLock lock(&mu_);
    held_[job] = h;
    if (!h->ended) {
      LogInfo("agent.runbook_job_resumed", {{"job", job}, {"pid", rec.pid()}});
      h->thread = std::thread([this, h] { RunJob(h, /*adopt=*/true); });
    }
  }
}

void RunbookWorker::Forget(const std::string& job) {
  std::error_code ec;
  fs::remove_all(JobDir(job), ec);
  fs::remove(RecordPath(job), ec);
}

void RunbookWorker::Loop() {
  absl::Duration failing = absl::ZeroDuration();
  while (true) {
    absl::Duration wait;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      const bool working = !groups_.empty() || !held_.empty();
      // Failing, it backs off (to 2 s while it holds jobs: their leases
      // are renewed soon after the site is back).
      wait = !working ? absl::InfiniteDuration()
             : failing > absl::ZeroDuration()
                 ? (held_.empty() ? failing : std::min(failing, absl::Seconds(2)))
             : !held_.empty() ? options_.busy_poll
                              : options_.idle_poll;
      auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || wake_; };
      mu_.AwaitWithTimeout(absl::Condition(&woken), wait);
      if (stopping_) return;
      wake_ = false;
      if (groups_.empty() && held_.empty()) continue;
    }
    if (Exchange()) {
      failing = absl::ZeroDuration();
    } else {
      failing = std::min(absl::Seconds(30), std::max(absl::Seconds(1), failing * 2));
    }
  }
}

bool RunbookWorker::Exchange() {
  v1::RunbookWorkRequest req;
  {
    absl::MutexLock lock(&mu_);
    int running = 0;
    for (const auto& [job, h] : held_) running += h->ended ? 0 : 1;
    req.set_free_slots(groups_.empty() ? 0 : std::max(0, options_.max_jobs - running));
    size_t budget = kOutputBudget;
    for (const auto& [job, h] : held_) {
      v1::RunbookJobProgress* p = req.add_jobs();
      p->set_job(job);
      p->set_attempt(h->rec.order().attempt());
      p->set_state(v1::RUNBOOK_JOB_STATE_RUNNING);
      p->set_started_unix_ms(h->rec.started_unix_ms());
      bool more = false;  // output left to send after this exchange
      // New output of each stream, in pieces that end on a 16 KiB boundary
      // (a piece sent again after a restart is the same piece).
      for (int s = 0; s < kNumStreams; ++s) {
        h->in_flight[s] = h->sent[s];
        const std::string path = absl::StrCat(JobDir(job), "/", kStreams[s]);
        const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        struct stat st {};
        int64_t off = h->sent[s];
        if (fstat(fd, &st) == 0) {
          if (st.st_size < off) h->truncated = true;  // cut by the runner: what is gone is gone
          if (st.st_size > deploy::kMaxStreamBytes) h->truncated = true;
          const int64_t end = std::min<int64_t>(st.st_size, deploy::kMaxStreamBytes);
          while (off < end && budget > 0) {
            const int64_t piece = static_cast<int64_t>(deploy::kMaxOutputChunkBytes);
            const int64_t n =
                std::min<int64_t>({piece - off % piece, end - off, static_cast<int64_t>(budget)});
            std::string bytes(static_cast<size_t>(n), '\0');
            const ssize_t got = pread(fd, bytes.data(), bytes.size(), off);
            if (got <= 0) break;
            bytes.resize(static_cast<size_t>(got));
            bytes.resize(WholeCharacters(bytes));
            // (Growing: the job runs on and the stream is under what is kept.)
            std::string text =
                MaskPiece(fd, off, end, !h->ended && st.st_size < deploy::kMaxStreamBytes,
                          h->secrets, &bytes);
            bytes.resize(WholeCharacters(bytes));
            text.resize(bytes.size());
            if (bytes.empty()) break;
            v1::RunbookOutputChunk* c = p->add_output();
            c->set_stream(kStreams[s]);
            c->set_offset(off);
            c->set_text(std::move(text));
            off += static_cast<int64_t>(bytes.size());
            budget -= bytes.size();
          }
          // Past what is kept: the rest is dropped, on disk too.
          if (st.st_size > 2 * deploy::kMaxStreamBytes && off >= deploy::kMaxStreamBytes)
            (void)!ftruncate(fd, 0);
        }
        close(fd);
        h->in_flight[s] = off;
        more = more || off < std::min<int64_t>(st.st_size, deploy::kMaxStreamBytes);
      }
      // A resumable job's checkpoint, when it changed.
      h->checkpoint_in_flight = h->checkpoint_sent;
      std::string checkpoint;
      bool checkpoint_later = false;  // no room in this exchange: the end waits for it
      const bool new_checkpoint =
          h->rec.order().resumable() && ReadCheckpoint(*h, &budget, &checkpoint, &checkpoint_later);
      more = more || checkpoint_later;
      // How it ended goes with its last output: the site may forget nothing
      // of it once it accepted the end.
      if (h->ended && !more) {
        auto output = std::move(*p->mutable_output());
        *p = h->rec.final();
        *p->mutable_output() = std::move(output);
        p->set_job(job);
        p->set_attempt(h->rec.order().attempt());
        if (h->truncated)
          p->set_detail(absl::StrCat(p->detail(), p->detail().empty() ? "" : "; ", "output beyond ",
                                     deploy::kMaxStreamBytes >> 20, " MiB per stream was dropped"));
        if (h->checkpoint_too_big)
          p->set_detail(absl::StrCat(p->detail(), p->detail().empty() ? "" : "; ",
                                     "a checkpoint larger than ", deploy::kMaxCheckpointBytes >> 10,
                                     " KiB was not kept (the last smaller one is)"));
      }
      if (new_checkpoint) p->set_checkpoint(std::move(checkpoint));
    }
  }
  const absl::Time sent_at = absl::Now();
  auto resp = options_.exchange(req);
  if (!resp.ok()) {
    LogWarning("agent.runbook_exchange_failed",
               {{"error", resp.status()}, {"jobs", req.jobs_size()}});
    return false;
  }
  const absl::Duration lease = absl::Milliseconds(std::max<int64_t>(resp->lease_ms(), 10000));
  const absl::Time lease_until = sent_at + lease - lease / 6;
  std::set<std::string> stop(resp->stop().begin(), resp->stop().end());
  absl::MutexLock lock(&mu_);
  for (const auto& p : req.jobs()) {
    auto it = held_.find(p.job());
    if (it == held_.end() || it->second->rec.order().attempt() != p.attempt()) continue;
    Held& h = *it->second;
    for (int s = 0; s < kNumStreams; ++s) h.sent[s] = h.in_flight[s];
    h.checkpoint_sent = h.checkpoint_in_flight;
    if (!h.ended && !stop.count(p.job())) {
      h.lease_until = lease_until;
      SetLease(p.job(), lease_until);
    }
  }
  for (const auto& job : stop) {
    auto it = held_.find(job);
    if (it == held_.end() || it->second->ended) continue;
    if (!it->second->stop_asked)
      LogInfo("agent.runbook_job_stopping",
              {{"job", job}, {"runbook", it->second->rec.order().runbook()}});
    it->second->stop_asked = true;
    SetLease(job, absl::InfinitePast());
  }
  for (const auto& job : resp->accepted()) {
    auto it = held_.find(job);
    if (it == held_.end() || !it->second->ended) continue;
    if (it->second->thread.joinable()) it->second->thread.join();  // it has ended
    held_.erase(it);
    Forget(job);
  }
  for (const auto& order : resp->start()) {
    auto it = held_.find(order.job());
    if (it != held_.end()) {
      if (it->second->rec.order().attempt() == order.attempt()) continue;  // started already
      if (!it->second->ended) continue;  // an older attempt still ending: sent again later
      if (it->second->thread.joinable()) it->second->thread.join();
      held_.erase(it);
      Forget(order.job());
    }
    Launch(order, lease_until);
  }
  return true;
}

bool RunbookWorker::ReadCheckpoint(Held& h, size_t* budget, std::string* data, bool* later) const {
  *later = false;
  const std::string path = JobDir(h.rec.order().job()) + "/checkpoint/data";
  // The folder is the job's: whatever it put there is opened without
  // waiting (a FIFO would block) and read only if it is a plain file of the
  // job's user's own (not a link to someone else's).
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return false;
  struct stat st {};
  bool got = false;
  uid_t uid = 0;
  gid_t gid = 0;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1 &&
      JobUser(h.rec.order(), &uid, &gid).ok() && st.st_uid == uid) {
    FileStamp now;
    now.ino = static_cast<int64_t>(st.st_ino);
    now.size = static_cast<int64_t>(st.st_size);
    now.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    now.ctime_ns = static_cast<int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
    const bool fits = st.st_size > static_cast<off_t>(deploy::kMaxCheckpointBytes) ||
                      static_cast<size_t>(st.st_size) <= *budget;
    *later = !(now == h.checkpoint_sent) && !fits;
    if (!(now == h.checkpoint_sent) && fits) {
      h.checkpoint_in_flight = now;  // read or not, this version is dealt with
      if (st.st_size > static_cast<off_t>(deploy::kMaxCheckpointBytes)) {
        if (!h.checkpoint_too_big)
          LogWarning("agent.runbook_checkpoint_too_big",
                     {{"job", h.rec.order().job()},
                      {"bytes", static_cast<int64_t>(st.st_size)},
                      {"max", static_cast<int64_t>(deploy::kMaxCheckpointBytes)}});
        h.checkpoint_too_big = true;
      } else {
        data->assign(static_cast<size_t>(st.st_size), '\0');
        const ssize_t n = pread(fd, data->data(), data->size(), 0);
        if (n >= 0) {
          data->resize(static_cast<size_t>(n));
          *budget -= std::min(*budget, data->size());
          got = true;
        } else {
          h.checkpoint_in_flight = h.checkpoint_sent;  // read again next time
        }
      }
    }
  }
  close(fd);
  return got;
}

void RunbookWorker::Launch(const v1::RunbookJobOrder& order, absl::Time lease_until) {
  auto h = std::make_shared<Held>();
  *h->rec.mutable_order() = order;
  h->secrets = Secrets(order);
  h->lease_until = lease_until;
  const std::string dir = JobDir(order.job());
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir, ec);
  chmod(dir.c_str(), 0711);
  const std::string sha = content::Sha256::Of(order.body());
  std::string refused;
  if (sha != order.sha256())
    refused = absl::StrCat("refused: the body's SHA-256 is ", sha, ", not the published ",
                           order.sha256(), " (changed on the way); nothing ran");
  else if (deploy::InterpreterPath(order.interpreter()).empty())
    refused = absl::StrCat("refused: unknown interpreter \"", order.interpreter(), "\"");
  else if (ec)
    refused = absl::StrCat(dir, ": ", ec.message());
  if (!refused.empty()) {
    v1::RunbookJobProgress* f = h->rec.mutable_final();
    f->set_job(order.job());
    f->set_attempt(order.attempt());
    f->set_state(v1::RUNBOOK_JOB_STATE_FAILED);
    f->set_exit_code(-1);
    f->set_detail(refused);
    f->set_finished_unix_ms(NowMs());
    h->ended = true;
    (void)Save(h->rec);
    held_[order.job()] = h;
    wake_ = true;
    LogWarning("agent.runbook_job_refused", {{"job", order.job()}, {"detail", refused}});
    return;
  }
  // Recorded before anything runs: an attempt starts at most once.
  if (absl::Status s = Save(h->rec); !s.ok()) {
    LogWarning("agent.runbook_record_failed", {{"job", order.job()}, {"error", s}});
    return;  // not started: the site sends it again
  }
  SetLease(order.job(), lease_until);
  held_[order.job()] = h;
  LogInfo("agent.runbook_job_started",
          {{"job", order.job()}, {"runbook", order.runbook()}, {"attempt", order.attempt()}});
  h->thread = std::thread([this, h] { RunJob(h, /*adopt=*/false); });
}

void RunbookWorker::RunJob(std::shared_ptr<Held> h, bool adopt) {
  v1::RunbookJobRecord rec;
  {
    absl::MutexLock lock(&mu_);
    rec = h->rec;
  }
  const v1::RunbookJobOrder& order = rec.order();
  const std::string dir = JobDir(order.job());
  RunSpec spec;
  spec.dir = dir;
  spec.stdout_path = dir + "/output";
  spec.output_path = dir + "/error";
  spec.exit_path = dir + "/exit";
  spec.lease_path = dir + "/lease";
  spec.user = order.run_as();
  spec.timeout = absl::Seconds(
      std::clamp<int64_t>(order.timeout_seconds(), 1, deploy::kMaxRunbookTimeoutSeconds));
  RunResult ran;
  if (adopt) {
    Job job;
    job.pid = static_cast<pid_t>(rec.pid());
    job.start_ticks = rec.start_ticks();
    job.deadline = absl::FromUnixMillis(rec.deadline_unix_ms());
    ran = Adopt(spec, job, &abandon_);
  } else {
    absl::Status wrote = WriteFileDurably(dir + "/script", order.body(), 0644);
    const std::string verbose = dir + "/verbose";
    const int vfd = open(verbose.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (vfd >= 0) {
      fchmod(vfd, 0666);  // the job may run as another user
      close(vfd);
    }
    spec.command = absl::StrCat("exec ", deploy::InterpreterPath(order.interpreter()), " ./script");
    spec.env = {"STRATA_RUNBOOK=" + order.runbook(), "STRATA_JOB=" + order.job(),
                absl::StrCat("STRATA_JOB_ATTEMPT=", order.attempt()),
                "STRATA_VERBOSE_FILE=" + verbose};
    for (const auto& a : order.arguments()) spec.env.push_back(a.name() + "=" + a.value());
    if (wrote.ok()) wrote = WriteAssets(order, dir, &spec.env);
    if (wrote.ok() && order.resumable()) wrote = WriteCheckpoint(order, dir, &spec.env);
    absl::StatusOr<RunResult> started = absl::InternalError("not started");
    if (wrote.ok()) {
      rec.set_started_unix_ms(NowMs());
      started = Run(
          spec,
          [&](const Job& job) {
            rec.set_state(v1::RUNBOOK_JOB_STATE_RUNNING);
            rec.set_pid(job.pid);
            rec.set_start_ticks(job.start_ticks);
            rec.set_deadline_unix_ms(absl::ToUnixMillis(job.deadline));
            absl::MutexLock lock(&mu_);
            h->rec = rec;
            (void)Save(rec);
          },
          &abandon_);
    }
    if (!wrote.ok() || !started.ok()) {
      ran.exited = false;
      ran.exit_code = -1;
      absl::MutexLock lock(&mu_);
      v1::RunbookJobProgress* f = h->rec.mutable_final();
      f->set_state(v1::RUNBOOK_JOB_STATE_FAILED);
      f->set_exit_code(-1);
      f->set_detail(std::string((wrote.ok() ? started.status() : wrote).message()));
    } else {
      ran = *started;
    }
  }
  if (ran.abandoned) return;  // the agent is stopping: the next start adopts it
  std::error_code ec;
  fs::remove_all(dir + "/assets", ec);  // the assets live as long as the job
  absl::MutexLock lock(&mu_);
  v1::RunbookJobProgress* f = h->rec.mutable_final();
  f->set_job(order.job());
  f->set_attempt(order.attempt());
  f->set_started_unix_ms(h->rec.started_unix_ms());
  f->set_finished_unix_ms(NowMs());
  if (f->state() != v1::RUNBOOK_JOB_STATE_FAILED) {
    f->set_exit_code(ran.exit_code);
    if (ran.exited && ran.exit_code == 0) {
      f->set_state(v1::RUNBOOK_JOB_STATE_COMPLETED);
    } else if (h->stop_asked) {
      f->set_state(v1::RUNBOOK_JOB_STATE_STOPPED);
      f->set_detail(deploy::kStoppedAsAsked);
    } else {
      f->set_state(v1::RUNBOOK_JOB_STATE_FAILED);
      if (ran.timed_out)
        f->set_detail(absl::StrCat("timed out after ", order.timeout_seconds(),
                                   " s: killed with its process group"));
      else if (!ran.exited && absl::Now() >= absl::FromUnixSeconds(absl::ToUnixSeconds(
                                                 h->lease_until)))  // the watchdog's second
        f->set_detail(
            "killed when its lease ended: this worker could not renew it with the site in time");
      else if (!ran.exited)
        f->set_detail("ended without an exit code (killed)");
      else
        f->set_detail(absl::StrCat("exited with ", ran.exit_code));
    }
  }
  h->rec.set_state(f->state());
  if (absl::Status s = Save(h->rec); !s.ok())
    LogWarning("agent.runbook_record_failed", {{"job", order.job()}, {"error", s}});
  h->ended = true;
  wake_ = true;
  LogInfo("agent.runbook_job_finished", {{"job", order.job()},
                                         {"runbook", order.runbook()},
                                         {"state", deploy::RunbookJobStateName(f->state())},
                                         {"exit_code", f->exit_code()}});
}

}  // namespace strata::agent
