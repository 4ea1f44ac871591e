#include "mp/spool.h"

#include "common/base/files.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/log.h"
#include "common/base/status.h"

namespace strata::mp {
namespace {

constexpr size_t kHeader = 16;  // u32 length, u32 crc, i64 seq
constexpr uint32_t kMaxRecord = 64 << 20;

absl::Status Errno(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

uint32_t Checksum(int64_t seq, std::string_view data) {
  uLong crc = crc32(0L, reinterpret_cast<const Bytef*>(&seq), sizeof seq);
  return static_cast<uint32_t>(
      crc32(crc, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
}

void EncodeRecord(int64_t seq, const std::string& data, std::string* out) {
  uint32_t len = static_cast<uint32_t>(data.size());
  uint32_t crc = Checksum(seq, data);
  char header[kHeader];
  std::memcpy(header, &len, 4);
  std::memcpy(header + 4, &crc, 4);
  std::memcpy(header + 8, &seq, 8);
  out->append(header, kHeader);
  out->append(data);
}

// Reads one record at `offset`; false at the end or at a torn/corrupt record.
bool ReadRecord(int fd, int64_t offset, SpoolRecord* rec, int64_t* next_offset) {
  char header[kHeader];
  if (pread(fd, header, kHeader, offset) != static_cast<ssize_t>(kHeader)) return false;
  uint32_t len, crc;
  std::memcpy(&len, header, 4);
  std::memcpy(&crc, header + 4, 4);
  std::memcpy(&rec->seq, header + 8, 8);
  if (len > kMaxRecord) return false;
  rec->data.resize(len);
  if (len > 0 && pread(fd, rec->data.data(), len, offset + kHeader) != static_cast<ssize_t>(len)) {
    return false;
  }
  if (Checksum(rec->seq, rec->data) != crc) return false;
  *next_offset = offset + kHeader + len;
  return true;
}

std::string SegmentName(int64_t first_seq) { return absl::StrFormat("seg-%020d.log", first_seq); }

}  // namespace

absl::StatusOr<std::unique_ptr<Spool>> Spool::Open(const std::string& dir, Options options) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    return absl::InternalError(absl::StrCat("spool: cannot create ", dir, ": ", ec.message()));
  auto spool = std::unique_ptr<Spool>(new Spool(dir, options));
  RETURN_IF_ERROR(spool->Recover());
  spool->writer_ = std::thread([s = spool.get()] { s->WriterLoop(); });
  return spool;
}

Spool::~Spool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (writer_.joinable()) writer_.join();
  if (fd_ >= 0) close(fd_);
}

absl::Status Spool::Recover() {
  std::ifstream acked(dir_ + "/acked");
  std::string line;
  if (std::getline(acked, line) && !absl::SimpleAtoi(line, &acked_seq_)) acked_seq_ = 0;
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    std::string name = e.path().filename().string();
    if (name.rfind("seg-", 0) == 0 && name.size() > 8 && name.substr(name.size() - 4) == ".log") {
      files.push_back(e.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  int64_t expect = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    int fd = ::open(files[i].c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return Errno(absl::StrCat("spool: open ", files[i]));
    Segment seg{0, 0, files[i], 0};
    int64_t offset = 0, next = 0;
    SpoolRecord rec;
    bool first = true;
    while (ReadRecord(fd, offset, &rec, &next)) {
      if (!first && rec.seq != seg.last_seq + 1) break;
      if (first) seg.first_seq = rec.seq;
      first = false;
      seg.last_seq = rec.seq;
      offset = next;
    }
    off_t size = lseek(fd, 0, SEEK_END);
    if (offset < size) {
      if (i + 1 < files.size()) {
        close(fd);
        return absl::DataLossError(absl::StrCat("spool: ", files[i], " is corrupt at byte ", offset,
                                                " and later segments exist"));
      }
      LogWarning("spool.torn_tail", {{"file", files[i]}, {"kept_bytes", offset}, {"size", size}});
      if (ftruncate(fd, offset) != 0) {
        close(fd);
        return Errno("spool: truncate");
      }
    }
    close(fd);
    if (first) {  // empty segment
      std::filesystem::remove(files[i]);
      continue;
    }
    if (expect != 0 && seg.first_seq != expect) {
      return absl::DataLossError(absl::StrCat("spool: ", files[i], " starts at record ",
                                              seg.first_seq, ", expected ", expect));
    }
    expect = seg.last_seq + 1;
    seg.bytes = offset;
    segments_[seg.first_seq] = seg;
    durable_seq_ = seg.last_seq;
  }
  if (acked_seq_ > durable_seq_ && !segments_.empty())
    acked_seq_ = std::min(acked_seq_, durable_seq_);
  durable_seq_ = std::max(durable_seq_, acked_seq_);
  return OpenNewSegment(durable_seq_ + 1);
}

absl::Status Spool::OpenNewSegment(int64_t first_seq) {
  if (fd_ >= 0) {
    if (fdatasync(fd_) != 0) return Errno("spool: sync");
    close(fd_);
    fd_ = -1;
  }
  std::string path = absl::StrCat(dir_, "/", SegmentName(first_seq));
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd_ < 0) return Errno(absl::StrCat("spool: create ", path));
  // Make the new file's name durable too.
  int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  absl::MutexLock lock(&mu_);
  segments_[first_seq] = Segment{first_seq, first_seq - 1, path, 0};
  return absl::OkStatus();
}

void Spool::Append(std::vector<std::string> records, Done done) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      queue_.push_back(Pending{std::move(records), std::move(done)});
      return;
    }
  }
  done(absl::UnavailableError("spool closing"), 0);
}

