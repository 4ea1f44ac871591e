// Client settings and their deployments to collections
// (proto/strata/v1/admin/client_settings.proto).

#include <algorithm>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"
#include "common/collections/client_settings.h"
#include "provider/input.h"
#include "provider/listing.h"
#include "provider/rbac.h"
#include "provider/resource.h"
#include "provider/resources/collections.h"
#include "strata/v1/admin/client_settings.grpc.pb.h"

namespace strata::provider {
namespace {

constexpr Permission kRead{"settings.read", "List client settings and what reaches a device"};
constexpr Permission kUpdate{"settings.update",
                             "Create, change, delete and deploy client settings"};

// The fields a client setting may set, in the order of the table's columns.
// ClientSetting and UpdateClientSettingRequest name them alike.
struct SettingField {
  const char* name;
  int64_t min, max;
};
constexpr int64_t kMaxInterval = 31 * 86400;
constexpr SettingField kSettingFields[] = {{"policy_poll_seconds", 1, kMaxInterval},
                                           {"inventory_seconds", 1, kMaxInterval},
                                           {"heartbeat_seconds", 1, kMaxInterval},
                                           {"splay_seconds", 0, 86400}};

std::optional<int64_t> FieldValue(const google::protobuf::Message& m, const SettingField& f) {
  const auto* field = m.GetDescriptor()->FindFieldByName(f.name);
  if (!m.GetReflection()->HasField(m, field)) return std::nullopt;
  return m.GetReflection()->GetInt64(m, field);
}

absl::Status CheckSettingValues(const std::vector<std::optional<int64_t>>& values, bool builtin) {
  bool any = false;
  for (size_t k = 0; k < values.size(); ++k) {
    const SettingField& f = kSettingFields[k];
    if (!values[k]) {
      if (builtin) {
        return absl::InvalidArgumentError(absl::StrCat(
            f.name, ": the ", collections::kDefaultClientSettings, " set every field"));
      }
      continue;
    }
    any = true;
    if (*values[k] < f.min || *values[k] > f.max) {
      return absl::InvalidArgumentError(
          absl::StrCat(f.name, ": ", f.min, " to ", f.max, " seconds (not ", *values[k], ")"));
    }
  }
  if (!any) {
    return absl::InvalidArgumentError(
        "a custom client setting must set at least one of policy_poll_seconds, "
        "inventory_seconds, heartbeat_seconds, splay_seconds");
  }
  return absl::OkStatus();
}

// Custom settings hold distinct priorities from 1 to 9999 (settings made at
// two sites at once may still tie: then the name decides, everywhere).
absl::Status CheckPriority(Transaction& tx, const std::string& name, int64_t priority) {
  if (priority < 1 || priority > 9999) {
    return absl::InvalidArgumentError(
        absl::StrCat("priority: 1 (highest) to 9999 (not ", priority, ")"));
  }
  ASSIGN_OR_RETURN(Result r, tx.Exec("SELECT name FROM client_settings WHERE priority = $1 AND "
                                     "name <> $2",
                                     {absl::StrCat(priority), name}));
  if (!r.empty()) {
    return absl::AlreadyExistsError(absl::StrCat(
        "priority ", priority, " is held by client setting \"", r.GetString(0, 0), "\""));
  }
  return absl::OkStatus();
}

absl::Status NoApprovalMode() {
  return absl::InvalidArgumentError(
      absl::StrCat("approval_mode: only the ", collections::kDefaultClientSettings,
                   " have one (registration comes before a client is in any collection)"));
}

// A setting is changed only by an admin whose collections hold every
// device it reaches: the default reaches all (All Systems), a custom one
// the members of the collections it is deployed to.
absl::Status RequireReach(Transaction& tx, const Caller& c, const v1::ClientSetting& setting) {
  if (setting.builtin()) {
    ASSIGN_OR_RETURN(bool all, Contained(tx, c, "All Systems"));
    if (!all) {
      return absl::PermissionDeniedError(
          absl::StrCat(c.name, " may not change the ", collections::kDefaultClientSettings,
                       ": they reach every client, and ", c.name, " sees only ",
                       absl::StrJoin(c.collections, ", ")));
    }
    return absl::OkStatus();
  }
  for (const auto& coll : setting.deployed_to()) {
    ASSIGN_OR_RETURN(bool inside, Contained(tx, c, coll));
    if (!inside) {
      return absl::PermissionDeniedError(absl::StrCat(
          c.name, " may not change client setting \"", setting.name(), "\": it is deployed to \"",
          coll, "\", outside their collections (", absl::StrJoin(c.collections, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

std::string SettingSelect(const Caller& c, store::Params& params) {
  std::string visible = c.SeesAllDevices() ? std::string("true") : VisibleDevice(c, "vd", params);
  return absl::StrCat(
      "SELECT s.name, s.description, s.priority, s.policy_poll_seconds, s.inventory_seconds, "
      "s.heartbeat_seconds, s.splay_seconds, coalesce(s.approval_mode, ''), s.builtin, "
      "s.scopes::text, s.created_by, ",
      Ts("s.updated_at"),
      ", (SELECT coalesce(array_agg(d.collection ORDER BY d.collection), '{}')::text FROM "
      "client_setting_deployments d WHERE d.setting = s.name), CASE WHEN s.builtin THEN "
      "(SELECT count(*) FROM devices vd WHERE ",
      visible,
      ") ELSE (SELECT count(*) FROM client_setting_assignments a JOIN devices vd ON vd.id = "
      "a.device_id WHERE a.setting = s.name AND ",
      visible, ") END AS devices FROM client_settings s");
}

void FillSetting(const Result& r, size_t i, v1::ClientSetting* out) {
  out->set_name(r.GetString(i, 0));
  out->set_description(r.GetString(i, 1));
  out->set_priority(static_cast<int32_t>(r.GetInt(i, 2)));
  if (!r.IsNull(i, 3)) out->set_policy_poll_seconds(r.GetInt(i, 3));
  if (!r.IsNull(i, 4)) out->set_inventory_seconds(r.GetInt(i, 4));
  if (!r.IsNull(i, 5)) out->set_heartbeat_seconds(r.GetInt(i, 5));
  if (!r.IsNull(i, 6)) out->set_splay_seconds(r.GetInt(i, 6));
  out->set_approval_mode(r.GetString(i, 7));
  out->set_builtin(r.GetBool(i, 8));
  for (const auto& v : store::ParseTextArray(r.GetString(i, 9))) out->add_scopes(v);
  out->set_created_by(r.GetString(i, 10));
  out->set_updated_at(r.GetString(i, 11));
  for (const auto& v : store::ParseTextArray(r.GetString(i, 12))) out->add_deployed_to(v);
  out->set_devices(r.GetInt(i, 13));
}

// The setting if it exists and the caller's scopes reach it (the default
// reaches everyone).
absl::Status ReadSetting(Call& call, const std::string& name, v1::ClientSetting* out) {
  store::Params params;
  std::string select = SettingSelect(call.caller, params);
  params.emplace_back(name);
  ASSIGN_OR_RETURN(Result r,
                   call.tx.Exec(absl::StrCat(select, " WHERE s.name = $", params.size()), params));
  if (r.empty()) return absl::NotFoundError(absl::StrCat("no client setting \"", name, "\""));
  out->Clear();
  FillSetting(r, 0, out);
  if (out->builtin()) return absl::OkStatus();
  return RequireScopeVisible(call.caller, "client setting", name, out->scopes());
}

class ClientSettingServiceImpl final : public v1::ClientSettingService::Service {
 public:
  explicit ClientSettingServiceImpl(CallCore& core) : core_(core) {}

  grpc::Status ListClientSettings(grpc::ServerContext* ctx, const v1::ListRequest* req,
                                  v1::ClientSettingList* out) override {
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) -> absl::Status {
      out->Clear();
      ASSIGN_OR_RETURN(
          Page page,
          ParsePage(*req, {{"name", "s.name"}, {"priority", "s.priority"}, {"devices", "devices"}},
                    "s.priority, s.name"));
      store::Params params;
      // The default reaches everyone: every holder of settings.read sees it.
      std::string where =
          absl::StrCat("(s.builtin OR ", VisibleByScope(call.caller, "s", params), ")");
      if (!req->filter().empty()) {
        params.emplace_back(NamePattern(req->filter()));
        absl::StrAppend(&where, " AND s.name ILIKE $", params.size());
      }
      ASSIGN_OR_RETURN(
          Result r,
          call.tx.Exec(
              Paged(absl::StrCat(SettingSelect(call.caller, params), " WHERE ", where), page),
              params));
      for (size_t i = 0, n = TrimPage(r, page, out); i < n; ++i) {
        FillSetting(r, i, out->add_settings());
      }
      return absl::OkStatus();
    });
  }

  grpc::Status GetClientSetting(grpc::ServerContext* ctx, const v1::GetRequest* req,
                                v1::ClientSetting* out) override {
    return core_.Run(*ctx, __func__, kRead.name,
                     [&](Call& call) { return ReadSetting(call, req->name(), out); });
  }

  grpc::Status CreateClientSetting(grpc::ServerContext* ctx, const v1::ClientSetting* req,
                                   v1::ClientSetting* out) override {
    return core_.Run(*ctx, __func__, kUpdate.name, [&](Call& call) -> absl::Status {
      Transaction& tx = call.tx;
      RETURN_IF_ERROR(CheckName("name", req->name()));
      if (req->name() == collections::kDefaultClientSettings) {
        return absl::AlreadyExistsError(
            absl::StrCat("\"", req->name(), "\" is built in: update it instead"));
      }
      RETURN_IF_ERROR(CheckText("description", req->description()));
      if (!req->approval_mode().empty()) return NoApprovalMode();
      std::vector<std::string> scopes = ToVector(req->scopes());
      if (scopes.empty()) scopes = {"Default"};
      RETURN_IF_ERROR(CheckScopes(tx, call.caller, scopes));
      ASSIGN_OR_RETURN(Result exists,
                       tx.Exec("SELECT 1 FROM client_settings WHERE name = $1", {req->name()}));
      if (!exists.empty()) {
        return absl::AlreadyExistsError(
            absl::StrCat("client setting \"", req->name(), "\" already exists"));
      }
      int32_t priority = req->priority();
      if (priority == 0) {
        // After the others, or the first free one once 9999 is taken.
        ASSIGN_OR_RETURN(
            Result next,
            tx.Exec("SELECT coalesce((SELECT max(priority) + 1 FROM client_settings WHERE NOT "
                    "builtin HAVING max(priority) < 9999), (SELECT min(p) FROM "
                    "generate_series(1, 9999) p WHERE NOT EXISTS (SELECT 1 FROM "
                    "client_settings s WHERE s.priority = p)), 0)"));
        priority = static_cast<int32_t>(next.GetInt(0, 0));
        if (priority == 0) {
          return absl::FailedPreconditionError(
              "every priority from 1 to 9999 is held by a client setting");
        }
      }
      RETURN_IF_ERROR(CheckPriority(tx, req->name(), priority));
      std::vector<std::optional<int64_t>> values;
      for (const auto& f : kSettingFields) values.push_back(FieldValue(*req, f));
      RETURN_IF_ERROR(CheckSettingValues(values, /*builtin=*/false));
      store::Params params{req->name(), req->description(), absl::StrCat(priority),
                           store::TextArrayLiteral(scopes), call.caller.name};
      std::string summary = absl::StrCat("priority=", priority);
      for (size_t k = 0; k < values.size(); ++k) {
        params.emplace_back(values[k] ? absl::StrCat(*values[k]) : std::optional<std::string>());
        if (values[k]) absl::StrAppend(&summary, " ", kSettingFields[k].name, "=", *values[k]);
      }
      RETURN_IF_ERROR(tx.Exec("INSERT INTO client_settings (name, description, priority, "
                              "scopes, created_by, policy_poll_seconds, inventory_seconds, "
                              "heartbeat_seconds, splay_seconds) VALUES ($1, $2, $3, "
                              "$4::text[], $5, $6, $7, $8, $9)",
                              params)
                          .status());
      RETURN_IF_ERROR(call.Audit("create", "client setting", req->name(),
                                 absl::StrCat(summary, " scopes=", absl::StrJoin(scopes, ","))));
      return ReadSetting(call, req->name(), out);
    });
  }

  grpc::Status UpdateClientSetting(grpc::ServerContext* ctx,
                                   const v1::UpdateClientSettingRequest* req,
                                   v1::ClientSetting* out) override {
    return core_.Run(*ctx, __func__, kUpdate.name, [&](Call& call) -> absl::Status {
      Transaction& tx = call.tx;
      v1::ClientSetting before;
      RETURN_IF_ERROR(ReadSetting(call, req->name(), &before));
      RETURN_IF_ERROR(RequireReach(tx, call.caller, before));
      std::vector<std::string> changes;
      store::Params params{req->name()};
      std::vector<std::string> sets;
      auto set = [&](const std::string& column, std::optional<std::string> value,
                     const std::string& was, const std::string& now) {
        params.emplace_back(std::move(value));
        sets.push_back(absl::StrCat(column, " = $", params.size()));
        changes.push_back(absl::StrCat(column, ": ", was, " -> ", now));
      };
      if (req->has_description()) {
        RETURN_IF_ERROR(CheckText("description", req->description()));
        set("description", req->description(), "\"" + before.description() + "\"",
            "\"" + req->description() + "\"");
      }
      if (req->has_priority()) {
        if (before.builtin()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "priority: the ", collections::kDefaultClientSettings, " always come last (10000)"));
        }
        RETURN_IF_ERROR(CheckPriority(tx, req->name(), req->priority()));
        set("priority", absl::StrCat(req->priority()), absl::StrCat(before.priority()),
            absl::StrCat(req->priority()));
      }
      if (req->has_approval_mode()) {
        if (!before.builtin()) return NoApprovalMode();
        const std::string& m = req->approval_mode();
        if (m != "token" && m != "manual" && m != "auto") {
          return absl::InvalidArgumentError(
              absl::StrCat("approval_mode: token, manual or auto (not \"", m, "\")"));
        }
        set("approval_mode", m, before.approval_mode(), m);
      }
      std::vector<std::optional<int64_t>> values;
      for (const auto& f : kSettingFields) values.push_back(FieldValue(before, f));
      std::set<std::string> cleared;
      for (const auto& name : req->clear()) {
        auto it = std::find_if(std::begin(kSettingFields), std::end(kSettingFields),
                               [&](const SettingField& f) { return name == f.name; });
        if (it == std::end(kSettingFields)) {
          return absl::InvalidArgumentError(absl::StrCat(
              "clear: unknown field \"", name,
              "\" (policy_poll_seconds, inventory_seconds, heartbeat_seconds, splay_seconds)"));
        }
        cleared.insert(name);
      }
      for (size_t k = 0; k < std::size(kSettingFields); ++k) {
        const SettingField& f = kSettingFields[k];
        const bool clear = cleared.count(f.name) > 0;
        const std::optional<int64_t> given = FieldValue(*req, f);
        if (clear && given) {
          return absl::InvalidArgumentError(absl::StrCat(f.name, ": both set and cleared"));
        }
        if (!clear && !given) continue;
        const std::optional<int64_t> now = clear ? std::nullopt : given;
        if (now == values[k]) continue;
        auto text = [](const std::optional<int64_t>& v) {
          return v ? absl::StrCat(*v) : std::string("(unset)");
        };
        set(f.name, now ? std::optional<std::string>(absl::StrCat(*now)) : std::nullopt,
            text(values[k]), text(now));
        values[k] = now;
      }
      RETURN_IF_ERROR(CheckSettingValues(values, before.builtin()));
      if (changes.empty()) return absl::InvalidArgumentError("nothing to change");
      RETURN_IF_ERROR(tx.Exec(absl::StrCat("UPDATE client_settings SET ", absl::StrJoin(sets, ", "),
                                           ", updated_at = now() WHERE name = $1"),
                              params)
                          .status());
      RETURN_IF_ERROR(
          call.Audit("update", "client setting", req->name(), absl::StrJoin(changes, "; ")));
      return ReadSetting(call, req->name(), out);
    });
  }

  grpc::Status DeleteClientSetting(grpc::ServerContext* ctx, const v1::GetRequest* req,
                                   v1::Deleted* out) override {
    return core_.Run(*ctx, __func__, kUpdate.name, [&](Call& call) -> absl::Status {
      Transaction& tx = call.tx;
      v1::ClientSetting before;
      RETURN_IF_ERROR(ReadSetting(call, req->name(), &before));
      if (before.builtin()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "\"", req->name(), "\" is built in and cannot be deleted (update it instead)"));
      }
      RETURN_IF_ERROR(RequireReach(tx, call.caller, before));
      RETURN_IF_ERROR(
          tx.Exec("DELETE FROM client_setting_deployments WHERE setting = $1", {req->name()})
              .status());
      RETURN_IF_ERROR(
          tx.Exec("DELETE FROM client_settings WHERE name = $1", {req->name()}).status());
      RETURN_IF_ERROR(call.Audit("delete", "client setting", req->name(),
                                 absl::StrCat("priority=", before.priority(), " deployed to [",
                                              absl::StrJoin(before.deployed_to(), ", "), "]")));
      out->set_name(req->name());
      return absl::OkStatus();
    });
  }

  grpc::Status DeployClientSetting(grpc::ServerContext* ctx,
                                   const v1::DeployClientSettingRequest* req,
                                   v1::ClientSetting* out) override {
    return Deployment(*ctx, __func__, *req, true, out);
  }

  grpc::Status UndeployClientSetting(grpc::ServerContext* ctx,
                                     const v1::DeployClientSettingRequest* req,
                                     v1::ClientSetting* out) override {
    return Deployment(*ctx, __func__, *req, false, out);
  }

 private:
  // Deploys a custom setting to a collection the caller may use, or takes
  // the deployment away.
  grpc::Status Deployment(const grpc::ServerContext& ctx, const char* method,
                          const v1::DeployClientSettingRequest& req, bool deploy,
                          v1::ClientSetting* out) {
    return core_.Run(ctx, method, kUpdate.name, [&](Call& call) -> absl::Status {
      Transaction& tx = call.tx;
      v1::ClientSetting setting;
      RETURN_IF_ERROR(ReadSetting(call, req.name(), &setting));
      if (setting.builtin()) {
        return absl::InvalidArgumentError(
            absl::StrCat("the ", collections::kDefaultClientSettings,
                         " reach every client; only custom settings are deployed"));
      }
      ASSIGN_OR_RETURN(Result exists,
                       tx.Exec("SELECT 1 FROM collections WHERE name = $1", {req.collection()}));
      // A deployment whose collection was deleted meanwhile (at another
      // site) can always be taken away.
      if (deploy || !exists.empty()) {
        v1::Collection coll;
        RETURN_IF_ERROR(ReadCollection(call, req.collection(), &coll));
        RETURN_IF_ERROR(RequireContained(tx, call.caller, req.collection()));
      }
      if (deploy) {
        ASSIGN_OR_RETURN(Result count, tx.Exec("SELECT count(*) FROM "
                                               "client_setting_deployments WHERE setting = $1",
                                               {req.name()}));
        if (count.GetInt(0, 0) >= kMaxListItems) {
          return absl::InvalidArgumentError(absl::StrCat("a client setting is deployed to at most ",
                                                         kMaxListItems, " collections"));
        }
        ASSIGN_OR_RETURN(Result r, tx.Exec("INSERT INTO client_setting_deployments (setting, "
                                           "collection, created_by) VALUES ($1, $2, $3) ON "
                                           "CONFLICT DO NOTHING",
                                           {req.name(), req.collection(), call.caller.name}));
        if (r.affected_rows() == 0) {
          return absl::AlreadyExistsError(absl::StrCat("client setting \"", req.name(),
                                                       "\" is already deployed to \"",
                                                       req.collection(), "\""));
        }
      } else {
        ASSIGN_OR_RETURN(Result r, tx.Exec("DELETE FROM client_setting_deployments WHERE "
                                           "setting = $1 AND collection = $2",
                                           {req.name(), req.collection()}));
        if (r.affected_rows() == 0) {
          return absl::NotFoundError(absl::StrCat(
              "client setting \"", req.name(), "\" is not deployed to \"", req.collection(), "\""));
        }
      }
      RETURN_IF_ERROR(
          call.Audit(deploy ? "deploy" : "undeploy", "client setting", req.name(),
                     absl::StrCat(deploy ? "to" : "from", " collection ", req.collection())));
      return ReadSetting(call, req.name(), out);
    });
  }

  CallCore& core_;
};

}  // namespace

Resource ClientSettingsResource() {
  return {"client settings", {kRead, kUpdate}, [](const ResourceContext& c) {
            return std::make_unique<ClientSettingServiceImpl>(*c.core);
          }};
}

}  // namespace strata::provider
