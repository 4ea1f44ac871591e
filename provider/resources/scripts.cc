// Scripts (proto/strata/v1/admin/scripts.proto): global data at the CAS and
// primaries. A script runs (resources/script_runs.cc) only once approved,
// and exactly the body approved: the approval is bound to the body's
// SHA-256 and any edit withdraws it. Its author may not approve it unless
// the hierarchy setting script.allow_self_approval is true. Every change,
// approval and refusal is audited with the body's hash.

#include "provider/resources/scripts.h"
#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/content/hash.h"
#include "common/deploy/script.h"
#include "provider/input.h"
#include "provider/listing.h"
#include "provider/rbac.h"
#include "provider/resource.h"
#include "strata/v1/admin/scripts.grpc.pb.h"

namespace strata::provider {
namespace {

constexpr Permission kRead{"script.read", "List scripts, their runs and results"};
constexpr Permission kAuthor{"script.author", "Create, change and delete scripts"};
constexpr Permission kApprove{"script.approve", "Approve scripts (others wrote)"};

std::string ScriptSelect() {
  return absl::StrCat(
      "SELECT s.name, s.description, s.interpreter, s.body, s.sha256, s.parameters, "
      "s.timeout_seconds, s.run_as, s.scopes::text, s.author, s.approved_by, s.approved_sha256, ",
      Ts("s.approved_at"), ", ", Ts("s.updated_at"), ", s.approval_comment FROM scripts s");
}

absl::Status FillScript(const Result& r, size_t i, v1::Script* s, bool with_body = true) {
  s->set_name(r.GetString(i, 0));
  s->set_description(r.GetString(i, 1));
  s->set_interpreter(r.GetString(i, 2));
  if (with_body) s->set_body(r.GetString(i, 3));
  s->set_sha256(r.GetString(i, 4));
  RETURN_IF_ERROR(deploy::ParseParameters(r.GetString(i, 5), s->mutable_parameters()));
  s->set_timeout_seconds(r.GetInt(i, 6));
  s->set_run_as(r.GetString(i, 7));
  for (auto& x : store::ParseTextArray(r.GetString(i, 8))) s->add_scopes(std::move(x));
  s->set_author(r.GetString(i, 9));
  s->set_approved_by(r.GetString(i, 10));
  s->set_approved_sha256(r.GetString(i, 11));
  if (!r.IsNull(i, 12)) s->set_approved_at(r.GetString(i, 12));
  s->set_updated_at(r.GetString(i, 13));
  s->set_approval_comment(r.GetString(i, 14));
  return absl::OkStatus();
}

std::string Summary(const v1::Script& s) {
  return absl::StrCat(s.interpreter(), " script, body sha256 ", s.sha256(), ", ", s.body().size(),
                      " bytes, ", s.parameters_size(), " parameters, timeout ", s.timeout_seconds(),
                      " s, run as ", s.run_as().empty() ? "root" : s.run_as());
}

class ScriptServiceImpl final : public v1::ScriptService::Service {
 public:
  explicit ScriptServiceImpl(CallCore& core) : core_(core) {}

  grpc::Status ListScripts(grpc::ServerContext* ctx, const v1::ListRequest* req,
                           v1::ScriptList* out) override {
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) -> absl::Status {
      out->Clear();
      ListSpec spec;
      spec.select = ScriptSelect();
      store::Params params;
      spec.where = VisibleByScope(call.caller, "s", params);
      spec.filter_columns = {"s.name"};
      spec.order = {{"name", "s.name"}, {"updated", "s.updated_at"}};
      spec.default_order = "s.name";
      absl::Status fill_status;
      RETURN_IF_ERROR(ListPage(call.tx, *req, spec, params, out, [&](const Result& r, size_t i) {
        // A listing shows no bodies (get script NAME does).
        absl::Status s = FillScript(r, i, out->add_scripts(), /*with_body=*/false);
        if (fill_status.ok()) fill_status = s;
      }));
      return fill_status;
    });
  }

  grpc::Status GetScript(grpc::ServerContext* ctx, const v1::GetRequest* req,
                         v1::Script* out) override {
    return core_.Run(*ctx, __func__, kRead.name,
                     [&](Call& call) { return ReadScript(call, req->name(), out); });
  }

  grpc::Status CreateScript(grpc::ServerContext* ctx, const v1::Script* req,
                            v1::Script* out) override {
    return Save(*ctx, __func__, *req, /*create=*/true, out);
  }

  grpc::Status UpdateScript(grpc::ServerContext* ctx, const v1::Script* req,
                            v1::Script* out) override {
    return Save(*ctx, __func__, *req, /*create=*/false, out);
  }

  grpc::Status DeleteScript(grpc::ServerContext* ctx, const v1::GetRequest* req,
                            v1::Deleted* out) override {
    return core_.RunAudited(
        *ctx, __func__, kAuthor.name, "script", req->name(), [&](Call& call) -> absl::Status {
          v1::Script s;
          RETURN_IF_ERROR(ReadScript(call, req->name(), &s));
          // Runs made of it keep their own copy of the body.
          RETURN_IF_ERROR(
              call.tx.Exec("DELETE FROM scripts WHERE name = $1", {req->name()}).status());
          RETURN_IF_ERROR(call.Audit("delete", "script", req->name(), Summary(s)));
          out->set_name(req->name());
          return absl::OkStatus();
        });
  }