absl::Status Spool::WriteBatch(std::deque<Pending>& batch, int64_t* last) {
  int64_t seq;
  {
    absl::MutexLock lock(&mu_);
    seq = durable_seq_;
  }
  std::string buf;
  int64_t seg_first;
  int64_t seg_bytes;
  {
    absl::MutexLock lock(&mu_);
    seg_first = segments_.rbegin()->first;
    seg_bytes = segments_.rbegin()->second.bytes;
  }
  auto flush = [&]() -> absl::Status {
    size_t off = 0;
    while (off < buf.size()) {
      ssize_t n = ::write(fd_, buf.data() + off, buf.size() - off);
      if (n < 0) {
        if (errno == EINTR) continue;
        return Errno("spool: write");
      }
      off += n;
    }
    absl::MutexLock lock(&mu_);
    Segment& seg = segments_[seg_first];
    seg.bytes += buf.size();
    buf.clear();
    return absl::OkStatus();
  };
  for (auto& p : batch) {
    for (const auto& r : p.records) {
      if (seg_bytes > options_.segment_bytes) {
        RETURN_IF_ERROR(flush());
        {
          absl::MutexLock lock(&mu_);
          segments_[seg_first].last_seq = seq;
        }
        RETURN_IF_ERROR(OpenNewSegment(seq + 1));
        seg_first = seq + 1;
        seg_bytes = 0;
      }
      EncodeRecord(++seq, r, &buf);
      seg_bytes += kHeader + r.size();
    }
  }
  RETURN_IF_ERROR(flush());
  if (fdatasync(fd_) != 0) return Errno("spool: sync");
  absl::MutexLock lock(&mu_);
  segments_[seg_first].last_seq = seq;
  durable_seq_ = seq;
  *last = seq;
  return absl::OkStatus();
}

