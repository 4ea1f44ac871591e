// Runbooks (proto/strata/v1/admin/runbooks.proto): global data at the CAS
// and primaries, in versions. Creating or editing one writes a draft
// (runbook.author); jobs run only the published version; publishing the
// draft, or making an earlier version the published one again (a
// rollback), needs runbook.publish. Every change and every refusal is
// audited with the body's hash.

#include "provider/resources/runbooks.h"

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/content/hash.h"
#include "common/deploy/runbook.h"
#include "common/deploy/script.h"
#include "provider/input.h"
#include "provider/listing.h"
#include "provider/rbac.h"
#include "provider/resource.h"
#include "strata/v1/admin/runbooks.grpc.pb.h"

namespace strata::provider {
namespace {

constexpr Permission kRead{"runbook.read", "List runbooks and runbook worker groups"};
constexpr Permission kAuthor{"runbook.author", "Create runbooks and drafts of them; delete them"};
constexpr Permission kPublish{"runbook.publish",
                              "Publish a runbook's draft, or roll back to an earlier version"};

std::string RunbookSelect() {
  return absl::StrCat(
      "SELECT r.name, r.description, r.tags::text, r.scopes::text, "
      "r.published_version, r.draft_version, ",
      Ts("r.updated_at"), " FROM runbooks r");
}

void FillRunbook(const Result& r, size_t i, v1::Runbook* b) {
  b->set_name(r.GetString(i, 0));
  b->set_description(r.GetString(i, 1));
  for (auto& x : store::ParseTextArray(r.GetString(i, 2))) b->add_tags(std::move(x));
  for (auto& x : store::ParseTextArray(r.GetString(i, 3))) b->add_scopes(std::move(x));
  b->set_published_version(static_cast<int32_t>(r.GetInt(i, 4)));
  b->set_draft_version(static_cast<int32_t>(r.GetInt(i, 5)));
  b->set_updated_at(r.GetString(i, 6));
}

std::string VersionSelect(bool with_body) {
  return absl::StrCat("SELECT version, interpreter, ", with_body ? "body" : "''",
                      ", parameters, timeout_seconds, run_as, on_worker_lost, max_attempts, "
                      "sha256, author, ",
                      Ts("created_at"), ", published_by, ", Ts("published_at"),
                      ", assets::text, resumable FROM runbook_versions");
}

absl::Status FillVersion(const Result& r, size_t i, v1::RunbookDefinition* d) {
  d->set_version(static_cast<int32_t>(r.GetInt(i, 0)));
  d->set_interpreter(r.GetString(i, 1));
  d->set_body(r.GetString(i, 2));
  RETURN_IF_ERROR(deploy::ParseParameters(r.GetString(i, 3), d->mutable_parameters()));
  d->set_timeout_seconds(r.GetInt(i, 4));
  d->set_run_as(r.GetString(i, 5));
  d->set_on_worker_lost(r.GetString(i, 6));
  d->set_max_attempts(static_cast<int32_t>(r.GetInt(i, 7)));
  d->set_sha256(r.GetString(i, 8));
  d->set_author(r.GetString(i, 9));
  d->set_created_at(r.GetString(i, 10));
  d->set_published_by(r.GetString(i, 11));
  if (!r.IsNull(i, 12)) d->set_published_at(r.GetString(i, 12));
  for (auto& x : store::ParseTextArray(r.GetString(i, 13))) d->add_assets(std::move(x));
  d->set_resumable(r.GetBool(i, 14));
  return absl::OkStatus();
}

absl::StatusOr<bool> ReadVersion(Transaction& tx, const std::string& name, int version,
                                 v1::RunbookDefinition* out) {
  if (version <= 0) return false;
  ASSIGN_OR_RETURN(
      Result r, tx.Exec(absl::StrCat(VersionSelect(true), " WHERE runbook = $1 AND version = $2"),
                        {name, absl::StrCat(version)}));
  if (r.empty()) return false;
  RETURN_IF_ERROR(FillVersion(r, 0, out));
  return true;
}

std::string Summary(const v1::RunbookDefinition& d) {
  return absl::StrCat(d.interpreter(), " runbook, body sha256 ", d.sha256(), ", ", d.body().size(),
                      " bytes, ", d.parameters_size(), " parameters, timeout ", d.timeout_seconds(),
                      " s, run as ", d.run_as().empty() ? "root" : d.run_as(), ", on worker lost ",
                      d.on_worker_lost(), " (", d.max_attempts(), " attempts)",
                      d.resumable() ? ", resumable" : "");
}

class RunbookServiceImpl final : public v1::RunbookService::Service {
 public:
  explicit RunbookServiceImpl(CallCore& core) : core_(core) {}

