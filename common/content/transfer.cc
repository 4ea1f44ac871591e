#include "common/content/transfer.h"

#include <ctime>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/base/status.h"
#include "common/net/tls.h"
#include "strata/v1/content.grpc.pb.h"

namespace strata::content {

absl::StatusOr<TransferHours> TransferHours::Parse(const std::string& text) {
  TransferHours out;
  if (text.empty()) return out;
  out.all_ = false;
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "hours \"", text, "\": ", why, " (e.g. \"0-6,20-23\": hours 0-23, ranges inclusive)"));
  };
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    part = absl::StripAsciiWhitespace(part);
    std::vector<absl::string_view> range = absl::StrSplit(part, '-');
    int from = 0, to = 0;
    if (range.size() > 2 || !absl::SimpleAtoi(range[0], &from) ||
        (range.size() == 2 && !absl::SimpleAtoi(range[1], &to)))
      return bad(absl::StrCat("\"", part, "\" is not an hour or a range of hours"));
    if (range.size() == 1) to = from;
    if (from < 0 || from > 23 || to < 0 || to > 23) return bad("an hour is outside 0-23");
    // A range may wrap past midnight: 22-2.
    for (int h = from;; h = (h + 1) % 24) {
      out.hours_.set(h);
      if (h == to) break;
    }
  }
  return out;
}

bool TransferHours::Allows(absl::Time t) const {
  if (all_) return true;
  time_t secs = absl::ToTimeT(t);
  struct tm local;
  localtime_r(&secs, &local);
  return hours_.test(local.tm_hour);
}

bool RateLimiter::Take(int64_t bytes, absl::Notification* stop) {
  absl::Time wake;
  {
    absl::MutexLock lock(&mu_);
    if (rate_ <= 0 || bytes <= 0) return stop == nullptr || !stop->HasBeenNotified();
    absl::Time now = absl::Now();
    // Unused allowance carries over for at most a second (the burst).
    if (next_free_ < now - absl::Seconds(1)) next_free_ = now - absl::Seconds(1);
    next_free_ += absl::Seconds(static_cast<double>(bytes) / static_cast<double>(rate_));
    wake = next_free_;
  }
  absl::Duration wait = wake - absl::Now();
  if (wait <= absl::ZeroDuration()) return stop == nullptr || !stop->HasBeenNotified();
  if (stop == nullptr) {
    absl::SleepFor(wait);
    return true;
  }
  return !stop->WaitForNotificationWithTimeout(wait);
}

namespace {

class GrpcSource final : public BlobSource {
 public:
  GrpcSource(std::shared_ptr<grpc::Channel> channel, std::string name)
      : stub_(v1::ContentLibrary::NewStub(std::move(channel))), name_(std::move(name)) {}

  absl::Status Fetch(const BlobRef& blob, BlobWriter& writer,
                     const std::function<bool(int64_t)>& chunk) override {
    grpc::ClientContext ctx;
    v1::BlobRequest req;
    req.set_sha256(blob.sha256);
    req.set_offset(writer.offset());
    auto reader = stub_->GetBlob(&ctx, req);
    v1::BlobChunk c;
    absl::Status failed;
    while (failed.ok() && reader->Read(&c)) {
      if (c.size() != blob.size) {
        failed = absl::DataLossError(absl::StrCat(name_, " sends blob ", blob.sha256, " as ",
                                                  c.size(), " bytes, not ", blob.size));
      } else if (c.offset() != writer.offset()) {
        failed = absl::DataLossError(absl::StrCat(name_, " sent bytes at ", c.offset(), " where ",
                                                  writer.offset(), " were due"));
      } else if (absl::Status s = writer.Append(c.data()); !s.ok()) {
        failed = s;
      } else if (!chunk(static_cast<int64_t>(c.data().size()))) {
        failed = absl::CancelledError("transfer stopped");
      }
    }
    if (!failed.ok()) {
      ctx.TryCancel();
      while (reader->Read(&c)) {
      }
      (void)reader->Finish();
      return failed;
    }
    return FromGrpcStatus(reader->Finish());
  }

  std::string name() const override { return name_; }

 private:
  std::unique_ptr<v1::ContentLibrary::Stub> stub_;
  std::string name_;
};

}  // namespace

std::unique_ptr<BlobSource> GrpcBlobSource(std::shared_ptr<grpc::Channel> channel,
                                           std::string name) {
  return std::make_unique<GrpcSource>(std::move(channel), std::move(name));
}

absl::Status BringVersion(const v1::ContentManifest& manifest, Library& library, BlobSource& source,
                          RateLimiter& limiter, const TransferHours& hours,
                          absl::Notification* stop,
                          const std::function<void(const Progress&)>& progress) {
  RETURN_IF_ERROR(CheckManifest(manifest));
  std::vector<BlobRef> blobs = DistinctBlobs(manifest);
  Progress p;
  p.bytes_total = TotalBytes(blobs);
  std::vector<BlobRef> missing;
  for (BlobRef& b : blobs) {
    if (library.HasBlob(b.sha256)) {
      p.bytes_done += b.size;
    } else {
      missing.push_back(std::move(b));
    }
  }
  absl::Time last_report = absl::InfinitePast();
  auto report = [&](bool force) {
    absl::Time now = absl::Now();
    if (!force && now - last_report < absl::Milliseconds(500)) return;
    last_report = now;
    progress(p);
  };
  const absl::Status outside = absl::UnavailableError(
      absl::StrCat("outside the hours content may move from ", source.name()));
  for (const BlobRef& b : missing) {
    if (stop != nullptr && stop->HasBeenNotified()) return absl::CancelledError("stopping");
    if (!hours.Allows(absl::Now())) {
      report(true);
      return outside;
    }
    auto w = library.OpenBlob(b, library.PartialBytes(b.sha256));
    if (absl::IsFailedPrecondition(w.status())) w = library.OpenBlob(b, 0);
    if (absl::IsAlreadyExists(w.status())) {
      p.bytes_done += b.size;
      continue;
    }
    if (!w.ok()) return w.status();
    const int64_t before = p.bytes_done;  // of the blobs before this one
    p.bytes_done += (*w)->offset();
    bool out_of_hours = false;
    if (b.size > (*w)->offset()) {
      absl::Status s = source.Fetch(b, **w, [&](int64_t n) {
        p.bytes_done += n;
        report(false);
        if (!limiter.Take(n, stop)) return false;
        if (!hours.Allows(absl::Now())) {
          out_of_hours = true;
          return false;
        }
        return true;
      });
      if (out_of_hours) {
        report(true);
        return outside;
      }
      if (!s.ok()) {
        p.bytes_done = before + (*w)->offset();  // bad chunks were dropped
        report(true);
        return s;
      }
    }
    absl::Status s = (*w)->Finish();
    if (!s.ok()) {
      p.bytes_done = before + (*w)->verified();  // the bytes were thrown away
      report(true);
      return Annotate(s, absl::StrCat("from ", source.name()));
    }
  }
  RETURN_IF_ERROR(library.AddVersion(manifest));
  report(true);
  return absl::OkStatus();
}

}  // namespace strata::content