void Spool::WriterLoop() {
  while (true) {
    std::deque<Pending> batch;
    {
      absl::MutexLock lock(&mu_);
      auto work = [this]()
                      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&work));
      if (queue_.empty()) return;  // stopping, nothing left to write
      batch.swap(queue_);
    }
    int64_t last = 0;
    absl::Status s = broken_;
    if (s.ok()) s = WriteBatch(batch, &last);
    if (!s.ok()) {
      // Nothing of this batch is acknowledged. The spool stops taking data
      // (a restart recovers it: whole records kept, a torn tail cut off).
      if (broken_.ok()) LogError("spool.write_failed", {{"error", s}});
      broken_ = s;
    }
    // Each append learns the last seq of its own records.
    int64_t end = last;
    std::vector<int64_t> ends(batch.size());
    for (size_t i = batch.size(); i-- > 0;) {
      ends[i] = end;
      end -= static_cast<int64_t>(batch[i].records.size());
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      batch[i].done(s.ok() ? absl::OkStatus()
                           : absl::UnavailableError(absl::StrCat(
                                 "the spool cannot write (restart the MP): ", s.message())),
                    ends[i]);
    }
  }
}

absl::StatusOr<std::vector<SpoolRecord>> Spool::Read(int64_t after, int max_records,
                                                     int64_t max_bytes, int wait_ms) {
  std::vector<Segment> segs;
  int64_t durable;
  {
    absl::MutexLock lock(&mu_);
    const int gen = wake_generation_;
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return durable_seq_ > after || stopping_ || gen != wake_generation_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(wait_ms));
    durable = durable_seq_;
    if (durable <= after) return std::vector<SpoolRecord>{};
    auto it = segments_.upper_bound(after + 1);
    if (it == segments_.begin()) {
      return absl::DataLossError(
          absl::StrCat("spool: record ", after + 1, " is no longer in the spool"));
    }
    for (--it; it != segments_.end(); ++it) segs.push_back(it->second);
  }
  std::vector<SpoolRecord> out;
  int64_t bytes = 0;
  for (const Segment& seg : segs) {
    if (static_cast<int>(out.size()) >= max_records || bytes >= max_bytes) break;
    int fd = ::open(seg.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Errno(absl::StrCat("spool: open ", seg.path));
    int64_t offset = 0, next = 0;
    {
      // A reader going on from where it stopped does not rescan the segment.
      absl::MutexLock lock(&mu_);
      if (cursor_path_ == seg.path && cursor_seq_ == after) offset = cursor_offset_;
    }
    SpoolRecord rec;
    bool took = false;
    while (static_cast<int>(out.size()) < max_records && bytes < max_bytes &&
           ReadRecord(fd, offset, &rec, &next)) {
      if (rec.seq > durable) break;
      offset = next;
      if (rec.seq <= after) continue;
      bytes += rec.data.size();
      after = rec.seq;
      out.push_back(std::move(rec));
      rec = SpoolRecord();
      took = true;
    }
    close(fd);
    if (took) {
      absl::MutexLock lock(&mu_);
      cursor_path_ = seg.path;
      cursor_seq_ = out.back().seq;
      cursor_offset_ = offset;
    }
  }
  return out;
}

absl::Status Spool::Acknowledge(int64_t seq) {
  std::vector<std::string> remove;
  {
    absl::MutexLock lock(&mu_);
    if (seq <= acked_seq_) return absl::OkStatus();
    acked_seq_ = std::min(seq, durable_seq_);
    auto current = std::prev(segments_.end());
    for (auto it = segments_.begin(); it != current;) {
      if (it->second.last_seq <= acked_seq_) {
        remove.push_back(it->second.path);
        it = segments_.erase(it);
      } else {
        ++it;
      }
    }
    seq = acked_seq_;
  }
  // A lost acknowledgement only means the site sees some reports again, which
  // it skips (exactly once by client sequence): no sync needed here.
  RETURN_IF_ERROR(WriteFileAtomically(dir_ + "/acked", absl::StrCat(seq, "\n"), 0644));
  for (const auto& p : remove) std::filesystem::remove(p);
  return absl::OkStatus();
}

int64_t Spool::acknowledged() const {
  absl::MutexLock lock(&mu_);
  return acked_seq_;
}

int64_t Spool::last_seq() const {
  absl::MutexLock lock(&mu_);
  return durable_seq_;
}

void Spool::Wake() {
  {
    absl::MutexLock lock(&mu_);
    ++wake_generation_;
  }
}

}  // namespace strata::mp
