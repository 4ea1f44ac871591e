// Collections: definitions (global data) and members (site data)
// (proto/strata/v1/admin/collections.proto).

#include "provider/resources/collections.h"

#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"
#include "common/collections/evaluator.h"
#include "common/inventory/report_check.h"
#include "provider/input.h"
#include "provider/listing.h"
#include "provider/rbac.h"
#include "provider/resource.h"
#include "provider/resources/devices.h"
#include "strata/v1/admin/collections.grpc.pb.h"

namespace strata::provider {
namespace {

constexpr Permission kRead{"collection.read", "List collections and their members"};
constexpr Permission kCreate{"collection.create", "Create collections"};
constexpr Permission kUpdate{"collection.update", "Change collections' rules and comments"};
constexpr Permission kDelete{"collection.delete", "Delete collections"};

constexpr int kMaxRulesPerCollection = 100;

std::string CollectionSelect(const Caller& c, store::Params& params) {
  // Members the caller may see. Holders of All Systems see every member:
  // no per-member visibility lookup (millions of them at a CAS).
  std::string members =
      c.SeesAllDevices()
          ? std::string("(SELECT count(*) FROM collection_members m WHERE m.collection = c.name)")
          : absl::StrCat(
                "(SELECT count(*) FROM collection_members m JOIN devices vd ON vd.id = "
                "m.device_id WHERE m.collection = c.name AND ",
                VisibleDevice(c, "vd", params), ")");
  return absl::StrCat(
      "SELECT c.name, c.comment, coalesce(c.limiting, ''), c.builtin, "
      "c.scopes::text, c.created_by, ",
      members, " AS members, ", Ts("e.evaluated_at"),
      ", coalesce(e.error, '') FROM collections c LEFT JOIN collection_eval e "
      "ON e.collection = c.name");
}

void FillCollection(const Result& r, size_t i, v1::Collection* out) {
  out->set_name(r.GetString(i, 0));
  out->set_comment(r.GetString(i, 1));
  out->set_limiting(r.GetString(i, 2));
  out->set_builtin(r.GetBool(i, 3));
  for (const auto& s : store::ParseTextArray(r.GetString(i, 4))) out->add_scopes(s);
  out->set_created_by(r.GetString(i, 5));
  out->set_members(r.GetInt(i, 6));
  out->set_evaluated_at(r.GetString(i, 7));
  out->set_evaluation_error(r.GetString(i, 8));
}

absl::Status LoadRules(Transaction& tx, google::protobuf::RepeatedPtrField<v1::Collection>* colls) {
  if (colls->empty()) return absl::OkStatus();
  std::map<std::string, v1::Collection*> by_name;
  std::vector<std::string> names;
  for (auto& c : *colls) {
    by_name[c.name()] = &c;
    names.push_back(c.name());
  }
  ASSIGN_OR_RETURN(Result r, tx.Exec("SELECT collection, name, kind, coalesce(query, ''), "
                                     "coalesce(device_id::text, ''), coalesce(ref, '') FROM "
                                     "collection_rules WHERE collection = ANY($1::text[]) ORDER BY "
                                     "collection, name",
                                     {store::TextArrayLiteral(names)}));
  for (size_t i = 0; i < r.size(); ++i) {
    auto* rule = by_name[r.GetString(i, 0)]->add_rules();
    rule->set_name(r.GetString(i, 1));
    rule->set_kind(r.GetString(i, 2));
    rule->set_query(r.GetString(i, 3));
    rule->set_device_id(r.GetString(i, 4));
    rule->set_collection(r.GetString(i, 5));
  }
  return absl::OkStatus();
}

// Validates and inserts rules; returns their descriptions for the audit.
absl::StatusOr<std::vector<std::string>> AddRules(
    Call& call, const std::string& collection,
    const google::protobuf::RepeatedPtrField<v1::CollectionRule>& rules) {
  Transaction& tx = call.tx;
  const Caller& c = call.caller;
  std::vector<std::string> out;
  ASSIGN_OR_RETURN(Result count, tx.Exec("SELECT count(*) FROM collection_rules WHERE "
                                         "collection = $1",
                                         {collection}));
  if (count.GetInt(0, 0) + rules.size() > kMaxRulesPerCollection) {
    return absl::InvalidArgumentError(
        absl::StrCat("a collection has at most ", kMaxRulesPerCollection, " rules"));
  }
  ASSIGN_OR_RETURN(Result taken_rows, tx.Exec("SELECT name FROM collection_rules WHERE "
                                              "collection = $1",
                                              {collection}));
  std::set<std::string> taken;
  for (size_t i = 0; i < taken_rows.size(); ++i) taken.insert(taken_rows.GetString(i, 0));
  for (const auto& rule : rules) {
    std::string name = rule.name();
    // Unnamed rules are numbered per kind, skipping names in use.
    for (int n = 1; name.empty() || (rule.name().empty() && taken.count(name)); ++n) {
      name = absl::StrCat(rule.kind(), "-", n);
    }
    if (taken.count(name)) {
      return absl::AlreadyExistsError(
          absl::StrCat("collection \"", collection, "\" already has a rule \"", name, "\""));
    }
    taken.insert(name);
    auto where = [&](const absl::Status& s) {
      return absl::Status(s.code(), absl::StrCat("rule \"", name, "\": ", s.message()));
    };
    RETURN_IF_ERROR(where(CheckName("name", name)));
    std::string value;
    if (rule.kind() == "query") {
      RETURN_IF_ERROR(where(collections::CheckRule(tx, collection, "query", rule.query())));
      value = rule.query();
      RETURN_IF_ERROR(tx.Exec("INSERT INTO collection_rules (collection, name, kind, query) "
                              "VALUES ($1, $2, 'query', $3)",
                              {collection, name, value})
                          .status());
    } else if (rule.kind() == "direct") {
      if (!inventory::IsUuid(rule.device_id())) {
        return where(absl::InvalidArgumentError("device_id: a device id (UUID)"));
      }
      store::Params params{rule.device_id()};
      std::string visible = VisibleDevice(c, "d", params);
      ASSIGN_OR_RETURN(Result d, tx.Exec(absl::StrCat("SELECT ", visible,
                                                      " FROM devices d WHERE d.id = $1::uuid"),
                                         params));
      if (d.empty()) return where(absl::NotFoundError("no device " + rule.device_id()));
      if (!d.GetBool(0, 0)) {
        return where(absl::PermissionDeniedError(absl::StrCat(
            c.name, " may not see device ", rule.device_id(), " (outside their collections)")));
      }
      value = rule.device_id();
      RETURN_IF_ERROR(tx.Exec("INSERT INTO collection_rules (collection, name, kind, device_id) "
                              "VALUES ($1, $2, 'direct', $3::uuid)",
                              {collection, name, value})
                          .status());
    } else if (rule.kind() == "include" || rule.kind() == "exclude") {
      v1::Collection ref;
      RETURN_IF_ERROR(where(ReadCollection(call, rule.collection(), &ref)));
      RETURN_IF_ERROR(where(RequireContained(tx, c, rule.collection())));
      RETURN_IF_ERROR(
          where(collections::CheckRule(tx, collection, rule.kind(), rule.collection())));
      value = rule.collection();
      RETURN_IF_ERROR(tx.Exec("INSERT INTO collection_rules (collection, name, kind, ref) "
                              "VALUES ($1, $2, $3, $4)",
                              {collection, name, rule.kind(), value})
                          .status());
    } else {
      return where(absl::InvalidArgumentError(
          absl::StrCat("kind: query, direct, include or exclude (not \"", rule.kind(), "\")")));
    }
    out.push_back(absl::StrCat(name, ": ", rule.kind(), " ", value));
  }
  return out;
}

class CollectionServiceImpl final : public v1::CollectionService::Service {
 public:
  explicit CollectionServiceImpl(CallCore& core) : core_(core) {}

