// Packages (proto/strata/v1/admin/packages.proto): uploads relayed to the
// site server's content library, versions recorded as global data, and every
// site's content state.

#include <map>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/content/manifest.h"
#include "common/net/tls.h"
#include "provider/input.h"
#include "provider/listing.h"
#include "provider/resource.h"
#include "strata/v1/admin/packages.grpc.pb.h"
#include "strata/v1/content.grpc.pb.h"

namespace strata::provider {
namespace {

constexpr Permission kRead{"package.read", "List packages and their content status"};
constexpr Permission kCreate{"package.create", "Create packages and new versions of them"};
constexpr Permission kDelete{"package.delete", "Delete packages"};

constexpr char kPackageSelect[] =
    "SELECT p.name, p.description, p.source_site, v.version, v.files, v.total_bytes, "
    "v.created_by, {ts} AS created_at FROM packages p LEFT JOIN LATERAL (SELECT * FROM "
    "package_versions w "
    "WHERE w.package = p.name ORDER BY w.version DESC LIMIT 1) v ON true";

std::string PackageSelect() {
  std::string s = kPackageSelect;
  s.replace(s.find("{ts}"), 4, Ts("v.created_at"));
  return s;
}

void FillPackage(const Result& r, size_t i, v1::Package* p) {
  p->set_name(r.GetString(i, 0));
  p->set_description(r.GetString(i, 1));
  p->set_source_site(r.GetString(i, 2));
  p->set_version(r.GetInt(i, 3));
  p->set_files(static_cast<int32_t>(r.GetInt(i, 4)));
  p->set_total_bytes(r.GetInt(i, 5));
  p->set_created_by(r.GetString(i, 6));
  p->set_created_at(r.GetString(i, 7));
}

class PackageServiceImpl final : public v1::PackageService::Service {
 public:
  explicit PackageServiceImpl(const ResourceContext& c)
      : core_(*c.core),
        library_(c.site_channel ? v1::ContentLibrary::NewStub(c.site_channel) : nullptr) {}

  grpc::Status ListPackages(grpc::ServerContext* ctx, const v1::ListRequest* req,
                            v1::PackageList* out) override {
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) {
      out->Clear();
      ListSpec spec;
      spec.select = absl::StrCat("SELECT * FROM (", PackageSelect(), ") x");
      spec.filter_columns = {"name"};
      spec.order = {{"name", "name"}, {"size", "total_bytes"}, {"created", "created_at"}};
      spec.default_order = "name";
      return ListPage(call.tx, *req, spec, {}, out,
                      [&](const Result& r, size_t i) { FillPackage(r, i, out->add_packages()); });
    });
  }

