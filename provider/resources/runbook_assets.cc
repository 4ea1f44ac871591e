// Runbook assets (proto/strata/v1/admin/runbook_assets.proto): global data
// every site holds. Secrets (encrypted variables, credentials' secrets,
// certificates' keys) are sealed here with the hierarchy's asset key
// (common/net/asset_key.h) and never returned; changes are audited without
// values. runbook.assets changes them; runbook.read lists them.

#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/inventory/report_check.h"
#include "common/net/asset_key.h"
#include "provider/input.h"
#include "provider/listing.h"
#include "provider/rbac.h"
#include "provider/resource.h"
#include "strata/v1/admin/runbook_assets.grpc.pb.h"

namespace strata::provider {
namespace {

constexpr Permission kAssets{"runbook.assets",
                             "Create and change runbook assets (secrets are never shown)"};
constexpr char kRead[] = "runbook.read";  // resources/runbooks.cc
constexpr size_t kMaxValueBytes = 64 * 1024;

std::string AssetSelect() {
  return absl::StrCat(
      "SELECT a.name, a.kind, a.description, a.encrypted, a.value, a.user_name, "
      "a.certificate, a.scopes::text, a.created_by, ",
      Ts("a.updated_at"), " FROM runbook_assets a");
}

void FillAsset(const Result& r, size_t i, v1::RunbookAssetInfo* a) {
  a->set_name(r.GetString(i, 0));
  a->set_kind(r.GetString(i, 1));
  a->set_description(r.GetString(i, 2));
  a->set_encrypted(r.GetBool(i, 3));
  a->set_value(r.GetString(i, 4));  // a plain variable's only
  a->set_user(r.GetString(i, 5));
  a->set_certificate(r.GetString(i, 6));
  for (auto& x : store::ParseTextArray(r.GetString(i, 7))) a->add_scopes(std::move(x));
  a->set_created_by(r.GetString(i, 8));
  a->set_updated_at(r.GetString(i, 9));
}

bool IsAssetName(const std::string& s) {
  if (s.empty() || s.size() > 64 || s[0] < 'a' || s[0] > 'z') return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  return true;
}

absl::Status CheckValue(const std::string& what, const std::string& v) {
  if (v.size() > kMaxValueBytes || !inventory::IsCleanText(v))
    return absl::InvalidArgumentError(absl::StrCat(what, ": at most 64 KiB of text"));
  return absl::OkStatus();
}

absl::Status ReadAsset(Call& call, const std::string& name, v1::RunbookAssetInfo* out) {
  ASSIGN_OR_RETURN(Result r,
                   call.tx.Exec(absl::StrCat(AssetSelect(), " WHERE a.name = $1"), {name}));
  if (r.empty()) return absl::NotFoundError(absl::StrCat("no runbook asset \"", name, "\""));
  out->Clear();
  FillAsset(r, 0, out);
  return RequireScopeVisible(call.caller, "runbook asset", name, out->scopes());
}

class RunbookAssetServiceImpl final : public v1::RunbookAssetService::Service {
 public:
  RunbookAssetServiceImpl(CallCore& core, const v1::ProviderConfig* config) : core_(core) {
    if (config != nullptr && !config->asset_key_file().empty()) {
      auto key = AssetKey::Load(config->asset_key_file());
      if (key.ok()) {
        key_ = *key;
      } else {
        key_error_ = std::string(key.status().message());
        LogWarning("provider.asset_key_unreadable", {{"error", key.status()}});
      }
    } else {
      key_error_ = "this provider has no asset key (asset_key_file, --asset_key_file)";
    }
  }

  grpc::Status ListRunbookAssets(grpc::ServerContext* ctx, const v1::ListRequest* req,
                                 v1::RunbookAssetList* out) override {
    return core_.Run(*ctx, __func__, kRead, [&](Call& call) -> absl::Status {
      out->Clear();
      ListSpec spec;
      spec.select = AssetSelect();
      store::Params params;
      spec.where = VisibleByScope(call.caller, "a", params);
      spec.filter_columns = {"a.name"};
      spec.order = {{"name", "a.name"}, {"kind", "a.kind"}};
      spec.default_order = "a.name";
      return ListPage(call.tx, *req, spec, params, out,
                      [&](const Result& r, size_t i) { FillAsset(r, i, out->add_assets()); });
    });
  }

  grpc::Status GetRunbookAsset(grpc::ServerContext* ctx, const v1::GetRequest* req,
                               v1::RunbookAssetInfo* out) override {
    return core_.Run(*ctx, __func__, kRead,
                     [&](Call& call) { return ReadAsset(call, req->name(), out); });
  }

  grpc::Status CreateRunbookAsset(grpc::ServerContext* ctx, const v1::RunbookAssetInfo* req,
                                  v1::RunbookAssetInfo* out) override {
    return Save(*ctx, __func__, *req, /*create=*/true, out);
  }

  grpc::Status UpdateRunbookAsset(grpc::ServerContext* ctx, const v1::RunbookAssetInfo* req,
                                  v1::RunbookAssetInfo* out) override {
    return Save(*ctx, __func__, *req, /*create=*/false, out);
  }