  grpc::Status ListCollections(grpc::ServerContext* ctx, const v1::ListRequest* req,
                               v1::CollectionList* out) override {
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) -> absl::Status {
      out->Clear();
      ASSIGN_OR_RETURN(Page page,
                       ParsePage(*req, {{"name", "c.name"}, {"members", "members"}}, "c.name"));
      store::Params params;
      std::string where = VisibleByScope(call.caller, "c", params);
      if (!req->filter().empty()) {
        params.emplace_back(NamePattern(req->filter()));
        absl::StrAppend(&where, " AND c.name ILIKE $", params.size());
      }
      ASSIGN_OR_RETURN(
          Result r,
          call.tx.Exec(
              Paged(absl::StrCat(CollectionSelect(call.caller, params), " WHERE ", where), page),
              params));
      for (size_t i = 0, n = TrimPage(r, page, out); i < n; ++i) {
        FillCollection(r, i, out->add_collections());
      }
      return LoadRules(call.tx, out->mutable_collections());
    });
  }

  grpc::Status GetCollection(grpc::ServerContext* ctx, const v1::GetRequest* req,
                             v1::Collection* out) override {
    return core_.Run(*ctx, __func__, kRead.name,
                     [&](Call& call) { return ReadCollection(call, req->name(), out); });
  }