  grpc::Status GetPackage(grpc::ServerContext* ctx, const v1::GetRequest* req,
                          v1::Package* out) override {
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) -> absl::Status {
      out->Clear();
      ASSIGN_OR_RETURN(Result r, call.tx.Exec(absl::StrCat(PackageSelect(), " WHERE p.name = $1"),
                                              {req->name()}));
      if (r.empty()) return NoPackage(req->name());
      FillPackage(r, 0, out);
      ASSIGN_OR_RETURN(Result f, call.tx.Exec("SELECT path, size, mode, sha256 FROM package_files "
                                              "WHERE package = $1 AND version = $2 ORDER BY path",
                                              {req->name(), std::to_string(out->version())}));
      for (size_t i = 0; i < f.size(); ++i) {
        v1::ContentFile* file = out->add_file_list();
        file->set_path(f.GetString(i, 0));
        file->set_size(f.GetInt(i, 1));
        file->set_mode(static_cast<uint32_t>(f.GetInt(i, 2)));
        file->set_sha256(f.GetString(i, 3));
      }
      return absl::OkStatus();
    });
  }

  grpc::Status PlanPackageUpload(grpc::ServerContext* ctx, const v1::PackageUpload* req,
                                 v1::UploadPlan* out) override {
    return core_.Run(*ctx, __func__, kCreate.name, [&](Call& call) -> absl::Status {
      out->Clear();
      ASSIGN_OR_RETURN(int64_t version, CheckUpload(call, *req));
      ASSIGN_OR_RETURN(v1::BlobStates states, States(*ctx, req->manifest()));
      std::map<std::string, int64_t> sizes = SizesOf(req->manifest());
      for (const v1::BlobState& b : states.blobs()) {
        const int64_t size = sizes[b.sha256()];
        out->set_bytes_total(out->bytes_total() + size);
        if (b.present()) continue;
        *out->add_missing() = b;
        out->set_bytes_to_send(out->bytes_to_send() + size - b.partial_bytes());
      }
      out->set_version(version);
      return absl::OkStatus();
    });
  }

  grpc::Status UploadBlob(grpc::ServerContext* ctx, grpc::ServerReader<v1::PutBlobChunk>* in,
                          v1::PutBlobResult* out) override {
    // The caller's right is checked (and a refusal audited) first; the bytes
    // then go to the site server's library, which verifies them.
    grpc::Status allowed = core_.Run(*ctx, __func__, kCreate.name, [&](Call&) -> absl::Status {
      return library_ ? absl::OkStatus() : NoSite();
    });
    if (!allowed.ok()) return allowed;
    grpc::ClientContext site_ctx;
    auto writer = library_->PutBlob(&site_ctx, out);
    v1::PutBlobChunk chunk;
    bool sent_all = true;
    while (in->Read(&chunk)) {
      if (!writer->Write(chunk)) {
        sent_all = false;
        break;
      }
    }
    if (ctx->IsCancelled()) {
      site_ctx.TryCancel();
      sent_all = false;
    }
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    if (!s.ok()) return s;
    if (!sent_all) return grpc::Status(grpc::StatusCode::CANCELLED, "upload interrupted");
    return grpc::Status::OK;
  }

  grpc::Status CommitPackageVersion(grpc::ServerContext* ctx, const v1::PackageUpload* req,
                                    v1::Package* out) override {
    return core_.Run(*ctx, __func__, kCreate.name, [&](Call& call) -> absl::Status {
      out->Clear();
      ASSIGN_OR_RETURN(int64_t version, CheckUpload(call, *req));
      // The chunk lists come from the site's library, computed from the
      // bytes it verified, never from the uploader.
      ASSIGN_OR_RETURN(v1::BlobStates states, States(*ctx, req->manifest(), /*chunks=*/true));
      int missing = 0;
      std::map<std::string, const v1::BlobState*> chunks;
      for (const v1::BlobState& b : states.blobs()) {
        missing += b.present() ? 0 : 1;
        chunks[b.sha256()] = &b;
      }
      if (missing > 0) {
        return absl::FailedPreconditionError(
            absl::StrCat(missing, " of the version's blobs are not in site ", call.site(),
                         "'s content library yet: upload them first (stratactl uploads and "
                         "commits in one command)"));
      }
      const v1::ContentManifest& m = req->manifest();
      int64_t total = 0;
      std::vector<std::string> paths, sizes, modes, hashes, chunk_bytes, chunk_hashes;
      for (const v1::ContentFile& f : m.files()) {
        total += f.size();
        paths.push_back(f.path());
        sizes.push_back(std::to_string(f.size()));
        modes.push_back(std::to_string(f.mode()));
        hashes.push_back(f.sha256());
        const v1::BlobState* b = chunks[f.sha256()];
        if (b != nullptr && b->size() != f.size())
          return absl::InvalidArgumentError(
              absl::StrCat("file \"", f.path(), "\": size ", f.size(), ", but its blob ",
                           f.sha256(), " in the content library has ", b->size(), " bytes"));
        chunk_bytes.push_back(std::to_string(b == nullptr ? 0 : b->chunk_bytes()));
        chunk_hashes.push_back(b == nullptr ? "" : b->chunk_sha256());
      }
      if (req->new_package()) {
        RETURN_IF_ERROR(call.tx
                            .Exec("INSERT INTO packages (name, description, source_site, "
                                  "created_by) VALUES ($1, $2, $3, $4)",
                                  {req->name(), req->description(), call.site(), call.caller.name})
                            .status());
      } else if (!req->description().empty()) {
        RETURN_IF_ERROR(call.tx
                            .Exec("UPDATE packages SET description = $2 WHERE name = $1",
                                  {req->name(), req->description()})
                            .status());
      }
      RETURN_IF_ERROR(
          call.tx
              .Exec("INSERT INTO package_versions (package, version, files, "
                    "total_bytes, created_by) VALUES ($1, $2, $3, $4, $5)",
                    {req->name(), std::to_string(version), std::to_string(m.files_size()),
                     std::to_string(total), call.caller.name})
              .status());
      RETURN_IF_ERROR(
          call.tx
              .Exec("INSERT INTO package_files (package, version, path, size, mode, sha256, "
                    "chunk_bytes, chunk_sha256) SELECT $1, $2, * FROM unnest($3::text[], "
                    "$4::bigint[], $5::int[], $6::text[], $7::bigint[], $8::text[])",
                    {req->name(), std::to_string(version), store::TextArrayLiteral(paths),
                     store::TextArrayLiteral(sizes), store::TextArrayLiteral(modes),
                     store::TextArrayLiteral(hashes), store::TextArrayLiteral(chunk_bytes),
                     store::TextArrayLiteral(chunk_hashes)})
              .status());
      RETURN_IF_ERROR(call.Audit(
          req->new_package() ? "create" : "update", "package", req->name(),
          absl::StrCat("version ", version, ": ", m.files_size(), " files, ", total, " bytes")));
      ASSIGN_OR_RETURN(Result r, call.tx.Exec(absl::StrCat(PackageSelect(), " WHERE p.name = $1"),
                                              {req->name()}));
      if (!r.empty()) FillPackage(r, 0, out);
      return absl::OkStatus();
    });
  }

  grpc::Status DeletePackage(grpc::ServerContext* ctx, const v1::GetRequest* req,
                             v1::Deleted* out) override {
    return core_.Run(*ctx, __func__, kDelete.name, [&](Call& call) -> absl::Status {
      ASSIGN_OR_RETURN(Result used, call.tx.Exec("SELECT name FROM applications WHERE $1 = "
                                                 "ANY(packages) ORDER BY name LIMIT 1",
                                                 {req->name()}));
      if (!used.empty())
        return absl::FailedPreconditionError(
            absl::StrCat("package \"", req->name(), "\" is the content of application \"",
                         used.GetString(0, 0), "\": change or delete the application first"));
      ASSIGN_OR_RETURN(Result r, call.tx.Exec("DELETE FROM packages WHERE name = $1 RETURNING 1",
                                              {req->name()}));
      if (r.empty()) return NoPackage(req->name());
      ASSIGN_OR_RETURN(Result files,
                       call.tx.Exec("DELETE FROM package_files WHERE package = $1", {req->name()}));
      ASSIGN_OR_RETURN(Result versions,
                       call.tx.Exec("DELETE FROM package_versions WHERE package = $1 "
                                    "RETURNING version",
                                    {req->name()}));
      RETURN_IF_ERROR(call.Audit(
          "delete", "package", req->name(),
          absl::StrCat(versions.size(), " versions, ", files.affected_rows(), " file records")));
      out->set_name(req->name());
      return absl::OkStatus();
    });
  }

  grpc::Status GetContentStatus(grpc::ServerContext* ctx, const v1::GetRequest* req,
                                v1::ContentStatus* out) override {
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) -> absl::Status {
      out->Clear();
      ASSIGN_OR_RETURN(Result v, call.tx.Exec("SELECT max(version) FROM package_versions "
                                              "WHERE package = $1",
                                              {req->name()}));
      if (v.IsNull(0, 0)) return NoPackage(req->name());
      const std::string version = v.GetString(0, 0);
      out->set_package(req->name());
      out->set_version(v.GetInt(0, 0));
      ASSIGN_OR_RETURN(
          Result s,
          call.tx.Exec(absl::StrCat("SELECT site_code, location, state, bytes_done, bytes_total, "
                                    "error, ",
                                    Ts("updated_at"),
                                    " FROM content_status WHERE package = $1 AND version = $2 "
                                    "ORDER BY site_code, location <> 'site', location"),
                       {req->name(), version}));
      for (size_t i = 0; i < s.size(); ++i) {
        v1::SiteContentState* st = out->add_states();
        st->set_site_code(s.GetString(i, 0));
        st->set_location(s.GetString(i, 1));
        st->set_state(s.GetString(i, 2));
        st->set_bytes_done(s.GetInt(i, 3));
        st->set_bytes_total(s.GetInt(i, 4));
        st->set_error(s.GetString(i, 5));
        st->set_updated_at(s.GetString(i, 6));
      }
      ASSIGN_OR_RETURN(
          Result quiet,
          call.tx.Exec("SELECT code FROM sites s WHERE NOT EXISTS (SELECT 1 FROM "
                       "content_status c WHERE c.site_code = s.code AND c.location = 'site' AND "
                       "c.package = $1 AND c.version = $2) ORDER BY code",
                       {req->name(), version}));
      for (size_t i = 0; i < quiet.size(); ++i) out->add_sites_not_reporting(quiet.GetString(i, 0));
      ASSIGN_OR_RETURN(
          Result f,
          call.tx.Exec(absl::StrCat("SELECT site_code, location, sha256, found, files, ",
                                    Ts("detected_at"), ", ", Ts("repaired_at"),
                                    " FROM content_validation_failures WHERE sha256 IN (SELECT "
                                    "sha256 FROM package_files WHERE package = $1 AND version = "
                                    "$2) ORDER BY detected_at DESC LIMIT 1000"),
                       {req->name(), version}));
      for (size_t i = 0; i < f.size(); ++i) {
        v1::ValidationFailure* x = out->add_failures();
        x->set_site_code(f.GetString(i, 0));
        x->set_location(f.GetString(i, 1));
        x->set_sha256(f.GetString(i, 2));
        x->set_found(f.GetString(i, 3));
        x->set_files(f.GetString(i, 4));
        x->set_detected_at(f.GetString(i, 5));
        x->set_repaired_at(f.GetString(i, 6));
      }
      return absl::OkStatus();
    });
  }

 private:
  static absl::Status NoPackage(const std::string& name) {
    return absl::NotFoundError(absl::StrCat("no package \"", name, "\""));
  }
  static absl::Status NoSite() {
    return absl::FailedPreconditionError(
        "this provider has no site_address: uploads go to the site server's content library");
  }

  static std::map<std::string, int64_t> SizesOf(const v1::ContentManifest& m) {
    std::map<std::string, int64_t> out;
    for (const v1::ContentFile& f : m.files()) out[f.sha256()] = f.size();
    return out;
  }

  // The checks of an upload; the version a commit would make.
  absl::StatusOr<int64_t> CheckUpload(Call& call, const v1::PackageUpload& req) {
    RETURN_IF_ERROR(CheckName("name", req.name()));
    RETURN_IF_ERROR(CheckText("description", req.description()));
    if (req.manifest().files_size() == 0)
      return absl::InvalidArgumentError("manifest: a package version holds at least one file");
    RETURN_IF_ERROR(content::CheckManifest(req.manifest()));
    if (!library_) return NoSite();
    ASSIGN_OR_RETURN(Result site, call.tx.Exec("SELECT coalesce(parent, '') FROM sites WHERE "
                                               "code = $1",
                                               {call.site()}));
    if (!site.empty() && !site.GetString(0, 0).empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "packages are made at the top of the hierarchy (", site.GetString(0, 0),
          "), from where content flows down to every site; site ", call.site(), " is below it"));
    }
    ASSIGN_OR_RETURN(Result r, call.tx.Exec("SELECT (SELECT count(*) FROM packages WHERE name = "
                                            "$1), (SELECT coalesce(max(version), 0) FROM "
                                            "package_versions WHERE package = $1)",
                                            {req.name()}));
    const bool exists = r.GetInt(0, 0) > 0;
    if (req.new_package() && exists)
      return absl::AlreadyExistsError(absl::StrCat(
          "package \"", req.name(), "\" already exists (a new version: update package)"));
    if (!req.new_package() && !exists) return NoPackage(req.name());
    return r.GetInt(0, 1) + 1;
  }

  absl::StatusOr<v1::BlobStates> States(const grpc::ServerContext& ctx,
                                        const v1::ContentManifest& m, bool chunks = false) {
    v1::BlobStatesRequest q;
    q.set_chunks(chunks);
    for (const content::BlobRef& b : content::DistinctBlobs(m)) q.add_sha256(b.sha256);
    grpc::ClientContext site_ctx;
    site_ctx.set_deadline(ctx.deadline());
    v1::BlobStates out;
    absl::Status s = FromGrpcStatus(library_->GetBlobStates(&site_ctx, q, &out));
    if (!s.ok()) return Annotate(s, "the site server's content library");
    return out;
  }

  CallCore& core_;
  std::unique_ptr<v1::ContentLibrary::Stub> library_;
};

}  // namespace

Resource PackagesResource() {
  return {"packages", {kRead, kCreate, kDelete}, [](const ResourceContext& c) {
            return std::make_unique<PackageServiceImpl>(c);
          }};
}

}  // namespace strata::provider