  grpc::Status ListRunbooks(grpc::ServerContext* ctx, const v1::ListRequest* req,
                            v1::RunbookList* out) override {
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) -> absl::Status {
      out->Clear();
      ListSpec spec;
      spec.select = RunbookSelect();
      store::Params params;
      spec.where = VisibleByScope(call.caller, "r", params);
      spec.filter_columns = {"r.name", "array_to_string(r.tags, ',')"};
      spec.order = {{"name", "r.name"}, {"updated", "r.updated_at"}};
      spec.default_order = "r.name";
      return ListPage(call.tx, *req, spec, params, out,
                      [&](const Result& r, size_t i) { FillRunbook(r, i, out->add_runbooks()); });
    });
  }

  grpc::Status GetRunbook(grpc::ServerContext* ctx, const v1::GetRunbookRequest* req,
                          v1::Runbook* out) override {
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) -> absl::Status {
      RETURN_IF_ERROR(ReadRunbook(call, req->name(), out));
      if (req->version() > 0) {
        ASSIGN_OR_RETURN(bool found, ReadVersion(call.tx, out->name(), req->version(),
                                                 out->mutable_definition()));
        if (!found)
          return absl::NotFoundError(
              absl::StrCat("runbook \"", out->name(), "\" has no version ", req->version()));
      }
      if (req->versions()) {
        ASSIGN_OR_RETURN(Result r, call.tx.Exec(absl::StrCat(VersionSelect(false),
                                                             " WHERE runbook = $1 ORDER BY "
                                                             "version DESC"),
                                                {out->name()}));
        for (size_t i = 0; i < r.size(); ++i)
          RETURN_IF_ERROR(FillVersion(r, i, out->add_versions()));
      }
      return absl::OkStatus();
    });
  }

  grpc::Status CreateRunbook(grpc::ServerContext* ctx, const v1::Runbook* req,
                             v1::Runbook* out) override {
    return Save(*ctx, __func__, *req, /*create=*/true, out);
  }

  grpc::Status UpdateRunbook(grpc::ServerContext* ctx, const v1::Runbook* req,
                             v1::Runbook* out) override {
    return Save(*ctx, __func__, *req, /*create=*/false, out);
  }

  grpc::Status DeleteRunbook(grpc::ServerContext* ctx, const v1::GetRequest* req,
                             v1::Deleted* out) override {
    return core_.RunAudited(
        *ctx, __func__, kAuthor.name, "runbook", req->name(), [&](Call& call) -> absl::Status {
          v1::Runbook b;
          RETURN_IF_ERROR(ReadRunbook(call, req->name(), &b));
          // Jobs keep their own copy of the version they run.
          RETURN_IF_ERROR(
              call.tx.Exec("DELETE FROM runbook_versions WHERE runbook = $1", {b.name()}).status());
          RETURN_IF_ERROR(
              call.tx.Exec("DELETE FROM runbooks WHERE name = $1", {b.name()}).status());
          RETURN_IF_ERROR(call.Audit("delete", "runbook", b.name(),
                                     absl::StrCat("published version ", b.published_version(),
                                                  ", draft version ", b.draft_version())));
          out->set_name(b.name());
          return absl::OkStatus();
        });
  }

  grpc::Status PublishRunbook(grpc::ServerContext* ctx, const v1::PublishRunbookRequest* req,
                              v1::Runbook* out) override {
    return core_.RunAudited(
        *ctx, __func__, kPublish.name, "runbook", req->name(), [&](Call& call) -> absl::Status {
          v1::Runbook b;
          RETURN_IF_ERROR(ReadRunbook(call, req->name(), &b));
          const bool draft = req->version() == 0;
          const int version = draft ? b.draft_version() : req->version();
          if (draft && version == 0)
            return absl::FailedPreconditionError(absl::StrCat(
                "runbook \"", b.name(), "\" has no draft to publish (published: ",
                b.published_version() == 0 ? std::string("none")
                                           : absl::StrCat("version ", b.published_version()),
                ")"));
          if (!draft && version == b.draft_version())
            return absl::InvalidArgumentError(absl::StrCat(
                "version ", version, " of runbook \"", b.name(),
                "\" is its draft: publish it without --version (a rollback names an earlier one)"));
          v1::RunbookDefinition d;
          ASSIGN_OR_RETURN(bool found, ReadVersion(call.tx, b.name(), version, &d));
          if (!found)
            return absl::NotFoundError(
                absl::StrCat("runbook \"", b.name(), "\" has no version ", version));
          if (!req->sha256().empty() && req->sha256() != d.sha256())
            return absl::FailedPreconditionError(absl::StrCat(
                "version ", version, " of runbook \"", b.name(), "\" has body sha256 ", d.sha256(),
                ", not ", req->sha256(), " (read it again before publishing)"));
          if (!draft && version == b.published_version())
            return absl::FailedPreconditionError(absl::StrCat("version ", version, " of runbook \"",
                                                              b.name(), "\" is published already"));
          RETURN_IF_ERROR(call.tx
                              .Exec("UPDATE runbooks SET published_version = $2, draft_version = "
                                    "CASE WHEN $3 THEN 0 ELSE draft_version END, updated_at = "
                                    "now() WHERE name = $1",
                                    {b.name(), absl::StrCat(version), draft ? "t" : "f"})
                              .status());
          RETURN_IF_ERROR(call.tx
                              .Exec("UPDATE runbook_versions SET published_by = $3, published_at "
                                    "= now() WHERE runbook = $1 AND version = $2",
                                    {b.name(), absl::StrCat(version), call.caller.name})
                              .status());
          RETURN_IF_ERROR(call.Audit(draft ? "publish" : "rollback", "runbook", b.name(),
                                     absl::StrCat("version ", version, " (was ",
                                                  b.published_version(), "): ", Summary(d))));
          return ReadRunbook(call, b.name(), out);
        });
  }

 private:
  grpc::Status Save(const grpc::ServerContext& ctx, const char* method, const v1::Runbook& req,
                    bool create, v1::Runbook* out) {
    return core_.RunAudited(
        ctx, method, kAuthor.name, "runbook", req.name(), [&](Call& call) -> absl::Status {
          Transaction& tx = call.tx;
          RETURN_IF_ERROR(CheckName("name", req.name()));
          RETURN_IF_ERROR(deploy::CheckRunbookLabels(req));
          v1::RunbookDefinition d = req.definition();
          RETURN_IF_ERROR(deploy::CheckRunbookDefinition(d));
          d.set_sha256(content::Sha256::Of(d.body()));
          std::vector<std::string> scopes = ToVector(req.scopes());
          int version = 1;
          bool in_place = false;
          if (create) {
            ASSIGN_OR_RETURN(Result exists,
                             tx.Exec("SELECT 1 FROM runbooks WHERE name = $1", {req.name()}));
            if (!exists.empty())
              return absl::AlreadyExistsError(absl::StrCat(
                  "runbook \"", req.name(), "\" already exists (update runbook makes a draft)"));
            if (scopes.empty()) scopes = {"Default"};
          } else {
            v1::Runbook before;
            RETURN_IF_ERROR(ReadRunbook(call, req.name(), &before));
            if (scopes.empty()) scopes = ToVector(before.scopes());
            ASSIGN_OR_RETURN(Result latest, tx.Exec("SELECT latest_version FROM runbooks WHERE "
                                                    "name = $1 FOR UPDATE",
                                                    {req.name()}));
            in_place = before.draft_version() > 0;
            version = in_place ? before.draft_version() : static_cast<int>(latest.GetInt(0, 0)) + 1;
          }
          RETURN_IF_ERROR(CheckScopes(tx, call.caller, scopes));
          const store::Params values = {req.name(),
                                        absl::StrCat(version),
                                        d.interpreter(),
                                        d.body(),
                                        d.sha256(),
                                        deploy::ParametersJson(d.parameters()),
                                        absl::StrCat(d.timeout_seconds()),
                                        d.run_as(),
                                        d.on_worker_lost(),
                                        absl::StrCat(d.max_attempts()),
                                        call.caller.name,
                                        store::TextArrayLiteral(ToVector(d.assets())),
                                        d.resumable() ? "true" : "false"};
          RETURN_IF_ERROR(
              tx.Exec(in_place
                          ? "UPDATE runbook_versions SET interpreter = $3, body = $4, sha256 = $5, "
                            "parameters = $6, timeout_seconds = $7, run_as = $8, on_worker_lost = "
                            "$9, max_attempts = $10, author = $11, assets = $12::text[], "
                            "resumable = $13::boolean, created_at = now() WHERE runbook = $1 AND "
                            "version = $2"
                          : "INSERT INTO runbook_versions (runbook, version, interpreter, body, "
                            "sha256, parameters, timeout_seconds, run_as, on_worker_lost, "
                            "max_attempts, author, assets, resumable) VALUES ($1, $2, $3, $4, "
                            "$5, $6, $7, $8, $9, $10, $11, $12::text[], $13::boolean)",
                      values)
                  .status());
          RETURN_IF_ERROR(
              tx.Exec(create ? "INSERT INTO runbooks (name, description, tags, scopes, "
                               "draft_version, latest_version) VALUES ($1, $2, $3::text[], "
                               "$4::text[], $5, $5)"
                             : "UPDATE runbooks SET description = $2, tags = $3::text[], scopes "
                               "= $4::text[], draft_version = $5, latest_version = "
                               "greatest(latest_version, $5), updated_at = now() WHERE name = $1",
                      {req.name(), req.description(), store::TextArrayLiteral(ToVector(req.tags())),
                       store::TextArrayLiteral(scopes), absl::StrCat(version)})
                  .status());
          RETURN_IF_ERROR(call.Audit(create ? "create" : "update", "runbook", req.name(),
                                     absl::StrCat("draft version ", version, ": ", Summary(d))));
          return ReadRunbook(call, req.name(), out);
        });
  }

  CallCore& core_;
};

}  // namespace

absl::Status ReadRunbook(Call& call, const std::string& name, v1::Runbook* out) {
  ASSIGN_OR_RETURN(Result r,
                   call.tx.Exec(absl::StrCat(RunbookSelect(), " WHERE r.name = $1"), {name}));
  if (r.empty()) return absl::NotFoundError(absl::StrCat("no runbook \"", name, "\""));
  out->Clear();
  FillRunbook(r, 0, out);
  RETURN_IF_ERROR(RequireScopeVisible(call.caller, "runbook", name, out->scopes()));
  RETURN_IF_ERROR(
      ReadVersion(call.tx, name, out->published_version(), out->mutable_definition()).status());
  if (out->draft_version() > 0)
    RETURN_IF_ERROR(
        ReadVersion(call.tx, name, out->draft_version(), out->mutable_draft()).status());
  return absl::OkStatus();
}

Resource RunbooksResource() {
  return {"runbooks", {kRead, kAuthor, kPublish}, [](const ResourceContext& c) {
            return std::make_unique<RunbookServiceImpl>(*c.core);
          }};
}

}  // namespace strata::provider