  grpc::Status ApproveScript(grpc::ServerContext* ctx, const v1::ApproveScriptRequest* req,
                             v1::Script* out) override {
    return core_.RunAudited(
        *ctx, __func__, kApprove.name, "script", req->name(), [&](Call& call) -> absl::Status {
          Transaction& tx = call.tx;
          v1::Script s;
          RETURN_IF_ERROR(ReadScript(call, req->name(), &s));
          RETURN_IF_ERROR(CheckText("comment", req->comment()));
          if (req->withdraw()) {
            RETURN_IF_ERROR(tx.Exec("UPDATE scripts SET approved_by = '', approved_sha256 = '', "
                                    "approved_at = NULL, approval_comment = $2 WHERE name = $1",
                                    {s.name(), req->comment()})
                                .status());
            RETURN_IF_ERROR(
                call.Audit("withdraw-approval", "script", s.name(),
                           absl::StrCat("body sha256 ", s.sha256(), ": ", req->comment())));
            return ReadScript(call, s.name(), out);
          }
          if (!req->sha256().empty() && req->sha256() != s.sha256())
            return absl::FailedPreconditionError(absl::StrCat(
                "script \"", s.name(), "\" changed since you read it: its body's sha256 is ",
                s.sha256(), ", not ", req->sha256(), " (read it again before approving)"));
          if (s.author() == call.caller.name) {
            ASSIGN_OR_RETURN(Result self,
                             tx.Exec("SELECT 1 FROM global_settings WHERE name = "
                                     "'script.allow_self_approval' AND lower(value) = 'true'"));
            if (self.empty())
              return absl::PermissionDeniedError(absl::StrCat(
                  call.caller.name, " wrote script \"", s.name(),
                  "\" and may not approve it: another administrator with script.approve must "
                  "(the hierarchy setting script.allow_self_approval = true allows it)"));
          }
          RETURN_IF_ERROR(tx.Exec("UPDATE scripts SET approved_by = $2, approved_sha256 = sha256, "
                                  "approved_at = now(), approval_comment = $3 WHERE name = $1",
                                  {s.name(), call.caller.name, req->comment()})
                              .status());
          RETURN_IF_ERROR(
              call.Audit("approve", "script", s.name(),
                         absl::StrCat("body sha256 ", s.sha256(), " written by ", s.author(),
                                      req->comment().empty() ? "" : ": ", req->comment())));
          return ReadScript(call, s.name(), out);
        });
  }

 private:
  grpc::Status Save(const grpc::ServerContext& ctx, const char* method, const v1::Script& req,
                    bool create, v1::Script* out) {
    return core_.RunAudited(
        ctx, method, kAuthor.name, "script", req.name(), [&](Call& call) -> absl::Status {
          Transaction& tx = call.tx;
          RETURN_IF_ERROR(CheckName("name", req.name()));
          v1::Script s = req;
          RETURN_IF_ERROR(deploy::CheckScript(s));
          s.set_sha256(content::Sha256::Of(s.body()));
          std::vector<std::string> scopes = ToVector(req.scopes());
          if (create) {
            ASSIGN_OR_RETURN(Result exists,
                             tx.Exec("SELECT 1 FROM scripts WHERE name = $1", {req.name()}));
            if (!exists.empty())
              return absl::AlreadyExistsError(absl::StrCat(
                  "script \"", req.name(), "\" already exists (update script changes it)"));
            if (scopes.empty()) scopes = {"Default"};
          } else {
            v1::Script before;
            RETURN_IF_ERROR(ReadScript(call, req.name(), &before));
            if (scopes.empty()) scopes = ToVector(before.scopes());
          }
          RETURN_IF_ERROR(CheckScopes(tx, call.caller, scopes));
          // Any edit withdraws the approval: what runs is what was approved.
          RETURN_IF_ERROR(
              tx.Exec(create
                          ? "INSERT INTO scripts (name, description, interpreter, body, sha256, "
                            "parameters, timeout_seconds, run_as, scopes, author) VALUES ($1, $2, "
                            "$3, $4, $5, $6, $7, $8, $9::text[], $10)"
                          : "UPDATE scripts SET description = $2, interpreter = $3, body = $4, "
                            "sha256 = $5, parameters = $6, timeout_seconds = $7, run_as = $8, "
                            "scopes = $9::text[], author = $10, approved_by = '', "
                            "approved_sha256 = '', approved_at = NULL, approval_comment = '', "
                            "updated_at = now() WHERE name = $1",
                      {s.name(), s.description(), s.interpreter(), s.body(), s.sha256(),
                       deploy::ParametersJson(s.parameters()), absl::StrCat(s.timeout_seconds()),
                       s.run_as(), store::TextArrayLiteral(scopes), call.caller.name})
                  .status());
          RETURN_IF_ERROR(
              call.Audit(create ? "create" : "update", "script", s.name(),
                         absl::StrCat(Summary(s), create ? "" : "; approval withdrawn")));
          return ReadScript(call, s.name(), out);
        });
  }

  CallCore& core_;
};

}  // namespace

absl::Status ReadScript(Call& call, const std::string& name, v1::Script* out) {
  ASSIGN_OR_RETURN(Result r,
                   call.tx.Exec(absl::StrCat(ScriptSelect(), " WHERE s.name = $1"), {name}));
  if (r.empty()) return absl::NotFoundError(absl::StrCat("no script \"", name, "\""));
  out->Clear();
  RETURN_IF_ERROR(FillScript(r, 0, out));
  return RequireScopeVisible(call.caller, "script", name, out->scopes());
}

Resource ScriptsResource() {
  return {"scripts", {kRead, kAuthor, kApprove}, [](const ResourceContext& c) {
            return std::make_unique<ScriptServiceImpl>(*c.core);
          }};
}

}  // namespace strata::provider