  grpc::Status DeleteRunbookAsset(grpc::ServerContext* ctx, const v1::GetRequest* req,
                                  v1::Deleted* out) override {
    return core_.RunAudited(
        *ctx, __func__, kAssets.name, "runbook asset", req->name(),
        [&](Call& call) -> absl::Status {
          v1::RunbookAssetInfo a;
          RETURN_IF_ERROR(ReadAsset(call, req->name(), &a));
          RETURN_IF_ERROR(
              call.tx.Exec("DELETE FROM runbook_assets WHERE name = $1", {a.name()}).status());
          RETURN_IF_ERROR(call.Audit("delete", "runbook asset", a.name(), a.kind()));
          out->set_name(a.name());
          return absl::OkStatus();
        });
  }

 private:
  grpc::Status Save(const grpc::ServerContext& ctx, const char* method,
                    const v1::RunbookAssetInfo& req, bool create, v1::RunbookAssetInfo* out) {
    return core_.RunAudited(
        ctx, method, kAssets.name, "runbook asset", req.name(), [&](Call& call) -> absl::Status {
          Transaction& tx = call.tx;
          if (!IsAssetName(req.name()))
            return absl::InvalidArgumentError(absl::StrCat(
                "name \"", req.name(), "\": 1 to 64 of [a-z0-9_] starting with a letter"));
          RETURN_IF_ERROR(CheckText("description", req.description(), 4096));
          for (const auto& [what, v] :
               {std::pair<const char*, const std::string*>{"value", &req.value()},
                {"user", &req.user()},
                {"secret", &req.secret()},
                {"certificate", &req.certificate()},
                {"private_key", &req.private_key()}})
            RETURN_IF_ERROR(CheckValue(what, *v));
          const std::string& k = req.kind();
          bool encrypted = true;
          std::string value, user, certificate, secret;
          if (k == "variable") {
            if (!req.user().empty() || !req.secret().empty() || !req.certificate().empty() ||
                !req.private_key().empty())
              return absl::InvalidArgumentError("a variable has a value only");
            encrypted = req.encrypted();
            (encrypted ? secret : value) = req.value();
          } else if (k == "credential") {
            if (req.user().empty() || !req.value().empty() || !req.certificate().empty())
              return absl::InvalidArgumentError("a credential has a user and a secret");
            user = req.user();
            secret = req.secret();
          } else if (k == "certificate") {
            if (!absl::StrContains(req.certificate(), "-----BEGIN CERTIFICATE-----") ||
                !absl::StrContains(req.private_key(), "PRIVATE KEY-----"))
              return absl::InvalidArgumentError(
                  "a certificate asset has a PEM certificate and its PEM private key");
            certificate = req.certificate();
            secret = req.private_key();
          } else {
            return absl::InvalidArgumentError(
                absl::StrCat("kind \"", k, "\": variable, credential or certificate"));
          }
          std::string sealed;
          if (encrypted) {
            if (!key_)
              return absl::FailedPreconditionError(
                  absl::StrCat("cannot store a secret: ", key_error_,
                               " (the hierarchy's assets.key, made by deploy/pki.sh)"));
            ASSIGN_OR_RETURN(sealed, key_->Seal(secret, req.name()));
          }
          std::vector<std::string> scopes = ToVector(req.scopes());
          if (create) {
            ASSIGN_OR_RETURN(Result exists,
                             tx.Exec("SELECT 1 FROM runbook_assets WHERE name = $1", {req.name()}));
            if (!exists.empty())
              return absl::AlreadyExistsError(
                  absl::StrCat("runbook asset \"", req.name(), "\" already exists"));
            if (scopes.empty()) scopes = {"Default"};
          } else {
            v1::RunbookAssetInfo before;
            RETURN_IF_ERROR(ReadAsset(call, req.name(), &before));
            if (scopes.empty()) scopes = ToVector(before.scopes());
          }
          RETURN_IF_ERROR(CheckScopes(tx, call.caller, scopes));
          RETURN_IF_ERROR(
              tx.Exec(create ? "INSERT INTO runbook_assets (name, kind, description, encrypted, "
                               "value, user_name, certificate, sealed, scopes, created_by) VALUES "
                               "($1, $2, $3, $4, $5, $6, $7, $8, $9::text[], $10)"
                             : "UPDATE runbook_assets SET kind = $2, description = $3, encrypted "
                               "= $4, value = $5, user_name = $6, certificate = $7, sealed = $8, "
                               "scopes = $9::text[], created_by = $10, updated_at = now() WHERE "
                               "name = $1",
                      {req.name(), k, req.description(), encrypted ? "t" : "f", value, user,
                       certificate, sealed, store::TextArrayLiteral(scopes), call.caller.name})
                  .status());
          // The audit row names the asset and its kind, never a value.
          RETURN_IF_ERROR(call.Audit(create ? "create" : "update", "runbook asset", req.name(),
                                     absl::StrCat(k, encrypted ? ", encrypted" : "",
                                                  user.empty() ? "" : ", user " + user)));
          return ReadAsset(call, req.name(), out);
        });
  }

  CallCore& core_;
  std::optional<AssetKey> key_;
  std::string key_error_;
};

}  // namespace

Resource RunbookAssetsResource() {
  return {"runbook_assets", {kAssets}, [](const ResourceContext& c) {
            return std::make_unique<RunbookAssetServiceImpl>(*c.core, c.config);
          }};
}

}  // namespace strata::provider
