// stratactl get packages, describe package NAME, create package NAME
// --source DIR, update package NAME --source DIR, delete package NAME,
// get content-status NAME

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/content/manifest.h"
#include "provider/stratactl/command.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/packages.grpc.pb.h"

namespace strata::ctl {
namespace {

constexpr size_t kChunkBytes = 1 << 20;

std::string Bytes(int64_t b) {
  if (b < 1024) return absl::StrCat(b, " B");
  if (b < (1 << 20)) return absl::StrFormat("%.1f KiB", b / 1024.0);
  if (b < (1 << 30)) return absl::StrFormat("%.1f MiB", b / 1048576.0);
  return absl::StrFormat("%.2f GiB", b / 1073741824.0);
}

// A progress bar on a terminal (stderr); nothing otherwise.
class ProgressBar {
 public:
  explicit ProgressBar(int64_t total) : total_(total), tty_(::isatty(2) == 1) {}
  void Add(int64_t n) {
    done_ += n;
    if (!tty_ || total_ <= 0) return;
    const int pct = static_cast<int>(done_ * 100 / total_);
    if (pct == shown_) return;
    shown_ = pct;
    std::string bar(pct / 4, '#');
    bar.resize(25, ' ');
    std::cerr << "\r[" << bar << "] " << pct << "% " << Bytes(done_) << " of " << Bytes(total_)
              << std::flush;
  }
  ~ProgressBar() {
    if (tty_ && shown_ >= 0) std::cerr << "\n";
  }

 private:
  const int64_t total_;
  const bool tty_;
  int64_t done_ = 0;
  int shown_ = -1;
};

// Sends one blob from `path`, from `offset` on.
int SendBlob(Client& c, const std::string& path, const v1::BlobState& blob, int64_t size,
             ProgressBar& bar) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    std::cerr << "stratactl: cannot read " << path << ": " << std::strerror(errno) << "\n";
    return kFailed;
  }
  v1::PackageService::Stub stub(c.channel());
  grpc::ClientContext ctx;
  // Generous: a minute, and a second per 100 KiB.
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(c.options().timeout_s) +
                   std::chrono::seconds(60 + size / 102400));
  v1::PutBlobResult result;
  auto writer = stub.UploadBlob(&ctx, &result);
  v1::PutBlobChunk chunk;
  chunk.set_sha256(blob.sha256());
  chunk.set_size(size);
  chunk.set_offset(blob.partial_bytes());
  std::string buf(kChunkBytes, '\0');
  int64_t off = blob.partial_bytes();
  bool ok = true;
  bool first = true;
  while (ok && (off < size || first)) {
    ssize_t n = 0;
    if (off < size) {
      n = ::pread(fd, buf.data(), std::min<int64_t>(kChunkBytes, size - off), off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        std::cerr << "stratactl: " << path << " changed while uploading (shorter than " << size
                  << " bytes)\n";
        ::close(fd);
        ctx.TryCancel();
        return kFailed;
      }
    }
    chunk.set_data(buf.data(), static_cast<size_t>(n));
    ok = writer->Write(chunk);
    chunk.clear_sha256();
    chunk.clear_size();
    chunk.clear_offset();
    off += n;
    bar.Add(n);
    first = false;
  }
  ::close(fd);
  writer->WritesDone();
  grpc::Status s = writer->Finish();
  if (s.error_code() == grpc::StatusCode::DATA_LOSS) {
    std::cerr << "stratactl: " << path << " changed while uploading (its bytes no longer hash "
              << "to what was read at first); run the command again\n";
    return kFailed;
  }
  return c.Report(s);
}

// Uploads the folder as a new package or version: plan, the missing
// blobs, commit.
Action Upload(bool new_package, std::shared_ptr<std::string> name,
              std::shared_ptr<std::string> source, std::shared_ptr<std::string> description) {
  return [=](Client& c) {
    auto files = content::ScanSource(*source);
    if (!files.ok()) {
      std::cerr << "stratactl: " << files.status().message() << "\n";
      return kFailed;
    }
    v1::PackageUpload req;
    req.set_name(*name);
    req.set_description(*description);
    req.set_new_package(new_package);
    std::map<std::string, std::string> disk;  // sha256 -> a file holding it
    std::map<std::string, int64_t> sizes;
    for (const content::SourceFile& f : *files) {
      *req.mutable_manifest()->add_files() = f.file;
      disk.emplace(f.file.sha256(), f.disk_path);
      sizes.emplace(f.file.sha256(), f.file.size());
    }
    v1::UploadPlan plan;
    if (int rc = c.Call(&v1::PackageService::Stub::PlanPackageUpload, req, &plan)) return rc;
    {
      ProgressBar bar(plan.bytes_to_send());
      for (const v1::BlobState& b : plan.missing()) {
        if (int rc = SendBlob(c, disk[b.sha256()], b, sizes[b.sha256()], bar)) return rc;
      }
    }
    v1::Package out;
    // The commit has the site's library hash large files in chunks: a
    // second per 200 MiB on top of --timeout.
    int64_t total = 0;
    for (const auto& [hash, size] : sizes) total += size;
    if (int rc = c.Call(&v1::PackageService::Stub::CommitPackageVersion, req, &out,
                        std::chrono::seconds(total / (200 << 20))))
      return rc;
    PrintDone(c.options(),
              absl::StrCat("package \"", out.name(), "\" version ", out.version(),
                           new_package ? " created: " : " made: ", out.files(), " files, ",
                           Bytes(out.total_bytes()), " (", Bytes(plan.bytes_to_send()),
                           " sent, the rest already in the library)"),
              out);
    return kOk;
  };
}