  grpc::Status CreateCollection(grpc::ServerContext* ctx, const v1::Collection* req,
                                v1::Collection* out) override {
    return core_.Run(*ctx, __func__, kCreate.name, [&](Call& call) -> absl::Status {
      Transaction& tx = call.tx;
      RETURN_IF_ERROR(CheckName("name", req->name()));
      RETURN_IF_ERROR(CheckText("comment", req->comment()));
      const std::string limiting = req->limiting().empty() ? "All Systems" : req->limiting();
      v1::Collection lim;
      RETURN_IF_ERROR(ReadCollection(call, limiting, &lim));
      RETURN_IF_ERROR(RequireContained(tx, call.caller, limiting));
      std::vector<std::string> scopes = ToVector(req->scopes());
      if (scopes.empty()) scopes = {"Default"};
      RETURN_IF_ERROR(CheckScopes(tx, call.caller, scopes));
      ASSIGN_OR_RETURN(Result exists,
                       tx.Exec("SELECT 1 FROM collections WHERE name = $1", {req->name()}));
      if (!exists.empty()) {
        return absl::AlreadyExistsError(
            absl::StrCat("collection \"", req->name(), "\" already exists"));
      }
      RETURN_IF_ERROR(tx.Exec("INSERT INTO collections (name, comment, limiting, scopes, "
                              "created_by) VALUES ($1, $2, $3, $4::text[], $5)",
                              {req->name(), req->comment(), limiting,
                               store::TextArrayLiteral(scopes), call.caller.name})
                          .status());
      ASSIGN_OR_RETURN(std::vector<std::string> rules, AddRules(call, req->name(), req->rules()));
      RETURN_IF_ERROR(
          call.Audit("create", "collection", req->name(),
                     absl::StrCat("limiting=", limiting, " scopes=", absl::StrJoin(scopes, ","),
                                  " rules=[", absl::StrJoin(rules, "; "), "]")));
      RETURN_IF_ERROR(tx.Exec("SELECT pg_notify('strata_collections', 'definitions')").status());
      return ReadCollection(call, req->name(), out);
    });
  }

  grpc::Status UpdateCollection(grpc::ServerContext* ctx, const v1::UpdateCollectionRequest* req,
                                v1::Collection* out) override {
    return core_.Run(*ctx, __func__, kUpdate.name, [&](Call& call) -> absl::Status {
      Transaction& tx = call.tx;
      v1::Collection before;
      RETURN_IF_ERROR(ReadCollection(call, req->name(), &before));
      if (before.builtin()) {
        return absl::FailedPreconditionError(
            absl::StrCat("collection \"", req->name(), "\" is built in and cannot be changed"));
      }
      RETURN_IF_ERROR(RequireEditable(tx, call.caller, req->name()));
      if (req->remove_rules_size() > kMaxRulesPerCollection) {
        return absl::InvalidArgumentError(absl::StrCat("remove_rules: a collection has at most ",
                                                       kMaxRulesPerCollection, " rules"));
      }
      std::vector<std::string> changes;
      if (req->has_comment()) {
        RETURN_IF_ERROR(CheckText("comment", req->comment()));
        RETURN_IF_ERROR(tx.Exec("UPDATE collections SET comment = $2, updated_at = now() WHERE "
                                "name = $1",
                                {req->name(), req->comment()})
                            .status());
        changes.push_back(
            absl::StrCat("comment: \"", before.comment(), "\" -> \"", req->comment(), "\""));
      }
      for (const auto& rule : req->remove_rules()) {
        ASSIGN_OR_RETURN(Result r, tx.Exec("DELETE FROM collection_rules WHERE collection = $1 AND "
                                           "name = $2 RETURNING kind, coalesce(query, device_id::"
                                           "text, ref)",
                                           {req->name(), rule}));
        if (r.empty()) {
          return absl::NotFoundError(
              absl::StrCat("collection \"", req->name(), "\" has no rule \"", rule, "\""));
        }
        changes.push_back(
            absl::StrCat("-rule ", rule, " (", r.GetString(0, 0), " ", r.GetString(0, 1), ")"));
      }
      ASSIGN_OR_RETURN(std::vector<std::string> added,
                       AddRules(call, req->name(), req->add_rules()));
      for (const auto& a : added) changes.push_back("+rule " + a);
      if (changes.empty()) return absl::InvalidArgumentError("nothing to change");
      RETURN_IF_ERROR(
          tx.Exec("UPDATE collections SET updated_at = now() WHERE name = $1", {req->name()})
              .status());
      RETURN_IF_ERROR(
          call.Audit("update", "collection", req->name(), absl::StrJoin(changes, "; ")));
      return ReadCollection(call, req->name(), out);
    });
  }

  grpc::Status DeleteCollection(grpc::ServerContext* ctx, const v1::GetRequest* req,
                                v1::Deleted* out) override {
    return core_.Run(*ctx, __func__, kDelete.name, [&](Call& call) -> absl::Status {
      Transaction& tx = call.tx;
      v1::Collection before;
      RETURN_IF_ERROR(ReadCollection(call, req->name(), &before));
      if (before.builtin()) {
        return absl::FailedPreconditionError(
            absl::StrCat("collection \"", req->name(), "\" is built in and cannot be deleted"));
      }
      RETURN_IF_ERROR(RequireEditable(tx, call.caller, req->name()));
      ASSIGN_OR_RETURN(
          Result users,
          tx.Exec("SELECT name FROM collections WHERE limiting = $1 UNION SELECT collection FROM "
                  "collection_rules WHERE ref = $1 UNION SELECT name FROM administrators WHERE $1 "
                  "= ANY(collections) UNION SELECT 'client setting ' || setting FROM "
                  "client_setting_deployments WHERE collection = $1 ORDER BY 1",
                  {req->name()}));
      if (!users.empty()) {
        std::vector<std::string> names;
        for (size_t i = 0; i < users.size(); ++i) names.push_back(users.GetString(i, 0));
        return absl::FailedPreconditionError(absl::StrCat(
            "collection \"", req->name(), "\" is still used by: ", absl::StrJoin(names, ", "),
            " (limiting or include/exclude rules of collections, administrators' "
            "collections, or client settings deployed to it)"));
      }
      RETURN_IF_ERROR(
          tx.Exec("DELETE FROM collection_rules WHERE collection = $1", {req->name()}).status());
      RETURN_IF_ERROR(tx.Exec("DELETE FROM collections WHERE name = $1", {req->name()}).status());
      RETURN_IF_ERROR(call.Audit(
          "delete", "collection", req->name(),
          absl::StrCat("had ", before.rules_size(), " rules, limiting=", before.limiting())));
      out->set_name(req->name());
      return absl::OkStatus();
    });
  }

  grpc::Status ListCollectionMembers(grpc::ServerContext* ctx, const v1::ListMembersRequest* req,
                                     v1::DeviceList* out) override {
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) -> absl::Status {
      out->Clear();
      RETURN_IF_ERROR(call.Require("device.read", "collection", req->name()));
      v1::Collection coll;
      RETURN_IF_ERROR(ReadCollection(call, req->name(), &coll));
      return ListDeviceRows(call, req->list(), "", out, req->name());
    });
  }

 private:
  CallCore& core_;
};

}  // namespace

absl::Status ReadCollection(Call& call, const std::string& name, v1::Collection* out) {
  store::Params params;
  std::string select = CollectionSelect(call.caller, params);
  params.emplace_back(name);
  ASSIGN_OR_RETURN(Result r,
                   call.tx.Exec(absl::StrCat(select, " WHERE c.name = $", params.size()), params));
  if (r.empty()) return absl::NotFoundError(absl::StrCat("no collection \"", name, "\""));
  out->Clear();
  FillCollection(r, 0, out);
  RETURN_IF_ERROR(RequireScopeVisible(call.caller, "collection", name, out->scopes()));
  google::protobuf::RepeatedPtrField<v1::Collection> one;
  *one.Add() = *out;
  RETURN_IF_ERROR(LoadRules(call.tx, &one));
  *out = one.Get(0);
  return absl::OkStatus();
}

Resource CollectionsResource() {
  return {"collections", {kRead, kCreate, kUpdate, kDelete}, [](const ResourceContext& c) {
            return std::make_unique<CollectionServiceImpl>(*c.core);
          }};
}

absl::StatusOr<Target> ResolveTarget(Call& call, const std::string& collection,
                                     const std::string& device) {
  if (collection.empty() == device.empty())
    return absl::InvalidArgumentError("give one of --collection or --device");
  Target t;
  if (!device.empty()) {
    // ResolveDevice refuses a device outside the caller's collections.
    ASSIGN_OR_RETURN(t.device_id, ResolveDevice(call.tx, call.caller, device));
    t.collection = "All Systems";
    return t;
  }
  v1::Collection coll;
  RETURN_IF_ERROR(ReadCollection(call, collection, &coll));
  RETURN_IF_ERROR(RequireContained(call.tx, call.caller, collection));
  t.collection = collection;
  return t;
}

}  // namespace strata::provider