std::function<Action(CLI::App*)> UploadSetup(bool new_package) {
  return [new_package](CLI::App* cmd) -> Action {
    auto name = std::make_shared<std::string>();
    auto source = std::make_shared<std::string>();
    auto description = std::make_shared<std::string>();
    cmd->add_option("name", *name, "The package's name")->required();
    cmd->add_option("--source", *source,
                    "The folder whose files (and subfolders) the version holds")
        ->required();
    cmd->add_option("--description", *description, "What it is");
    return Upload(new_package, name, source, description);
  };
}

void ShowPackage(const Options& o, const v1::Package& p) {
  Describe(o, p,
           {{"name", p.name()},
            {"description", p.description()},
            {"version", absl::StrCat(p.version())},
            {"files", absl::StrCat(p.files())},
            {"size", Bytes(p.total_bytes())},
            {"source site", p.source_site()},
            {"created", p.created_at()},
            {"created by", p.created_by()}});
  if (o.output == "json") return;
  Table t{{"PATH", "SIZE", "MODE", "SHA256"}, {}};
  for (const auto& f : p.file_list())
    t.rows.push_back(
        {f.path(), absl::StrCat(f.size()), absl::StrFormat("%04o", f.mode()), f.sha256()});
  std::cout << "\n";
  PrintTable(t, o.output);
}

void ShowStatus(const Options& o, const v1::ContentStatus& s) {
  if (o.output == "json") {
    PrintJson(s);
    return;
  }
  Table t{{"SITE", "LOCATION", "STATE", "PROGRESS", "UPDATED", "ERROR"}, {}};
  for (const auto& st : s.states()) {
    std::string progress =
        st.bytes_total() > 0
            ? absl::StrCat(st.bytes_total() > 0 ? st.bytes_done() * 100 / st.bytes_total() : 100,
                           "% of ", Bytes(st.bytes_total()))
            : "-";
    t.rows.push_back(
        {st.site_code(), st.location(), st.state(), progress, st.updated_at(), st.error()});
  }
  for (const auto& code : s.sites_not_reporting())
    t.rows.push_back({code, "site", "not reported", "-", "-", ""});
  if (o.output != "csv")
    std::cout << "package \"" << s.package() << "\" version " << s.version() << "\n";
  PrintTable(t, o.output);
  if (s.failures_size() > 0 && o.output != "csv") {
    Table f{{"SITE", "LOCATION", "BLOB", "FOUND", "FILES", "DETECTED", "REPAIRED"}, {}};
    for (const auto& x : s.failures())
      f.rows.push_back({x.site_code(), x.location(), x.sha256().substr(0, 16),
                        x.found().substr(0, 16), x.files(), x.detected_at(),
                        x.repaired_at().empty() ? "no" : x.repaired_at()});
    std::cout << "\nvalidation failures:\n";
    PrintTable(f, o.output);
  }
}

}  // namespace

std::vector<Command> PackageCommands() {
  return {
      {"get",
       "packages",
       {"package"},
       "Packages: newest version, files and size",
       [](CLI::App*) -> Action {
         return [](Client& c) {
           v1::PackageList l;
           if (int rc = c.ListAll(&v1::PackageService::Stub::ListPackages, &l)) return rc;
           Table t{{"NAME", "VERSION", "FILES", "SIZE", "SOURCE", "CREATED", "CREATED_BY",
                    "DESCRIPTION"},
                   {}};
           for (const auto& p : l.packages())
             t.rows.push_back({p.name(), absl::StrCat(p.version()), absl::StrCat(p.files()),
                               Bytes(p.total_bytes()), p.source_site(), p.created_at(),
                               p.created_by(), p.description()});
           Show(c.options(), l, l.next_page_token(), t);
           return kOk;
         };
       }},
      {"describe",
       "package",
       {},
       "A package's newest version and its files",
       OnName(&v1::PackageService::Stub::GetPackage,
              std::function<void(const Options&, const v1::Package&)>(ShowPackage)),
       "get packages --all"},
      {"create",
       "package",
       {},
       "A package from a folder (--source), uploaded to the site's content library",
       UploadSetup(true)},
      {"update",
       "package",
       {},
       "A new version of a package from a folder (--source); only changed files are sent",
       UploadSetup(false),
       "get packages --all"},
      {"delete",
       "package",
       {},
       "A package: every site's library releases its content",
       DeleteByName(&v1::PackageService::Stub::DeletePackage, "package"),
       "get packages --all"},
      {"get",
       "content-status",
       {},
       "Where a package's newest version stands at every site",
       OnName(&v1::PackageService::Stub::GetContentStatus,
              std::function<void(const Options&, const v1::ContentStatus&)>(ShowStatus),
              "The package's name"),
       "get packages --all"},
  };
}

}  // namespace strata::ctl
