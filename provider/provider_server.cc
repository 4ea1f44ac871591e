#include "provider/provider_server.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "common/base/config.h"
#include "common/base/log.h"
#include "common/base/shutdown_guard.h"
#include "common/base/status.h"
#include "common/collections/client_settings.h"
#include "common/collections/evaluator.h"
#include "common/collections/query.h"
#include "common/inventory/report_check.h"
#include "common/net/boundary.h"
#include "common/net/tls.h"
#include "common/policy/client_settings.h"
#include "common/replication/change_log.h"
#include "common/store/pool.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "provider/reports.h"
#include "provider/sql.h"
#include "strata/v1/admin.grpc.pb.h"
#include "strata/v1/site_link.grpc.pb.h"

namespace strata::provider {
namespace {

using store::ParseTextArray;
using store::Result;
using store::TextArrayLiteral;
using store::Transaction;

constexpr int kDefaultPageSize = 100;
constexpr int kMaxPageSize = 1000;
constexpr int kMaxRulesPerCollection = 100;
constexpr size_t kMaxNameBytes = 256;
constexpr size_t kMaxCommentBytes = 1024;
constexpr int kMaxListItems = 64;
constexpr int kDefaultReportRows = 10000;
constexpr int kMaxReportRows = 100000;  // roles, scopes, collections of an administrator

// `text` matches `pattern`, where * stands for any run of characters.
bool GlobMatch(const std::string& pattern, const std::string& text) {
  size_t p = 0, t = 0, star = std::string::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (p < pattern.size() && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (star != std::string::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

// At most `max` bytes of `s`, cut at a character boundary (UTF-8).
std::string Truncated(const std::string& s, size_t max) {
  if (s.size() <= max) return s;
  size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  return s.substr(0, end) + "...";
}

absl::Status CheckName(const std::string& what, const std::string& name) {
  if (name.empty() || name.size() > kMaxNameBytes || !inventory::IsCleanText(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": 1-", kMaxNameBytes, " bytes of UTF-8 text"));
  }
  if (name.front() == ' ' || name.back() == ' ') {
    return absl::InvalidArgumentError(absl::StrCat(what, ": no leading or trailing spaces"));
  }
  return absl::OkStatus();
}

absl::Status CheckNames(const std::string& what,
                        const google::protobuf::RepeatedPtrField<std::string>& names) {
  if (names.size() > kMaxListItems) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": at most ", kMaxListItems));
  }
  for (const auto& n : names) RETURN_IF_ERROR(CheckName(what, n));
  return absl::OkStatus();
}

std::vector<std::string> ToVector(const google::protobuf::RepeatedPtrField<std::string>& v) {
  return {v.begin(), v.end()};
}

// Paging and ordering of a listing.
struct Page {
  int64_t offset = 0;
  int size = kDefaultPageSize;
  std::string order;  // SQL ORDER BY
};

absl::StatusOr<Page> ParsePage(const v1::ListRequest& req,
                               const std::map<std::string, std::string>& columns,
                               const std::string& default_order) {
  Page p;
  if (req.page_size() < 0 || req.page_size() > kMaxPageSize) {
    return absl::InvalidArgumentError(absl::StrCat("page_size: 0-", kMaxPageSize));
  }
  if (req.page_size() > 0) p.size = req.page_size();
  if (!req.page_token().empty() &&
      (!absl::SimpleAtoi(req.page_token(), &p.offset) || p.offset < 0)) {
    return absl::InvalidArgumentError("page_token: not one this server handed out");
  }
  if (req.order_by().empty()) {
    p.order = default_order;
    return p;
  }
  std::string field = absl::AsciiStrToLower(req.order_by());
  bool desc = false;
  if (absl::EndsWith(field, " desc")) {
    desc = true;
    field.resize(field.size() - 5);
  } else if (absl::EndsWith(field, " asc")) {
    field.resize(field.size() - 4);
  }
  auto it = columns.find(field);
  if (it == columns.end()) {
    std::vector<std::string> names;
    for (const auto& [n, _] : columns) names.push_back(n);
    return absl::InvalidArgumentError(absl::StrCat(
        "order_by: unknown column \"", field, "\" (one of: ", absl::StrJoin(names, ", "), ")"));
  }
  p.order = absl::StrCat(it->second, desc ? " DESC" : "", ", ", default_order);
  return p;
}

// Appends ORDER BY / LIMIT / OFFSET (one row more than the page, to know
// whether another follows).
std::string Paged(const std::string& sql, const Page& p) {
  return absl::StrCat(sql, " ORDER BY ", p.order, " LIMIT ", p.size + 1, " OFFSET ", p.offset);
}

// Rows beyond the page size mean a next page.
template <typename List>
size_t TrimPage(const Result& r, const Page& p, List* list) {
  if (r.size() > static_cast<size_t>(p.size)) {
    list->set_next_page_token(absl::StrCat(p.offset + p.size));
    return p.size;
  }
  return r.size();
}

// The caller, as RBAC sees them.
struct Caller {
  std::string name;
  std::vector<std::string> roles, scopes, collections;
  std::set<std::string> permissions;
  bool all_scopes = false;
  bool Has(const std::string& perm) const {
    return permissions.count("*") || permissions.count(perm);
  }
};

}  // namespace

const std::vector<std::string>& KnownPermissions() {
  static const auto* perms = new std::vector<std::string>{
      "site.read",         "link.read",       "link.reinit",       "device.read",
      "device.delete",     "collection.read", "collection.create", "collection.update",
      "collection.delete", "settings.read",   "settings.update",   "boundary.read",
      "boundary.create",   "boundary.update", "boundary.delete",   "report.run",
      "audit.read",        "role.read",       "role.create",       "role.delete",
      "admin.read",        "admin.create",    "admin.update",      "admin.delete"};
  return *perms;
}

absl::Status ValidateProviderConfig(const v1::ProviderConfig& c) {
  if (c.database().empty()) return absl::InvalidArgumentError("database: required");
  if (c.listen_address().empty()) return absl::InvalidArgumentError("listen_address: required");
  if (c.tls().ca_file().empty() || c.tls().cert_file().empty() || c.tls().key_file().empty()) {
    return absl::InvalidArgumentError("tls: ca_file, cert_file and key_file are required");
  }
  if (!c.bootstrap_admin().empty())
    RETURN_IF_ERROR(CheckName("bootstrap_admin", c.bootstrap_admin()));
  return absl::OkStatus();
}

class ProviderServer::Impl final : public v1::AdminService::Service {
 public:
  explicit Impl(v1::ProviderConfig config)
      : config_(std::move(config)), pool_(config_.database()) {}
  ~Impl() override { Shutdown(); }

  absl::Status Start() {
    RETURN_IF_ERROR(ValidateProviderConfig(config_));
    // A child site is recorded by its parent: right after the site server
    // first attaches, that record may still be on its way down.
    absl::Status ready;
    for (int attempt = 0; attempt < 120; ++attempt) {
      ready = pool_.With([&](store::Connection& conn) { return CheckSite(conn); });
      if (ready.ok() || !absl::IsUnavailable(ready)) break;
      if (attempt == 0) LogInfo("provider.waiting_for_site", {{"reason", ready}});
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    RETURN_IF_ERROR(ready);
    RETURN_IF_ERROR(pool_.With([&](store::Connection& conn) { return Bootstrap(conn); }));
    if (!config_.site_address().empty()) {
      ASSIGN_OR_RETURN(auto channel, MakeChannel(config_.site_address(), config_.tls()));
      site_stub_ = v1::SiteLink::NewStub(channel);
    }
    SetLogComponent(absl::StrCat("provider=", site_));
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    ServerOptions options;
    options.max_message_bytes = 4 << 20;
    ASSIGN_OR_RETURN(server_, StartServer(config_.listen_address(), config_.tls(), {this}, options,
                                          &bound_address_));
    WriteAddressFile(config_.address_file(), bound_address_);
    LogInfo("provider.started",
            {{"site", site_}, {"type", site_type_}, {"address", bound_address_}});
    return absl::OkStatus();
  }

  // Which site this database is, and that it may have a provider.
  // Unavailable while the site has not joined its hierarchy yet.
  absl::Status CheckSite(store::Connection& conn) {
    ASSIGN_OR_RETURN(Result id, conn.Exec("SELECT site_code FROM repl_identity"));
    if (id.empty()) {
      return absl::UnavailableError("this database has no site yet: start its site server first");
    }
    site_ = id.GetString(0, 0);
    ASSIGN_OR_RETURN(Result type, conn.Exec("SELECT type FROM sites WHERE code = $1", {site_}));
    if (type.empty()) {
      return absl::UnavailableError(absl::StrCat(
          "site ", site_, " has not joined its hierarchy yet (its parent records it)"));
    }
    site_type_ = type.GetString(0, 0);
    if (site_type_ == "secondary") {
      return absl::FailedPreconditionError(absl::StrCat(
          "site ", site_, " is a secondary site: a provider runs at the CAS or a primary"));
    }
    return absl::OkStatus();
  }

  absl::Status Wait() {
    stopped_.WaitForNotification();
    return absl::OkStatus();
  }

  void Shutdown() {
    if (!shutdown_.Begin()) return;
    if (server_) {
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
      server_->Wait();
      LogInfo("provider.stopped");
    }
    stopped_.Notify();
    shutdown_.Done();
  }

  const std::string& bound_address() const { return bound_address_; }

  // --- AdminService ------------------------------------------------------

  grpc::Status WhoAmI(grpc::ServerContext* ctx, const v1::WhoAmIRequest*,
                      v1::Administrator* out) override {
    return Run(ctx, __func__, "", [&](Transaction&, const Caller& c) -> absl::Status {
      out->set_name(c.name);
      for (const auto& r : c.roles) out->add_roles(r);
      for (const auto& s : c.scopes) out->add_scopes(s);
      for (const auto& k : c.collections) out->add_collections(k);
      for (const auto& p : c.permissions) out->add_permissions(p);
      return absl::OkStatus();
    });
  }

  grpc::Status ListSites(grpc::ServerContext* ctx, const v1::ListRequest* req,
                         v1::SiteList* out) override {
    return Run(ctx, __func__, "site.read", [&](Transaction& tx, const Caller&) -> absl::Status {
      ASSIGN_OR_RETURN(Page page, ParsePage(*req, {{"code", "code"}, {"type", "type"}}, "code"));
      store::Params params;
      std::string sql = absl::StrCat("SELECT code, type, coalesce(parent, ''), version, state, ",
                                     Ts("attached_at"), " FROM sites");
      if (!req->filter().empty()) {
        params.emplace_back(NamePattern(req->filter()));
        sql += " WHERE code ILIKE $1";
      }
      ASSIGN_OR_RETURN(Result r, tx.Exec(Paged(sql, page), params));
      for (size_t i = 0, n = TrimPage(r, page, out); i < n; ++i) {
        auto* s = out->add_sites();
        s->set_code(r.GetString(i, 0));
        s->set_type(r.GetString(i, 1));
        s->set_parent(r.GetString(i, 2));
        s->set_version(r.GetString(i, 3));
        s->set_state(r.GetString(i, 4));
        s->set_attached_at(r.GetString(i, 5));
      }
      return absl::OkStatus();
    });
  }

  grpc::Status ListDevices(grpc::ServerContext* ctx, const v1::ListRequest* req,
                           v1::DeviceList* out) override {
    return Run(ctx, __func__, "device.read", [&](Transaction& tx, const Caller& c) -> absl::Status {
      return ListDeviceRows(tx, c, *req, "", out);
    });
  }

  grpc::Status GetDevice(grpc::ServerContext* ctx, const v1::GetRequest* req,
                         v1::DeviceDetail* out) override {
    return Run(ctx, __func__, "device.read", [&](Transaction& tx, const Caller& c) -> absl::Status {
      ASSIGN_OR_RETURN(std::string id, ResolveDevice(tx, c, req->name()));
      v1::DeviceList one;
      RETURN_IF_ERROR(ListDeviceRows(tx, c, v1::ListRequest(), id, &one));
      if (one.devices_size() == 0) return absl::NotFoundError("device " + req->name());
      *out->mutable_device() = one.devices(0);
      return DeviceInventory(tx, c, id, out);
    });
  }

  grpc::Status ListCollections(grpc::ServerContext* ctx, const v1::ListRequest* req,
                               v1::CollectionList* out) override {
    return Run(
        ctx, __func__, "collection.read", [&](Transaction& tx, const Caller& c) -> absl::Status {
          ASSIGN_OR_RETURN(Page page,
                           ParsePage(*req, {{"name", "c.name"}, {"members", "members"}}, "c.name"));
          store::Params params;
          std::string where = VisibleCollection(c, "c", params);
          if (!req->filter().empty()) {
            params.emplace_back(NamePattern(req->filter()));
            absl::StrAppend(&where, " AND c.name ILIKE $", params.size());
          }
          ASSIGN_OR_RETURN(
              Result r,
              tx.Exec(Paged(absl::StrCat(CollectionSelect(c, params), " WHERE ", where), page),
                      params));
          for (size_t i = 0, n = TrimPage(r, page, out); i < n; ++i) {
            FillCollection(r, i, out->add_collections());
          }
          return LoadRules(tx, out->mutable_collections());
        });
  }

  grpc::Status GetCollection(grpc::ServerContext* ctx, const v1::GetRequest* req,
                             v1::Collection* out) override {
    return Run(ctx, __func__, "collection.read",
               [&](Transaction& tx, const Caller& c) -> absl::Status {
                 return ReadCollection(tx, c, req->name(), out);
               });
  }

  grpc::Status CreateCollection(grpc::ServerContext* ctx, const v1::Collection* req,
                                v1::Collection* out) override {
    return Run(
        ctx, __func__, "collection.create", [&](Transaction& tx, const Caller& c) -> absl::Status {
          RETURN_IF_ERROR(CheckName("name", req->name()));
          if (req->comment().size() > kMaxCommentBytes || !inventory::IsCleanText(req->comment())) {
            return absl::InvalidArgumentError(
                absl::StrCat("comment: at most ", kMaxCommentBytes, " bytes of text"));
          }
          const std::string limiting = req->limiting().empty() ? "All Systems" : req->limiting();
          v1::Collection lim;
          RETURN_IF_ERROR(ReadCollection(tx, c, limiting, &lim));
          RETURN_IF_ERROR(RequireContained(tx, c, limiting));
          std::vector<std::string> scopes = ToVector(req->scopes());
          if (scopes.empty()) scopes = {"Default"};
          RETURN_IF_ERROR(CheckScopes(tx, c, scopes));
          ASSIGN_OR_RETURN(Result exists,
                           tx.Exec("SELECT 1 FROM collections WHERE name = $1", {req->name()}));
          if (!exists.empty()) {
            return absl::AlreadyExistsError(
                absl::StrCat("collection \"", req->name(), "\" already exists"));
          }
          RETURN_IF_ERROR(
              tx.Exec("INSERT INTO collections (name, comment, limiting, scopes, "
                      "created_by) VALUES ($1, $2, $3, $4::text[], $5)",
                      {req->name(), req->comment(), limiting, TextArrayLiteral(scopes), c.name})
                  .status());
          ASSIGN_OR_RETURN(std::vector<std::string> rules,
                           AddRules(tx, c, req->name(), req->rules()));
          RETURN_IF_ERROR(
              Audit(tx, c, "create", "collection", req->name(),
                    absl::StrCat("limiting=", limiting, " scopes=", absl::StrJoin(scopes, ","),
                                 " rules=[", absl::StrJoin(rules, "; "), "]")));
          RETURN_IF_ERROR(
              tx.Exec("SELECT pg_notify('strata_collections', 'definitions')").status());
          return ReadCollection(tx, c, req->name(), out);
        });
  }

  grpc::Status UpdateCollection(grpc::ServerContext* ctx, const v1::UpdateCollectionRequest* req,
                                v1::Collection* out) override {
    return Run(
        ctx, __func__, "collection.update", [&](Transaction& tx, const Caller& c) -> absl::Status {
          v1::Collection before;
          RETURN_IF_ERROR(ReadCollection(tx, c, req->name(), &before));
          if (before.builtin()) {
            return absl::FailedPreconditionError(
                absl::StrCat("collection \"", req->name(), "\" is built in and cannot be changed"));
          }
          RETURN_IF_ERROR(RequireEditable(tx, c, req->name()));
          if (req->remove_rules_size() > kMaxRulesPerCollection) {
            return absl::InvalidArgumentError(absl::StrCat(
                "remove_rules: a collection has at most ", kMaxRulesPerCollection, " rules"));
          }
          std::vector<std::string> changes;
          if (req->has_comment()) {
            if (req->comment().size() > kMaxCommentBytes ||
                !inventory::IsCleanText(req->comment())) {
              return absl::InvalidArgumentError(
                  absl::StrCat("comment: at most ", kMaxCommentBytes, " bytes of text"));
            }
            RETURN_IF_ERROR(tx.Exec("UPDATE collections SET comment = $2, updated_at = now() WHERE "
                                    "name = $1",
                                    {req->name(), req->comment()})
                                .status());
            changes.push_back(
                absl::StrCat("comment: \"", before.comment(), "\" -> \"", req->comment(), "\""));
          }
          for (const auto& rule : req->remove_rules()) {
            ASSIGN_OR_RETURN(Result r,
                             tx.Exec("DELETE FROM collection_rules WHERE collection = $1 AND "
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
                           AddRules(tx, c, req->name(), req->add_rules()));
          for (const auto& a : added) changes.push_back("+rule " + a);
          if (changes.empty()) return absl::InvalidArgumentError("nothing to change");
          RETURN_IF_ERROR(
              tx.Exec("UPDATE collections SET updated_at = now() WHERE name = $1", {req->name()})
                  .status());
          RETURN_IF_ERROR(
              Audit(tx, c, "update", "collection", req->name(), absl::StrJoin(changes, "; ")));
          return ReadCollection(tx, c, req->name(), out);
        });
  }

  grpc::Status DeleteCollection(grpc::ServerContext* ctx, const v1::GetRequest* req,
                                v1::Deleted* out) override {
    return Run(
        ctx, __func__, "collection.delete", [&](Transaction& tx, const Caller& c) -> absl::Status {
          v1::Collection before;
          RETURN_IF_ERROR(ReadCollection(tx, c, req->name(), &before));
          if (before.builtin()) {
            return absl::FailedPreconditionError(
                absl::StrCat("collection \"", req->name(), "\" is built in and cannot be deleted"));
          }
          RETURN_IF_ERROR(RequireEditable(tx, c, req->name()));
          ASSIGN_OR_RETURN(
              Result users,
              tx.Exec(
                  "SELECT name FROM collections WHERE limiting = $1 UNION SELECT collection FROM "
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
              tx.Exec("DELETE FROM collection_rules WHERE collection = $1", {req->name()})
                  .status());
          RETURN_IF_ERROR(
              tx.Exec("DELETE FROM collections WHERE name = $1", {req->name()}).status());
          RETURN_IF_ERROR(Audit(
              tx, c, "delete", "collection", req->name(),
              absl::StrCat("had ", before.rules_size(), " rules, limiting=", before.limiting())));
          out->set_name(req->name());
          return absl::OkStatus();
        });
  }

  grpc::Status ListCollectionMembers(grpc::ServerContext* ctx, const v1::ListMembersRequest* req,
                                     v1::DeviceList* out) override {
    return Run(ctx, __func__, "collection.read",
               [&](Transaction& tx, const Caller& c) -> absl::Status {
                 if (!c.Has("device.read"))
                   return Deny(c, "device.read", "collection", req->name());
                 v1::Collection coll;
                 RETURN_IF_ERROR(ReadCollection(tx, c, req->name(), &coll));
                 return ListDeviceRows(tx, c, req->list(), "", out, req->name());
               });
  }

  grpc::Status ListRoles(grpc::ServerContext* ctx, const v1::ListRequest* req,
                         v1::RoleList* out) override {
    return Run(ctx, __func__, "role.read", [&](Transaction& tx, const Caller&) -> absl::Status {
      ASSIGN_OR_RETURN(Page page, ParsePage(*req, {{"name", "name"}}, "name"));
      store::Params params;
      std::string sql = "SELECT name, description, builtin, permissions::text FROM security_roles";
      if (!req->filter().empty()) {
        params.emplace_back(NamePattern(req->filter()));
        sql += " WHERE name ILIKE $1";
      }
      ASSIGN_OR_RETURN(Result r, tx.Exec(Paged(sql, page), params));
      for (size_t i = 0, n = TrimPage(r, page, out); i < n; ++i) FillRole(r, i, out->add_roles());
      return absl::OkStatus();
    });
  }

  grpc::Status GetRole(grpc::ServerContext* ctx, const v1::GetRequest* req,
                       v1::Role* out) override {
    return Run(ctx, __func__, "role.read", [&](Transaction& tx, const Caller&) -> absl::Status {
      return ReadRole(tx, req->name(), out);
    });
  }

  grpc::Status CopyRole(grpc::ServerContext* ctx, const v1::CopyRoleRequest* req,
                        v1::Role* out) override {
    return Run(ctx, __func__, "role.create", [&](Transaction& tx, const Caller& c) -> absl::Status {
      RETURN_IF_ERROR(CheckName("name", req->name()));
      if (req->description().size() > kMaxCommentBytes ||
          !inventory::IsCleanText(req->description())) {
        return absl::InvalidArgumentError("description: at most 1024 bytes of text");
      }
      v1::Role source;
      RETURN_IF_ERROR(ReadRole(tx, req->source(), &source));
      std::set<std::string> perms(source.permissions().begin(), source.permissions().end());
      if (perms.count("*") && req->remove_permissions_size() > 0) {
        perms = {KnownPermissions().begin(), KnownPermissions().end()};  // expand to remove
      }
      for (const auto& list : {req->add_permissions(), req->remove_permissions()}) {
        for (const auto& p : list) {
          if (std::find(KnownPermissions().begin(), KnownPermissions().end(), p) ==
              KnownPermissions().end()) {
            return absl::InvalidArgumentError(
                absl::StrCat("unknown permission \"", p,
                             "\" (known: ", absl::StrJoin(KnownPermissions(), ", "), ")"));
          }
        }
      }
      for (const auto& p : req->add_permissions()) perms.insert(p);
      for (const auto& p : req->remove_permissions()) perms.erase(p);
      for (const auto& p : perms) {
        if (!c.Has(p)) {
          return absl::PermissionDeniedError(absl::StrCat(c.name, " may not make a role holding ",
                                                          p, ", which ", c.name, " lacks"));
        }
      }
      ASSIGN_OR_RETURN(Result exists,
                       tx.Exec("SELECT 1 FROM security_roles WHERE name = $1", {req->name()}));
      if (!exists.empty()) {
        return absl::AlreadyExistsError(absl::StrCat("role \"", req->name(), "\" already exists"));
      }
      std::vector<std::string> list(perms.begin(), perms.end());
      RETURN_IF_ERROR(tx.Exec("INSERT INTO security_roles (name, description, permissions) "
                              "VALUES ($1, $2, $3::text[])",
                              {req->name(), req->description(), TextArrayLiteral(list)})
                          .status());
      RETURN_IF_ERROR(Audit(
          tx, c, "create", "role", req->name(),
          absl::StrCat("copy of ", req->source(), "; permissions=", absl::StrJoin(list, ","))));
      return ReadRole(tx, req->name(), out);
    });
  }

  grpc::Status DeleteRole(grpc::ServerContext* ctx, const v1::GetRequest* req,
                          v1::Deleted* out) override {
    return Run(ctx, __func__, "role.delete", [&](Transaction& tx, const Caller& c) -> absl::Status {
      v1::Role role;
      RETURN_IF_ERROR(ReadRole(tx, req->name(), &role));
      if (role.builtin()) {
        return absl::FailedPreconditionError(
            absl::StrCat("role \"", req->name(), "\" is built in and cannot be deleted"));
      }
      ASSIGN_OR_RETURN(Result users,
                       tx.Exec("SELECT string_agg(name, ', ' ORDER BY name) FROM administrators "
                               "WHERE $1 = ANY(roles)",
                               {req->name()}));
      if (!users.IsNull(0, 0)) {
        return absl::FailedPreconditionError(
            absl::StrCat("role \"", req->name(), "\" is still held by: ", users.GetString(0, 0)));
      }
      RETURN_IF_ERROR(
          tx.Exec("DELETE FROM security_roles WHERE name = $1", {req->name()}).status());
      RETURN_IF_ERROR(Audit(tx, c, "delete", "role", req->name(),
                            "permissions=" + absl::StrJoin(role.permissions(), ",")));
      out->set_name(req->name());
      return absl::OkStatus();
    });
  }

  grpc::Status ListAdministrators(grpc::ServerContext* ctx, const v1::ListRequest* req,
                                  v1::AdministratorList* out) override {
    return Run(ctx, __func__, "admin.read", [&](Transaction& tx, const Caller&) -> absl::Status {
      ASSIGN_OR_RETURN(Page page, ParsePage(*req, {{"name", "name"}}, "name"));
      store::Params params;
      std::string sql =
          "SELECT name, roles::text, scopes::text, collections::text FROM administrators";
      if (!req->filter().empty()) {
        params.emplace_back(NamePattern(req->filter()));
        sql += " WHERE name ILIKE $1";
      }
      ASSIGN_OR_RETURN(Result r, tx.Exec(Paged(sql, page), params));
      for (size_t i = 0, n = TrimPage(r, page, out); i < n; ++i) {
        auto* a = out->add_administrators();
        a->set_name(r.GetString(i, 0));
        for (const auto& v : ParseTextArray(r.GetString(i, 1))) a->add_roles(v);
        for (const auto& v : ParseTextArray(r.GetString(i, 2))) a->add_scopes(v);
        for (const auto& v : ParseTextArray(r.GetString(i, 3))) a->add_collections(v);
      }
      return absl::OkStatus();
    });
  }

  grpc::Status SetAdministrator(grpc::ServerContext* ctx, const v1::Administrator* req,
                                v1::Administrator* out) override {
    return Run(ctx, __func__, "", [&](Transaction& tx, const Caller& c) -> absl::Status {
      RETURN_IF_ERROR(CheckName("name", req->name()));
      ASSIGN_OR_RETURN(Result before,
                       tx.Exec("SELECT roles::text, scopes::text, collections::text FROM "
                               "administrators WHERE name = $1 FOR UPDATE",
                               {req->name()}));
      const std::string perm = before.empty() ? "admin.create" : "admin.update";
      if (!c.Has(perm)) return Deny(c, perm, "administrator", req->name());
      if (req->roles_size() == 0) {
        return absl::InvalidArgumentError("roles: an administrator needs at least one role");
      }
      RETURN_IF_ERROR(CheckNames("roles", req->roles()));
      RETURN_IF_ERROR(CheckNames("scopes", req->scopes()));
      RETURN_IF_ERROR(CheckNames("collections", req->collections()));
      std::vector<std::string> roles = ToVector(req->roles());
      std::vector<std::string> scopes = ToVector(req->scopes());
      std::vector<std::string> colls = ToVector(req->collections());
      if (scopes.empty()) scopes = {"All"};
      if (colls.empty()) colls = {"All Systems"};
      RETURN_IF_ERROR(MustExist(tx, "security_roles", "role", roles));
      std::vector<std::string> named_scopes;
      for (const auto& s : scopes) {
        if (s != "All") named_scopes.push_back(s);
      }
      RETURN_IF_ERROR(MustExist(tx, "security_scopes", "security scope", named_scopes));
      RETURN_IF_ERROR(MustExist(tx, "collections", "collection", colls));
      // Nobody grants more than they hold, or changes their own rights.
      if (req->name() == c.name) {
        return absl::PermissionDeniedError(
            absl::StrCat(c.name,
                         " may not change their own roles, scopes or collections (ask another "
                         "administrator)"));
      }
      std::vector<std::string> target_roles = roles;
      if (!before.empty()) {
        for (const auto& r : ParseTextArray(before.GetString(0, 0))) target_roles.push_back(r);
      }
      ASSIGN_OR_RETURN(std::string beyond, Exceeding(tx, c, target_roles));
      if (!beyond.empty()) {
        return absl::PermissionDeniedError(absl::StrCat(c.name,
                                                        " may not give or change roles holding ",
                                                        beyond, ", which ", c.name, " lacks"));
      }
      for (const auto& scope : scopes) {
        if (!c.all_scopes && !std::count(c.scopes.begin(), c.scopes.end(), scope)) {
          return absl::PermissionDeniedError(absl::StrCat(c.name, " may not give security scope \"",
                                                          scope, "\", which they do not hold"));
        }
      }
      for (const auto& k : colls) RETURN_IF_ERROR(RequireContained(tx, c, k));
      // Created meanwhile by someone else: retried as an update (which needs
      // admin.update), never silently overwritten.
      store::Params values{req->name(), TextArrayLiteral(roles), TextArrayLiteral(scopes),
                           TextArrayLiteral(colls)};
      if (before.empty()) values.emplace_back(c.name);
      ASSIGN_OR_RETURN(
          Result written,
          tx.Exec(before.empty()
                      ? "INSERT INTO administrators (name, roles, scopes, collections, created_by) "
                        "VALUES ($1, $2::text[], $3::text[], $4::text[], $5) ON CONFLICT (name) DO "
                        "NOTHING RETURNING name"
                      : "UPDATE administrators SET roles = $2::text[], scopes = $3::text[], "
                        "collections = $4::text[], updated_at = now() WHERE name = $1 RETURNING "
                        "name",
                  values));
      if (written.empty()) {
        return absl::AbortedError(
            absl::StrCat("administrator ", req->name(), " changed meanwhile; try again"));
      }
      std::string now =
          absl::StrCat("roles=", absl::StrJoin(roles, ","), " scopes=", absl::StrJoin(scopes, ","),
                       " collections=", absl::StrJoin(colls, ","));
      std::string summary =
          before.empty()
              ? now
              : absl::StrCat("roles=", before.GetString(0, 0), " scopes=", before.GetString(0, 1),
                             " collections=", before.GetString(0, 2), " -> ", now);
      RETURN_IF_ERROR(Audit(tx, c, before.empty() ? "create" : "update", "administrator",
                            req->name(), summary));
      out->set_name(req->name());
      for (const auto& v : roles) out->add_roles(v);
      for (const auto& v : scopes) out->add_scopes(v);
      for (const auto& v : colls) out->add_collections(v);
      return absl::OkStatus();
    });
  }

  grpc::Status DeleteAdministrator(grpc::ServerContext* ctx, const v1::GetRequest* req,
                                   v1::Deleted* out) override {
    return Run(
        ctx, __func__, "admin.delete", [&](Transaction& tx, const Caller& c) -> absl::Status {
          if (req->name() == c.name) {
            return absl::FailedPreconditionError("an administrator cannot delete themselves");
          }
          ASSIGN_OR_RETURN(Result target, tx.Exec("SELECT roles::text FROM administrators WHERE "
                                                  "name = $1 FOR UPDATE",
                                                  {req->name()}));
          if (!target.empty()) {
            ASSIGN_OR_RETURN(std::string beyond,
                             Exceeding(tx, c, ParseTextArray(target.GetString(0, 0))));
            if (!beyond.empty()) {
              return absl::PermissionDeniedError(absl::StrCat(c.name, " may not delete ",
                                                              req->name(), ", who holds ", beyond,
                                                              ", which ", c.name, " lacks"));
            }
          }
          ASSIGN_OR_RETURN(Result r, tx.Exec("DELETE FROM administrators WHERE name = $1 RETURNING "
                                             "roles::text",
                                             {req->name()}));
          if (r.empty())
            return absl::NotFoundError(absl::StrCat("no administrator \"", req->name(), "\""));
          RETURN_IF_ERROR(
              Audit(tx, c, "delete", "administrator", req->name(), "roles=" + r.GetString(0, 0)));
          out->set_name(req->name());
          return absl::OkStatus();
        });
  }

  grpc::Status ListAuditLog(grpc::ServerContext* ctx, const v1::ListRequest* req,
                            v1::AuditList* out) override {
    return Run(ctx, __func__, "audit.read", [&](Transaction& tx, const Caller&) -> absl::Status {
      ASSIGN_OR_RETURN(Page page,
                       ParsePage(*req, {{"at", "at"}, {"admin", "admin"}, {"site", "site_code"}},
                                 "at DESC, id"));
      store::Params params;
      std::string sql = absl::StrCat("SELECT ", Ts("at"),
                                     ", site_code, admin, action, object_type, object_name, "
                                     "outcome, summary FROM audit_log");
      if (!req->filter().empty()) {
        params.emplace_back(NamePattern(req->filter()));
        sql +=
            " WHERE admin ILIKE $1 OR object_name ILIKE $1 OR action ILIKE $1 OR outcome "
            "ILIKE $1";
      }
      ASSIGN_OR_RETURN(Result r, tx.Exec(Paged(sql, page), params));
      for (size_t i = 0, n = TrimPage(r, page, out); i < n; ++i) {
        auto* e = out->add_entries();
        e->set_at(r.GetString(i, 0));
        e->set_site_code(r.GetString(i, 1));
        e->set_admin(r.GetString(i, 2));
        e->set_action(r.GetString(i, 3));
        e->set_object_type(r.GetString(i, 4));
        e->set_object_name(r.GetString(i, 5));
        e->set_outcome(r.GetString(i, 6));
        e->set_summary(r.GetString(i, 7));
      }
      return absl::OkStatus();
    });
  }

  grpc::Status ListBoundaries(grpc::ServerContext* ctx, const v1::ListRequest* req,
                              v1::BoundaryList* out) override {
    return Run(ctx, __func__, "boundary.read", [&](Transaction& tx, const Caller&) -> absl::Status {
      ASSIGN_OR_RETURN(Page page,
                       ParsePage(*req, {{"name", "name"}, {"group", "group_name"}}, "name"));
      store::Params params;
      std::string sql = "SELECT name, value, group_name FROM boundaries";
      if (!req->filter().empty()) {
        params.emplace_back(NamePattern(req->filter()));
        sql += " WHERE name ILIKE $1 OR group_name ILIKE $1";
      }
      ASSIGN_OR_RETURN(Result r, tx.Exec(Paged(sql, page), params));
      for (size_t i = 0, n = TrimPage(r, page, out); i < n; ++i) {
        auto* b = out->add_boundaries();
        b->set_name(r.GetString(i, 0));
        b->set_value(r.GetString(i, 1));
        b->set_group(r.GetString(i, 2));
      }
      return absl::OkStatus();
    });
  }

  grpc::Status CreateBoundary(grpc::ServerContext* ctx, const v1::Boundary* req,
                              v1::Boundary* out) override {
    return Run(
        ctx, __func__, "boundary.create", [&](Transaction& tx, const Caller& c) -> absl::Status {
          RETURN_IF_ERROR(CheckName("name", req->name()));
          RETURN_IF_ERROR(CheckBoundaryValue(req->value()));
          RETURN_IF_ERROR(MustExist(tx, "boundary_groups", "boundary group", {req->group()}));
          ASSIGN_OR_RETURN(Result exists,
                           tx.Exec("SELECT 1 FROM boundaries WHERE name = $1", {req->name()}));
          if (!exists.empty()) {
            return absl::AlreadyExistsError(
                absl::StrCat("boundary \"", req->name(), "\" already exists"));
          }
          RETURN_IF_ERROR(tx.Exec("INSERT INTO boundaries (name, value, group_name) VALUES "
                                  "($1, $2, $3)",
                                  {req->name(), req->value(), req->group()})
                              .status());
          RETURN_IF_ERROR(Audit(tx, c, "create", "boundary", req->name(),
                                absl::StrCat(req->value(), " -> group ", req->group())));
          *out = *req;
          return absl::OkStatus();
        });
  }

  grpc::Status DeleteBoundary(grpc::ServerContext* ctx, const v1::GetRequest* req,
                              v1::Deleted* out) override {
    return Run(
        ctx, __func__, "boundary.delete", [&](Transaction& tx, const Caller& c) -> absl::Status {
          ASSIGN_OR_RETURN(Result r, tx.Exec("DELETE FROM boundaries WHERE name = $1 "
                                             "RETURNING value, group_name",
                                             {req->name()}));
          if (r.empty()) {
            return absl::NotFoundError(absl::StrCat("no boundary \"", req->name(), "\""));
          }
          RETURN_IF_ERROR(
              Audit(tx, c, "delete", "boundary", req->name(),
                    absl::StrCat("was ", r.GetString(0, 0), " -> group ", r.GetString(0, 1))));
          out->set_name(req->name());
          return absl::OkStatus();
        });
  }

  grpc::Status ListBoundaryGroups(grpc::ServerContext* ctx, const v1::ListRequest* req,
                                  v1::BoundaryGroupList* out) override {
    return Run(ctx, __func__, "boundary.read", [&](Transaction& tx, const Caller&) -> absl::Status {
      ASSIGN_OR_RETURN(Page page,
                       ParsePage(*req, {{"name", "name"}, {"site", "assigned_site"}}, "name"));
      store::Params params;
      std::string sql = "SELECT name, assigned_site FROM boundary_groups";
      if (!req->filter().empty()) {
        params.emplace_back(NamePattern(req->filter()));
        sql += " WHERE name ILIKE $1";
      }
      ASSIGN_OR_RETURN(Result r, tx.Exec(Paged(sql, page), params));
      for (size_t i = 0, n = TrimPage(r, page, out); i < n; ++i) {
        auto* g = out->add_groups();
        g->set_name(r.GetString(i, 0));
        g->set_assigned_site(r.GetString(i, 1));
      }
      return absl::OkStatus();
    });
  }

  grpc::Status CreateBoundaryGroup(grpc::ServerContext* ctx, const v1::BoundaryGroup* req,
                                   v1::BoundaryGroup* out) override {
    return Run(
        ctx, __func__, "boundary.create", [&](Transaction& tx, const Caller& c) -> absl::Status {
          RETURN_IF_ERROR(CheckName("name", req->name()));
          ASSIGN_OR_RETURN(Result site, tx.Exec("SELECT type FROM sites WHERE code = $1",
                                                {req->assigned_site()}));
          if (site.empty()) {
            return absl::NotFoundError(
                absl::StrCat("no site \"", req->assigned_site(), "\" in the hierarchy"));
          }
          if (site.GetString(0, 0) == "cas") {
            return absl::InvalidArgumentError(
                absl::StrCat("assigned_site: ", req->assigned_site(),
                             " is the central administration site, which has no clients; assign a "
                             "primary or secondary site"));
          }
          ASSIGN_OR_RETURN(Result exists,
                           tx.Exec("SELECT 1 FROM boundary_groups WHERE name = $1", {req->name()}));
          if (!exists.empty()) {
            return absl::AlreadyExistsError(
                absl::StrCat("boundary group \"", req->name(), "\" already exists"));
          }
          RETURN_IF_ERROR(tx.Exec("INSERT INTO boundary_groups (name, assigned_site) "
                                  "VALUES ($1, $2)",
                                  {req->name(), req->assigned_site()})
                              .status());
          RETURN_IF_ERROR(Audit(tx, c, "create", "boundary group", req->name(),
                                "assigned to " + req->assigned_site()));
          *out = *req;
          return absl::OkStatus();
        });
  }

  grpc::Status DeleteBoundaryGroup(grpc::ServerContext* ctx, const v1::GetRequest* req,
                                   v1::Deleted* out) override {
    return Run(
        ctx, __func__, "boundary.delete", [&](Transaction& tx, const Caller& c) -> absl::Status {
          ASSIGN_OR_RETURN(Result used, tx.Exec("SELECT string_agg(name, ', ' ORDER BY name) FROM "
                                                "boundaries WHERE group_name = $1",
                                                {req->name()}));
          if (!used.IsNull(0, 0)) {
            return absl::FailedPreconditionError(
                absl::StrCat("boundary group \"", req->name(),
                             "\" still has boundaries: ", used.GetString(0, 0)));
          }
          ASSIGN_OR_RETURN(Result r, tx.Exec("DELETE FROM boundary_groups WHERE name = $1 "
                                             "RETURNING assigned_site",
                                             {req->name()}));
          if (r.empty()) {
            return absl::NotFoundError(absl::StrCat("no boundary group \"", req->name(), "\""));
          }
          RETURN_IF_ERROR(Audit(tx, c, "delete", "boundary group", req->name(),
                                "was assigned to " + r.GetString(0, 0)));
          out->set_name(req->name());
          return absl::OkStatus();
        });
  }

  grpc::Status ListClientSettings(grpc::ServerContext* ctx, const v1::ListRequest* req,
                                  v1::ClientSettingList* out) override {
    return Run(
        ctx, __func__, "settings.read", [&](Transaction& tx, const Caller& c) -> absl::Status {
          ASSIGN_OR_RETURN(
              Page page,
              ParsePage(*req,
                        {{"name", "s.name"}, {"priority", "s.priority"}, {"devices", "devices"}},
                        "s.priority, s.name"));
          store::Params params;
          // The default reaches everyone: every holder of settings.read sees it.
          std::string where =
              absl::StrCat("(s.builtin OR ", VisibleCollection(c, "s", params), ")");
          if (!req->filter().empty()) {
            params.emplace_back(NamePattern(req->filter()));
            absl::StrAppend(&where, " AND s.name ILIKE $", params.size());
          }
          ASSIGN_OR_RETURN(
              Result r,
              tx.Exec(Paged(absl::StrCat(SettingSelect(c, params), " WHERE ", where), page),
                      params));
          for (size_t i = 0, n = TrimPage(r, page, out); i < n; ++i) {
            FillSetting(r, i, out->add_settings());
          }
          return absl::OkStatus();
        });
  }

  grpc::Status GetClientSetting(grpc::ServerContext* ctx, const v1::GetRequest* req,
                                v1::ClientSetting* out) override {
    return Run(ctx, __func__, "settings.read",
               [&](Transaction& tx, const Caller& c) -> absl::Status {
                 return ReadSetting(tx, c, req->name(), out);
               });
  }

  grpc::Status CreateClientSetting(grpc::ServerContext* ctx, const v1::ClientSetting* req,
                                   v1::ClientSetting* out) override {
    return Run(
        ctx, __func__, "settings.update", [&](Transaction& tx, const Caller& c) -> absl::Status {
          RETURN_IF_ERROR(CheckName("name", req->name()));
          if (req->name() == collections::kDefaultClientSettings) {
            return absl::AlreadyExistsError(
                absl::StrCat("\"", req->name(), "\" is built in: update it instead"));
          }
          RETURN_IF_ERROR(CheckDescription(req->description()));
          if (!req->approval_mode().empty()) {
            return absl::InvalidArgumentError(absl::StrCat(
                "approval_mode: only the ", collections::kDefaultClientSettings,
                " have one (registration comes before a client is in any collection)"));
          }
          std::vector<std::string> scopes = ToVector(req->scopes());
          if (scopes.empty()) scopes = {"Default"};
          RETURN_IF_ERROR(CheckScopes(tx, c, scopes));
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
                               TextArrayLiteral(scopes), c.name};
          std::string summary = absl::StrCat("priority=", priority);
          for (size_t k = 0; k < values.size(); ++k) {
            params.emplace_back(values[k] ? absl::StrCat(*values[k])
                                          : std::optional<std::string>());
            if (values[k]) absl::StrAppend(&summary, " ", kSettingFields[k].name, "=", *values[k]);
          }
          RETURN_IF_ERROR(tx.Exec("INSERT INTO client_settings (name, description, priority, "
                                  "scopes, created_by, policy_poll_seconds, inventory_seconds, "
                                  "heartbeat_seconds, splay_seconds) VALUES ($1, $2, $3, "
                                  "$4::text[], $5, $6, $7, $8, $9)",
                                  params)
                              .status());
          RETURN_IF_ERROR(Audit(tx, c, "create", "client setting", req->name(),
                                absl::StrCat(summary, " scopes=", absl::StrJoin(scopes, ","))));
          return ReadSetting(tx, c, req->name(), out);
        });
  }

  grpc::Status UpdateClientSetting(grpc::ServerContext* ctx,
                                   const v1::UpdateClientSettingRequest* req,
                                   v1::ClientSetting* out) override {
    return Run(
        ctx, __func__, "settings.update", [&](Transaction& tx, const Caller& c) -> absl::Status {
          v1::ClientSetting before;
          RETURN_IF_ERROR(ReadSetting(tx, c, req->name(), &before));
          RETURN_IF_ERROR(RequireReach(tx, c, before));
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
            RETURN_IF_ERROR(CheckDescription(req->description()));
            set("description", req->description(), "\"" + before.description() + "\"",
                "\"" + req->description() + "\"");
          }
          if (req->has_priority()) {
            if (before.builtin()) {
              return absl::InvalidArgumentError(absl::StrCat("priority: the ",
                                                             collections::kDefaultClientSettings,
                                                             " always come last (10000)"));
            }
            RETURN_IF_ERROR(CheckPriority(tx, req->name(), req->priority()));
            set("priority", absl::StrCat(req->priority()), absl::StrCat(before.priority()),
                absl::StrCat(req->priority()));
          }
          if (req->has_approval_mode()) {
            if (!before.builtin()) {
              return absl::InvalidArgumentError(
                  absl::StrCat("approval_mode: only the ", collections::kDefaultClientSettings,
                               " have one (registration comes before a client is in any "
                               "collection)"));
            }
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
          RETURN_IF_ERROR(
              tx.Exec(absl::StrCat("UPDATE client_settings SET ", absl::StrJoin(sets, ", "),
                                   ", updated_at = now() WHERE name = $1"),
                      params)
                  .status());
          RETURN_IF_ERROR(
              Audit(tx, c, "update", "client setting", req->name(), absl::StrJoin(changes, "; ")));
          return ReadSetting(tx, c, req->name(), out);
        });
  }

  grpc::Status DeleteClientSetting(grpc::ServerContext* ctx, const v1::GetRequest* req,
                                   v1::Deleted* out) override {
    return Run(
        ctx, __func__, "settings.update", [&](Transaction& tx, const Caller& c) -> absl::Status {
          v1::ClientSetting before;
          RETURN_IF_ERROR(ReadSetting(tx, c, req->name(), &before));
          if (before.builtin()) {
            return absl::FailedPreconditionError(absl::StrCat(
                "\"", req->name(), "\" is built in and cannot be deleted (update it instead)"));
          }
          RETURN_IF_ERROR(RequireReach(tx, c, before));
          RETURN_IF_ERROR(
              tx.Exec("DELETE FROM client_setting_deployments WHERE setting = $1", {req->name()})
                  .status());
          RETURN_IF_ERROR(
              tx.Exec("DELETE FROM client_settings WHERE name = $1", {req->name()}).status());
          RETURN_IF_ERROR(Audit(tx, c, "delete", "client setting", req->name(),
                                absl::StrCat("priority=", before.priority(), " deployed to [",
                                             absl::StrJoin(before.deployed_to(), ", "), "]")));
          out->set_name(req->name());
          return absl::OkStatus();
        });
  }

  grpc::Status DeployClientSetting(grpc::ServerContext* ctx,
                                   const v1::DeployClientSettingRequest* req,
                                   v1::ClientSetting* out) override {
    return Deployment(ctx, __func__, *req, true, out);
  }

  grpc::Status UndeployClientSetting(grpc::ServerContext* ctx,
                                     const v1::DeployClientSettingRequest* req,
                                     v1::ClientSetting* out) override {
    return Deployment(ctx, __func__, *req, false, out);
  }

  grpc::Status ListLinks(grpc::ServerContext* ctx, const v1::ListRequest* req,
                         v1::LinkList* out) override {
    // Asked before the transaction: no database connection waits on it.
    std::string degraded;
    std::optional<std::vector<v1::LinkStatus>> live = LiveLinks(*ctx, &degraded);
    return Run(ctx, __func__, "link.read", [&](Transaction& tx, const Caller&) -> absl::Status {
      out->Clear();  // a retried transaction starts over
      std::vector<v1::LinkStatus> links;
      if (live) {
        links = *live;
      } else {
        out->set_degraded_reason(degraded);
        ASSIGN_OR_RETURN(links, DatabaseLinks(tx));
      }
      const std::string pattern = absl::AsciiStrToLower(req->filter());
      for (auto& l : links) {
        if (!pattern.empty() && !GlobMatch(pattern, absl::AsciiStrToLower(l.peer_site_code()))) {
          continue;
        }
        *out->add_links() = std::move(l);
      }
      return absl::OkStatus();
    });
  }

  grpc::Status DiagnoseLink(grpc::ServerContext* ctx, const v1::DiagnoseLinkRequest* req,
                            v1::LinkDiagnosis* out) override {
    std::string degraded;
    std::optional<std::vector<v1::LinkStatus>> live = LiveLinks(*ctx, &degraded);
    return Run(ctx, __func__, "link.read", [&](Transaction& tx, const Caller& c) -> absl::Status {
      out->Clear();  // a retried transaction starts over
      RETURN_IF_ERROR(ValidateSiteCode(req->peer()));
      if (req->reinitialize() && !c.Has("link.reinit")) {
        return Deny(c, "link.reinit", "link", req->peer());
      }
      std::vector<v1::LinkStatus> links;
      if (live) {
        links = *live;
      } else {
        ASSIGN_OR_RETURN(links, DatabaseLinks(tx));
      }
      auto add = [&](const char* severity, const std::string& text) {
        auto* f = out->add_findings();
        f->set_severity(severity);
        f->set_text(text);
      };
      const v1::LinkStatus* link = nullptr;
      for (const auto& l : links) {
        if (l.peer_site_code() == req->peer()) link = &l;
      }
      if (link == nullptr) {
        return absl::NotFoundError(absl::StrCat("site ", site_, " has no link to ", req->peer()));
      }
      *out->mutable_link() = *link;
      if (!degraded.empty()) add("error", degraded);
      if (degraded.empty() && !link->connected()) {
        add("error", absl::StrCat("not connected", link->last_error().empty() ? "" : ": ",
                                  link->last_error(), ". Check that site ", req->peer(),
                                  "'s server runs and that the two can reach each other "
                                  "(addresses, certificates); see both site servers' logs."));
      } else if (!link->last_error().empty()) {
        add("warning", "last error: " + link->last_error());
      }
      if (link->lag_changes() > 0) {
        add(link->state() == v1::LINK_STATE_ACTIVE ? "ok" : "warning",
            absl::StrCat(link->lag_changes(), " changes of this site not yet acknowledged by ",
                         req->peer(), " (oldest ", static_cast<int64_t>(link->lag_seconds()),
                         " s)"));
      }
      ASSIGN_OR_RETURN(Result in, tx.Exec("SELECT extract(epoch FROM now() - updated_at)::bigint "
                                          "FROM repl_inbound WHERE peer = $1",
                                          {req->peer()}));
      if (in.empty()) {
        add("warning", absl::StrCat("nothing applied from ", req->peer(),
                                    " yet: it sends a snapshot when the link next connects"));
      } else {
        add("ok", absl::StrCat("last applied from ", req->peer(), " ", in.GetInt(0, 0), " s ago"));
      }
      // As the link itself decides (NeedsSnapshot): can the peer resume from
      // what is left of this site's log?
      ASSIGN_OR_RETURN(Result acked, tx.Exec("SELECT xid, log_id FROM repl_outbound WHERE peer "
                                             "= $1",
                                             {req->peer()}));
      if (!acked.empty()) {
        ASSIGN_OR_RETURN(replication::LogHead head, replication::ReadLogHead(tx));
        replication::Position position{acked.GetInt(0, 0), acked.GetInt(0, 1)};
        if (replication::NeedsSnapshot(head, head.epoch, position)) {
          add("warning", absl::StrCat(req->peer(),
                                      " is behind this site's retained change log: it is "
                                      "re-initialized from a snapshot when it reconnects"));
        }
      }
      if (out->findings_size() > 0 && link->state() == v1::LINK_STATE_ACTIVE && degraded.empty()) {
        add("ok", "active: connected, changes flowing");
      }
      if (req->reinitialize()) {
        // Forgetting what was applied from the peer makes this site refuse
        // its next batch; the peer then reconnects and sends a snapshot,
        // which also removes rows it no longer has.
        // The applier holds this row while it applies a batch or a snapshot:
        // wait a little, not for minutes.
        RETURN_IF_ERROR(tx.Exec("SET LOCAL lock_timeout = '3s'").status());
        absl::Status del =
            tx.Exec("DELETE FROM repl_inbound WHERE peer = $1", {req->peer()}).status();
        if (!del.ok()) {
          return absl::UnavailableError(absl::StrCat(
              "the link to ", req->peer(), " is busy applying a batch or a snapshot; try again (",
              del.message(), ")"));
        }
        RETURN_IF_ERROR(Audit(tx, c, "reinitialize", "link", req->peer(),
                              absl::StrCat("state ", v1::LinkState_Name(link->state()), ", lag ",
                                           link->lag_changes(), " changes")));
        out->set_reinitialized(true);
        add("ok", absl::StrCat("re-initialization requested: ", site_,
                               " refuses the next batch from ", req->peer(),
                               ", which then sends a full snapshot (at its next change or "
                               "reconnection)"));
      }
      return absl::OkStatus();
    });
  }

  grpc::Status ListReports(grpc::ServerContext* ctx, const v1::ListRequest* req,
                           v1::ReportList* out) override {
    return Run(ctx, __func__, "report.run", [&](Transaction&, const Caller&) -> absl::Status {
      for (const auto& r : BuiltinReports()) {
        if (!req->filter().empty() && r.name.find(req->filter()) == std::string::npos) continue;
        auto* info = out->add_reports();
        info->set_name(r.name);
        info->set_description(r.description);
        for (const auto& p : r.parameters) info->add_parameters(p);
      }
      return absl::OkStatus();
    });
  }

  grpc::Status RunReport(grpc::ServerContext* ctx, const v1::RunReportRequest* req,
                         v1::ReportResult* out) override {
    return Run(ctx, __func__, "report.run", [&](Transaction& tx, const Caller& c) -> absl::Status {
      const ReportSpec* spec = FindReport(req->name());
      if (spec == nullptr) {
        std::vector<std::string> names;
        for (const auto& r : BuiltinReports()) names.push_back(r.name);
        return absl::NotFoundError(absl::StrCat("no report \"", req->name(),
                                                "\" (reports: ", absl::StrJoin(names, ", "), ")"));
      }
      if (!spec->permission.empty() && !c.Has(spec->permission)) {
        return Deny(c, spec->permission, "report", spec->name);
      }
      std::map<std::string, std::string> args;
      for (const auto& [k, v] : req->parameters()) {
        if (std::find(spec->parameters.begin(), spec->parameters.end(), k) ==
            spec->parameters.end()) {
          return absl::InvalidArgumentError(
              absl::StrCat("report ", spec->name, " takes no parameter \"", k, "\"",
                           spec->parameters.empty()
                               ? std::string()
                               : " (it takes: " + absl::StrJoin(spec->parameters, ", ") + ")"));
        }
        RETURN_IF_ERROR(CheckName(absl::StrCat("parameter ", k), v));
        args[k] = v;
      }
      if (req->max_rows() < 0 || req->max_rows() > kMaxReportRows) {
        return absl::InvalidArgumentError(absl::StrCat("max_rows: 0-", kMaxReportRows));
      }
      const int limit = req->max_rows() > 0 ? req->max_rows() : kDefaultReportRows;
      ReportCaller rc{c.collections, c.scopes, c.all_scopes};
      store::Params params;
      std::string sql = spec->sql(rc, args, params);
      ASSIGN_OR_RETURN(
          Result r,
          tx.Exec(absl::StrCat("SELECT * FROM (", sql, ") report LIMIT ", limit + 1), params));
      out->set_name(spec->name);
      for (int i = 0; i < r.columns(); ++i) out->add_columns(r.ColumnName(i));
      const size_t n = std::min<size_t>(r.size(), limit);
      for (size_t i = 0; i < n; ++i) {
        auto* row = out->add_rows();
        for (int j = 0; j < r.columns(); ++j) row->add_values(r.GetString(i, j));
      }
      out->set_truncated(r.size() > n);
      return absl::OkStatus();
    });
  }

 private:
  using Handler = std::function<absl::Status(Transaction&, const Caller&)>;

  // Identifies the caller, checks `permission` (none if empty), runs `fn` in
  // one transaction. A denial is audited in a transaction of its own (the
  // call's is rolled back: nothing it did stays).
  grpc::Status Run(grpc::ServerContext* ctx, const char* method, const std::string& permission,
                   const Handler& fn) {
    auto peer = PeerFromContext(*ctx);
    if (!peer.ok()) return ToGrpcStatus(peer.status());
    if (peer->role != "admin") {
      return ToGrpcStatus(absl::PermissionDeniedError(
          absl::StrCat("the admin API takes administrators' certificates (OU=admin); this one is ",
                       peer->ToString())));
    }
    absl::Status s = pool_.With([&](store::Connection& conn) {
      return conn.Transact([&](Transaction& tx) -> absl::Status {
        ASSIGN_OR_RETURN(Caller caller, LoadCaller(tx, peer->name));
        if (!permission.empty() && !caller.Has(permission)) {
          return Deny(caller, permission, "", "");
        }
        return fn(tx, caller);
      });
    });
    if (absl::IsPermissionDenied(s)) {
      // Every refusal is on record (site data: it reaches the CAS).
      absl::Status a = pool_.With([&](store::Connection& conn) {
        return conn.Transact([&](Transaction& tx) -> absl::Status {
          return tx
              .Exec(
                  "INSERT INTO audit_log (site_code, admin, action, object_type, object_name, "
                  "outcome, summary) VALUES ($1, $2, $3, '', '', 'denied', $4)",
                  {site_, peer->name, std::string(method), std::string(s.message())})
              .status();
        });
      });
      if (!a.ok()) LogWarning("provider.audit_failed", {{"error", a}});
      LogInfo("provider.denied", {{"admin", peer->name}, {"error", s}});
    } else if (!s.ok() && s.code() != absl::StatusCode::kInvalidArgument &&
               s.code() != absl::StatusCode::kNotFound &&
               s.code() != absl::StatusCode::kAlreadyExists &&
               s.code() != absl::StatusCode::kFailedPrecondition) {
      LogWarning("provider.call_failed", {{"admin", peer->name}, {"method", method}, {"error", s}});
    }
    return ToGrpcStatus(s);
  }

  static absl::Status Deny(const Caller& c, const std::string& permission,
                           const std::string& object_type, const std::string& object_name) {
    return absl::PermissionDeniedError(absl::StrCat(
        c.name, " lacks the permission ", permission,
        object_name.empty() ? "" : absl::StrCat(" on ", object_type, " \"", object_name, "\""),
        " (roles: ", absl::StrJoin(c.roles, ", "), ")"));
  }

  absl::StatusOr<Caller> LoadCaller(Transaction& tx, const std::string& name) {
    ASSIGN_OR_RETURN(Result r, tx.Exec("SELECT roles::text, scopes::text, collections::text FROM "
                                       "administrators WHERE name = $1",
                                       {name}));
    if (r.empty()) {
      return absl::PermissionDeniedError(
          absl::StrCat(name,
                       " is not an administrator of this hierarchy (a Full Administrator adds them "
                       "with `stratactl set admin`)"));
    }
    Caller c;
    c.name = name;
    c.roles = ParseTextArray(r.GetString(0, 0));
    c.scopes = ParseTextArray(r.GetString(0, 1));
    c.collections = ParseTextArray(r.GetString(0, 2));
    c.all_scopes = std::count(c.scopes.begin(), c.scopes.end(), "All") > 0;
    ASSIGN_OR_RETURN(Result p, tx.Exec("SELECT DISTINCT unnest(permissions) FROM security_roles "
                                       "WHERE name = ANY($1::text[])",
                                       {TextArrayLiteral(c.roles)}));
    for (size_t i = 0; i < p.size(); ++i) c.permissions.insert(p.GetString(i, 0));
    return c;
  }

  absl::Status Audit(Transaction& tx, const Caller& c, const std::string& action,
                     const std::string& type, const std::string& name, const std::string& summary) {
    LogInfo("provider.change",
            {{"admin", c.name}, {"action", action}, {"object", type}, {"name", name}});
    return tx
        .Exec(
            "INSERT INTO audit_log (site_code, admin, action, object_type, object_name, "
            "outcome, summary) VALUES ($1, $2, $3, $4, $5, 'ok', $6)",
            {site_, c.name, action, type, name, Truncated(summary, 8192)})
        .status();
  }

  absl::Status Bootstrap(store::Connection& conn) {
    if (config_.bootstrap_admin().empty()) return absl::OkStatus();
    return conn.Transact([&](Transaction& tx) -> absl::Status {
      ASSIGN_OR_RETURN(Result any, tx.Exec("SELECT 1 FROM administrators LIMIT 1"));
      if (!any.empty()) return absl::OkStatus();
      RETURN_IF_ERROR(tx.Exec("INSERT INTO administrators (name, roles, scopes, collections, "
                              "created_by) VALUES ($1, '{Full Administrator}', '{All}', "
                              "'{All Systems}', 'bootstrap')",
                              {config_.bootstrap_admin()})
                          .status());
      LogInfo("provider.bootstrap_admin", {{"admin", config_.bootstrap_admin()}});
      return tx
          .Exec(
              "INSERT INTO audit_log (site_code, admin, action, object_type, object_name, "
              "outcome, summary) VALUES ($1, 'bootstrap', 'create', 'administrator', $2, 'ok', "
              "'first administrator: Full Administrator, scopes=All')",
              {site_, config_.bootstrap_admin()})
          .status();
    });
  }

  // --- collections ---------------------------------------------------------

  // SQL condition: collection alias `a` is in one of the caller's scopes.
  static std::string VisibleCollection(const Caller& c, const std::string& a,
                                       store::Params& params) {
    if (c.all_scopes) return "true";
    params.emplace_back(TextArrayLiteral(c.scopes));
    return absl::StrCat(a, ".scopes && $", params.size(), "::text[]");
  }

  // SQL condition: device alias `d` is in one of the caller's collections.
  static std::string VisibleDevice(const Caller& c, const std::string& d, store::Params& params) {
    params.emplace_back(TextArrayLiteral(c.collections));
    return absl::StrCat("EXISTS (SELECT 1 FROM collection_members vm WHERE vm.device_id = ", d,
                        ".id AND vm.collection = ANY($", params.size(), "::text[]))");
  }

  std::string CollectionSelect(const Caller& c, store::Params& params) {
    // Members the caller may see. Holders of All Systems see every member:
    // no per-member visibility lookup (millions of them at a CAS).
    std::string members =
        std::count(c.collections.begin(), c.collections.end(), "All Systems")
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

  static void FillCollection(const Result& r, size_t i, v1::Collection* out) {
    out->set_name(r.GetString(i, 0));
    out->set_comment(r.GetString(i, 1));
    out->set_limiting(r.GetString(i, 2));
    out->set_builtin(r.GetBool(i, 3));
    for (const auto& s : ParseTextArray(r.GetString(i, 4))) out->add_scopes(s);
    out->set_created_by(r.GetString(i, 5));
    out->set_members(r.GetInt(i, 6));
    out->set_evaluated_at(r.GetString(i, 7));
    out->set_evaluation_error(r.GetString(i, 8));
  }

  static absl::Status LoadRules(Transaction& tx,
                                google::protobuf::RepeatedPtrField<v1::Collection>* colls) {
    if (colls->empty()) return absl::OkStatus();
    std::map<std::string, v1::Collection*> by_name;
    std::vector<std::string> names;
    for (auto& c : *colls) {
      by_name[c.name()] = &c;
      names.push_back(c.name());
    }
    ASSIGN_OR_RETURN(Result r,
                     tx.Exec("SELECT collection, name, kind, coalesce(query, ''), "
                             "coalesce(device_id::text, ''), coalesce(ref, '') FROM "
                             "collection_rules WHERE collection = ANY($1::text[]) ORDER BY "
                             "collection, name",
                             {TextArrayLiteral(names)}));
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

  // The collection if it exists and the caller's scopes reach it (NotFound
  // otherwise, PermissionDenied when it exists in another scope).
  absl::Status ReadCollection(Transaction& tx, const Caller& c, const std::string& name,
                              v1::Collection* out) {
    store::Params params;
    std::string select = CollectionSelect(c, params);
    params.emplace_back(name);
    ASSIGN_OR_RETURN(Result r,
                     tx.Exec(absl::StrCat(select, " WHERE c.name = $", params.size()), params));
    if (r.empty()) return absl::NotFoundError(absl::StrCat("no collection \"", name, "\""));
    FillCollection(r, 0, out);
    if (!c.all_scopes) {
      bool visible = false;
      for (const auto& s : out->scopes()) {
        visible = visible || std::count(c.scopes.begin(), c.scopes.end(), s) > 0;
      }
      if (!visible) {
        return absl::PermissionDeniedError(
            absl::StrCat(c.name, " may not see collection \"", name,
                         "\": it is in security scopes ", absl::StrJoin(out->scopes(), ", "),
                         ", and ", c.name, " holds ", absl::StrJoin(c.scopes, ", ")));
      }
    }
    google::protobuf::RepeatedPtrField<v1::Collection> one;
    *one.Add() = *out;
    RETURN_IF_ERROR(LoadRules(tx, &one));
    *out = one.Get(0);
    return absl::OkStatus();
  }

  absl::Status CheckScopes(Transaction& tx, const Caller& c, const std::vector<std::string>& s) {
    if (s.size() > static_cast<size_t>(kMaxListItems)) {
      return absl::InvalidArgumentError("scopes: too many");
    }
    for (const auto& scope : s) {
      RETURN_IF_ERROR(CheckName("scopes", scope));
      if (!c.all_scopes && !std::count(c.scopes.begin(), c.scopes.end(), scope)) {
        return absl::PermissionDeniedError(
            absl::StrCat(c.name, " does not hold security scope \"", scope, "\""));
      }
    }
    return MustExist(tx, "security_scopes", "security scope", s);
  }

  static absl::Status MustExist(Transaction& tx, const std::string& table, const std::string& what,
                                const std::vector<std::string>& names) {
    if (names.empty()) return absl::OkStatus();
    ASSIGN_OR_RETURN(Result r, tx.Exec(absl::StrCat("SELECT n FROM unnest($1::text[]) AS n WHERE "
                                                    "NOT EXISTS (SELECT 1 FROM ",
                                                    table, " t WHERE t.name = n)"),
                                       {TextArrayLiteral(names)}));
    if (r.empty()) return absl::OkStatus();
    return absl::NotFoundError(absl::StrCat("no ", what, " \"", r.GetString(0, 0), "\""));
  }

  // Whether collection `name` lies within the caller's collections: it is one
  // of them, or its chain of limiting collections reaches one (holders of
  // All Systems reach everything).
  absl::StatusOr<bool> Contained(Transaction& tx, const Caller& c, const std::string& name) {
    if (std::count(c.collections.begin(), c.collections.end(), "All Systems")) return true;
    std::string cur = name;
    for (int depth = 0; depth < 64 && !cur.empty(); ++depth) {
      if (std::count(c.collections.begin(), c.collections.end(), cur)) return true;
      ASSIGN_OR_RETURN(Result r, tx.Exec("SELECT coalesce(limiting, '') FROM collections WHERE "
                                         "name = $1",
                                         {cur}));
      if (r.empty()) return false;
      cur = r.GetString(0, 0);
    }
    return false;
  }

  // An admin limited to some collections works only inside them: what they
  // create is limited by one of them, what they include or exclude is inside
  // them.
  absl::Status RequireContained(Transaction& tx, const Caller& c, const std::string& name) {
    ASSIGN_OR_RETURN(bool inside, Contained(tx, c, name));
    if (!inside) {
      return absl::PermissionDeniedError(
          absl::StrCat(c.name, " may only use collections within their own (",
                       absl::StrJoin(c.collections, ", "), "); \"", name, "\" is not"));
    }
    return absl::OkStatus();
  }

  // ... and the collections that bound their own view are not theirs to
  // change (else they could widen it).
  absl::Status RequireEditable(Transaction& tx, const Caller& c, const std::string& name) {
    if (!std::count(c.collections.begin(), c.collections.end(), "All Systems") &&
        std::count(c.collections.begin(), c.collections.end(), name)) {
      return absl::PermissionDeniedError(
          absl::StrCat(c.name, " may not change collection \"", name,
                       "\": it is one of the collections that bound what ", c.name, " sees"));
    }
    return RequireContained(tx, c, name);
  }

  // A permission that `roles` grant and `c` lacks ("" if none): nobody hands
  // out more than they hold.
  absl::StatusOr<std::string> Exceeding(Transaction& tx, const Caller& c,
                                        const std::vector<std::string>& roles) {
    if (c.permissions.count("*")) return std::string();
    ASSIGN_OR_RETURN(Result r, tx.Exec("SELECT DISTINCT unnest(permissions) FROM security_roles "
                                       "WHERE name = ANY($1::text[]) ORDER BY 1",
                                       {TextArrayLiteral(roles)}));
    for (size_t i = 0; i < r.size(); ++i) {
      if (!c.permissions.count(r.GetString(i, 0))) return r.GetString(i, 0);
    }
    return std::string();
  }

  // Validates and inserts rules; returns their descriptions for the audit.
  absl::StatusOr<std::vector<std::string>> AddRules(
      Transaction& tx, const Caller& c, const std::string& collection,
      const google::protobuf::RepeatedPtrField<v1::CollectionRule>& rules) {
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
        RETURN_IF_ERROR(where(ReadCollection(tx, c, rule.collection(), &ref)));
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

  // --- devices -------------------------------------------------------------

  // A device the caller may see, by id or name.
  absl::StatusOr<std::string> ResolveDevice(Transaction& tx, const Caller& c,
                                            const std::string& name) {
    if (name.empty() || name.size() > 255 || !inventory::IsCleanText(name)) {
      return absl::InvalidArgumentError("name: a device name or id");
    }
    store::Params params{name};
    std::string visible = VisibleDevice(c, "d", params);
    ASSIGN_OR_RETURN(Result r,
                     tx.Exec(absl::StrCat("SELECT d.id::text, ", visible,
                                          " AS visible FROM devices d WHERE d.id::text = $1 OR "
                                          "d.name = $1 ORDER BY visible DESC, d.id LIMIT 2"),
                             params));
    if (r.empty()) return absl::NotFoundError(absl::StrCat("no device \"", name, "\""));
    // Visible ones first: a name is ambiguous only among what the caller sees.
    if (r.size() > 1 && r.GetBool(1, 1)) {
      return absl::FailedPreconditionError(
          absl::StrCat("more than one device is named \"", name, "\": use its id"));
    }
    if (!r.GetBool(0, 1)) {
      return absl::PermissionDeniedError(absl::StrCat(c.name, " may not see device \"", name,
                                                      "\": it is in none of their collections (",
                                                      absl::StrJoin(c.collections, ", "), ")"));
    }
    return r.GetString(0, 0);
  }

  absl::Status ListDeviceRows(Transaction& tx, const Caller& c, const v1::ListRequest& req,
                              const std::string& only_id, v1::DeviceList* out,
                              const std::string& member_of = "") {
    ASSIGN_OR_RETURN(Page page, ParsePage(req,
                                          {{"name", "d.name"},
                                           {"site", "d.site_code"},
                                           {"last_heartbeat", "d.last_heartbeat_at"},
                                           {"last_inventory", "d.last_inventory_at"},
                                           {"memory_mb", "memory_mb"},
                                           {"software_count", "software_count"}},
                                          "d.name, d.id"));
    store::Params params;
    std::string where = VisibleDevice(c, "d", params);
    if (!only_id.empty()) {
      params.emplace_back(only_id);
      absl::StrAppend(&where, " AND d.id = $", params.size(), "::uuid");
    }
    if (!member_of.empty()) {
      params.emplace_back(member_of);
      absl::StrAppend(&where,
                      " AND EXISTS (SELECT 1 FROM collection_members mo WHERE "
                      "mo.device_id = d.id AND mo.collection = $",
                      params.size(), ")");
    }
    if (!req.filter().empty()) {
      ASSIGN_OR_RETURN(collections::CompiledQuery q,
                       collections::CompileQuery(req.filter(), params.size() + 1));
      for (auto& p : q.params) params.emplace_back(std::move(p));
      absl::StrAppend(&where, " AND (", q.sql, ")");
    }
    std::string sql = absl::StrCat(
        "SELECT d.id::text, d.name, d.site_code, d.active, ", Ts("d.last_heartbeat_at"), ", ",
        Ts("d.last_inventory_at"),
        ", coalesce(o.pretty_name, ''), coalesce(m.total_kb / 1024, 0) AS memory_mb, "
        "(SELECT count(*) FROM device_software s WHERE s.device_id = d.id) AS software_count, "
        "d.ip_addresses::text FROM devices d LEFT JOIN device_os o ON o.device_id = d.id LEFT "
        "JOIN device_memory m ON m.device_id = d.id WHERE ",
        where);
    ASSIGN_OR_RETURN(Result r, tx.Exec(Paged(sql, page), params));
    for (size_t i = 0, n = TrimPage(r, page, out); i < n; ++i) {
      auto* d = out->add_devices();
      d->set_id(r.GetString(i, 0));
      d->set_name(r.GetString(i, 1));
      d->set_site_code(r.GetString(i, 2));
      d->set_active(r.GetBool(i, 3));
      d->set_last_heartbeat_at(r.GetString(i, 4));
      d->set_last_inventory_at(r.GetString(i, 5));
      d->set_os(r.GetString(i, 6));
      d->set_memory_mb(r.GetInt(i, 7));
      d->set_software_count(r.GetInt(i, 8));
      for (const auto& ip : ParseTextArray(r.GetString(i, 9))) d->add_ip_addresses(ip);
    }
    return absl::OkStatus();
  }

  absl::Status DeviceInventory(Transaction& tx, const Caller& c, const std::string& id,
                               v1::DeviceDetail* out) {
    auto* hw = out->mutable_hardware();
    ASSIGN_OR_RETURN(Result os, tx.Exec("SELECT name, version, pretty_name, kernel, architecture, "
                                        "hostname FROM device_os WHERE device_id = $1",
                                        {id}));
    if (!os.empty()) {
      auto* o = hw->mutable_os();
      o->set_name(os.GetString(0, 0));
      o->set_version(os.GetString(0, 1));
      o->set_pretty_name(os.GetString(0, 2));
      o->set_kernel(os.GetString(0, 3));
      o->set_architecture(os.GetString(0, 4));
      o->set_hostname(os.GetString(0, 5));
    }
    ASSIGN_OR_RETURN(
        Result sys,
        tx.Exec("SELECT s.vendor, s.product, s.serial, s.bios_vendor, s.bios_version, "
                "s.bios_date, s.virtualization, s.uptime_s, coalesce(extract(epoch FROM "
                "s.boot_time)::bigint, 0), coalesce(m.total_kb, 0), coalesce(m.swap_kb, 0) FROM "
                "devices d LEFT JOIN device_system s ON s.device_id = d.id LEFT JOIN "
                "device_memory m ON m.device_id = d.id WHERE d.id = $1 AND s.device_id IS NOT "
                "NULL",
                {id}));
    if (!sys.empty()) {
      auto* s = hw->mutable_system();
      s->set_vendor(sys.GetString(0, 0));
      s->set_product(sys.GetString(0, 1));
      s->set_serial(sys.GetString(0, 2));
      s->set_bios_vendor(sys.GetString(0, 3));
      s->set_bios_version(sys.GetString(0, 4));
      s->set_bios_date(sys.GetString(0, 5));
      s->set_virtualization(sys.GetString(0, 6));
      s->set_uptime_s(sys.GetInt(0, 7));
      s->set_boot_time_unix(sys.GetInt(0, 8));
      s->set_memory_total_kb(sys.GetInt(0, 9));
      s->set_swap_total_kb(sys.GetInt(0, 10));
    }
    ASSIGN_OR_RETURN(Result cpu, tx.Exec("SELECT model, sockets, cores, threads FROM "
                                         "device_processor WHERE device_id = $1 ORDER BY idx",
                                         {id}));
    for (size_t i = 0; i < cpu.size(); ++i) {
      auto* p = hw->add_processors();
      p->set_model(cpu.GetString(i, 0));
      p->set_sockets(cpu.GetInt(i, 1));
      p->set_cores(cpu.GetInt(i, 2));
      p->set_threads(cpu.GetInt(i, 3));
    }
    ASSIGN_OR_RETURN(Result disks, tx.Exec("SELECT name, is_filesystem, model, fs_type, "
                                           "size_bytes, free_bytes FROM device_disk WHERE "
                                           "device_id = $1 ORDER BY name",
                                           {id}));
    for (size_t i = 0; i < disks.size(); ++i) {
      auto* d = hw->add_disks();
      d->set_name(disks.GetString(i, 0));
      d->set_is_filesystem(disks.GetBool(i, 1));
      d->set_model(disks.GetString(i, 2));
      d->set_fs_type(disks.GetString(i, 3));
      d->set_size_bytes(disks.GetInt(i, 4));
      d->set_free_bytes(disks.GetInt(i, 5));
    }
    ASSIGN_OR_RETURN(Result nics, tx.Exec("SELECT name, mac, ipv4::text, ipv6::text, speed_mbps "
                                          "FROM device_network WHERE device_id = $1 ORDER BY "
                                          "name",
                                          {id}));
    for (size_t i = 0; i < nics.size(); ++i) {
      auto* a = hw->add_adapters();
      a->set_name(nics.GetString(i, 0));
      a->set_mac(nics.GetString(i, 1));
      for (const auto& ip : ParseTextArray(nics.GetString(i, 2))) a->add_ipv4(ip);
      for (const auto& ip : ParseTextArray(nics.GetString(i, 3))) a->add_ipv6(ip);
      a->set_speed_mbps(nics.GetInt(i, 4));
    }
    ASSIGN_OR_RETURN(Result sw, tx.Exec("SELECT name, version, architecture, source, "
                                        "coalesce(extract(epoch FROM installed_at)::bigint, 0) "
                                        "FROM device_software WHERE device_id = $1 ORDER BY name, "
                                        "architecture",
                                        {id}));
    for (size_t i = 0; i < sw.size(); ++i) {
      auto* s = out->add_software();
      s->set_name(sw.GetString(i, 0));
      s->set_version(sw.GetString(i, 1));
      s->set_architecture(sw.GetString(i, 2));
      s->set_source(sw.GetString(i, 3));
      s->set_install_time_unix(sw.GetInt(i, 4));
    }
    store::Params params{id};
    std::string visible = VisibleCollection(c, "c", params);
    ASSIGN_OR_RETURN(Result colls,
                     tx.Exec(absl::StrCat("SELECT m.collection FROM collection_members m JOIN "
                                          "collections c ON c.name = m.collection WHERE "
                                          "m.device_id = $1 AND ",
                                          visible, " ORDER BY 1"),
                             params));
    for (size_t i = 0; i < colls.size(); ++i) out->add_collections(colls.GetString(i, 0));
    // Resultant client settings, as its management point merges them.
    if (!c.Has("settings.read")) return absl::OkStatus();
    ASSIGN_OR_RETURN(auto assigned, collections::LoadAssignments(tx, {id}));
    const std::vector<std::string>& names = assigned[id];
    v1::SiteBundle settings;
    RETURN_IF_ERROR(collections::LoadClientSettings(tx, &settings));
    for (const auto& n : names) out->add_client_settings(n);
    *out->mutable_resultant_settings() = policy::EffectiveSettings(settings, names);
    return absl::OkStatus();
  }

  // --- client settings -----------------------------------------------------

  // The fields a client setting may set, in the order of the table's columns.
  // ClientSetting and UpdateClientSettingRequest name them alike.
  struct SettingField {
    const char* name;
    int64_t min, max;
  };
  static constexpr int64_t kMaxInterval = 31 * 86400;
  static constexpr SettingField kSettingFields[] = {{"policy_poll_seconds", 1, kMaxInterval},
                                                    {"inventory_seconds", 1, kMaxInterval},
                                                    {"heartbeat_seconds", 1, kMaxInterval},
                                                    {"splay_seconds", 0, 86400}};

  static std::optional<int64_t> FieldValue(const google::protobuf::Message& m,
                                           const SettingField& f) {
    const auto* field = m.GetDescriptor()->FindFieldByName(f.name);
    if (!m.GetReflection()->HasField(m, field)) return std::nullopt;
    return m.GetReflection()->GetInt64(m, field);
  }

  static absl::Status CheckSettingValues(const std::vector<std::optional<int64_t>>& values,
                                         bool builtin) {
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

  static absl::Status CheckDescription(const std::string& d) {
    if (d.size() > kMaxCommentBytes || !inventory::IsCleanText(d)) {
      return absl::InvalidArgumentError(
          absl::StrCat("description: at most ", kMaxCommentBytes, " bytes of text"));
    }
    return absl::OkStatus();
  }

  // Custom settings hold distinct priorities from 1 to 9999 (settings made at
  // two sites at once may still tie: then the name decides, everywhere).
  static absl::Status CheckPriority(Transaction& tx, const std::string& name, int64_t priority) {
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
    const bool all = std::count(c.collections.begin(), c.collections.end(), "All Systems") > 0;
    std::string visible = all ? std::string("true") : VisibleDevice(c, "vd", params);
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

  static void FillSetting(const Result& r, size_t i, v1::ClientSetting* out) {
    out->set_name(r.GetString(i, 0));
    out->set_description(r.GetString(i, 1));
    out->set_priority(static_cast<int32_t>(r.GetInt(i, 2)));
    if (!r.IsNull(i, 3)) out->set_policy_poll_seconds(r.GetInt(i, 3));
    if (!r.IsNull(i, 4)) out->set_inventory_seconds(r.GetInt(i, 4));
    if (!r.IsNull(i, 5)) out->set_heartbeat_seconds(r.GetInt(i, 5));
    if (!r.IsNull(i, 6)) out->set_splay_seconds(r.GetInt(i, 6));
    out->set_approval_mode(r.GetString(i, 7));
    out->set_builtin(r.GetBool(i, 8));
    for (const auto& v : ParseTextArray(r.GetString(i, 9))) out->add_scopes(v);
    out->set_created_by(r.GetString(i, 10));
    out->set_updated_at(r.GetString(i, 11));
    for (const auto& v : ParseTextArray(r.GetString(i, 12))) out->add_deployed_to(v);
    out->set_devices(r.GetInt(i, 13));
  }

  // The setting if it exists and the caller's scopes reach it.
  absl::Status ReadSetting(Transaction& tx, const Caller& c, const std::string& name,
                           v1::ClientSetting* out) {
    store::Params params;
    std::string select = SettingSelect(c, params);
    params.emplace_back(name);
    ASSIGN_OR_RETURN(Result r,
                     tx.Exec(absl::StrCat(select, " WHERE s.name = $", params.size()), params));
    if (r.empty()) return absl::NotFoundError(absl::StrCat("no client setting \"", name, "\""));
    out->Clear();
    FillSetting(r, 0, out);
    if (!c.all_scopes && !out->builtin()) {
      bool visible = false;
      for (const auto& s : out->scopes()) {
        visible = visible || std::count(c.scopes.begin(), c.scopes.end(), s) > 0;
      }
      if (!visible) {
        return absl::PermissionDeniedError(
            absl::StrCat(c.name, " may not see client setting \"", name,
                         "\": it is in security scopes ", absl::StrJoin(out->scopes(), ", "),
                         ", and ", c.name, " holds ", absl::StrJoin(c.scopes, ", ")));
      }
    }
    return absl::OkStatus();
  }

  // Deploys a custom setting to a collection the caller may use, or takes
  // the deployment away.
  grpc::Status Deployment(grpc::ServerContext* ctx, const char* method,
                          const v1::DeployClientSettingRequest& req, bool deploy,
                          v1::ClientSetting* out) {
    return Run(
        ctx, method, "settings.update", [&](Transaction& tx, const Caller& c) -> absl::Status {
          v1::ClientSetting setting;
          RETURN_IF_ERROR(ReadSetting(tx, c, req.name(), &setting));
          if (setting.builtin()) {
            return absl::InvalidArgumentError(
                absl::StrCat("the ", collections::kDefaultClientSettings,
                             " reach every client; only custom settings are deployed"));
          }
          ASSIGN_OR_RETURN(Result exists, tx.Exec("SELECT 1 FROM collections WHERE name = $1",
                                                  {req.collection()}));
          // A deployment whose collection was deleted meanwhile (at another
          // site) can always be taken away.
          if (deploy || !exists.empty()) {
            v1::Collection coll;
            RETURN_IF_ERROR(ReadCollection(tx, c, req.collection(), &coll));
            RETURN_IF_ERROR(RequireContained(tx, c, req.collection()));
          }
          if (deploy) {
            ASSIGN_OR_RETURN(Result count, tx.Exec("SELECT count(*) FROM "
                                                   "client_setting_deployments WHERE setting = $1",
                                                   {req.name()}));
            if (count.GetInt(0, 0) >= kMaxListItems) {
              return absl::InvalidArgumentError(absl::StrCat(
                  "a client setting is deployed to at most ", kMaxListItems, " collections"));
            }
            ASSIGN_OR_RETURN(Result r, tx.Exec("INSERT INTO client_setting_deployments (setting, "
                                               "collection, created_by) VALUES ($1, $2, $3) ON "
                                               "CONFLICT DO NOTHING",
                                               {req.name(), req.collection(), c.name}));
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
              return absl::NotFoundError(absl::StrCat("client setting \"", req.name(),
                                                      "\" is not deployed to \"", req.collection(),
                                                      "\""));
            }
          }
          RETURN_IF_ERROR(
              Audit(tx, c, deploy ? "deploy" : "undeploy", "client setting", req.name(),
                    absl::StrCat(deploy ? "to" : "from", " collection ", req.collection())));
          return ReadSetting(tx, c, req.name(), out);
        });
  }

  // --- links ---------------------------------------------------------------

  // The site server's live link state, or nullopt with `degraded` saying
  // why (no site_address, or it does not answer within 5 s or the caller's
  // deadline).
  std::optional<std::vector<v1::LinkStatus>> LiveLinks(const grpc::ServerContext& server_ctx,
                                                       std::string* degraded) {
    if (!site_stub_) {
      *degraded = "this provider has no site_address: showing the database's view only";
      return std::nullopt;
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(std::min(std::chrono::system_clock::now() + std::chrono::seconds(5),
                              server_ctx.deadline()));
    v1::SiteStatus status;
    grpc::Status s = site_stub_->GetStatus(&ctx, v1::GetStatusRequest(), &status);
    if (!s.ok()) {
      *degraded = absl::StrCat("the site server (", config_.site_address(),
                               ") does not answer: ", s.error_message(),
                               "; links run inside it, so start it or check its log");
      return std::nullopt;
    }
    return std::vector<v1::LinkStatus>(status.links().begin(), status.links().end());
  }

  // The links this database knows of (its parent, its children, peers it
  // exchanged changes with), state unknown.
  absl::StatusOr<std::vector<v1::LinkStatus>> DatabaseLinks(Transaction& tx) {
    ASSIGN_OR_RETURN(Result r,
                     tx.Exec("SELECT peer, bool_or(parent) FROM (SELECT parent AS peer, true AS "
                             "parent FROM sites WHERE code = $1 AND parent IS NOT NULL UNION ALL "
                             "SELECT code, false FROM sites WHERE parent = $1 UNION ALL SELECT "
                             "peer, false FROM repl_inbound UNION ALL SELECT peer, false FROM "
                             "repl_outbound) p GROUP BY peer ORDER BY peer",
                             {site_}));
    std::vector<v1::LinkStatus> out;
    for (size_t i = 0; i < r.size(); ++i) {
      v1::LinkStatus l;
      l.set_peer_site_code(r.GetString(i, 0));
      l.set_role(r.GetBool(i, 1) ? "parent" : "child");
      l.set_state(v1::LINK_STATE_UNSPECIFIED);
      l.set_lag_changes(-1);  // unknown without the site server
      out.push_back(std::move(l));
    }
    return out;
  }

  // --- roles ---------------------------------------------------------------

  static void FillRole(const Result& r, size_t i, v1::Role* out) {
    out->set_name(r.GetString(i, 0));
    out->set_description(r.GetString(i, 1));
    out->set_builtin(r.GetBool(i, 2));
    for (const auto& p : ParseTextArray(r.GetString(i, 3))) out->add_permissions(p);
  }

  static absl::Status ReadRole(Transaction& tx, const std::string& name, v1::Role* out) {
    ASSIGN_OR_RETURN(Result r, tx.Exec("SELECT name, description, builtin, permissions::text FROM "
                                       "security_roles WHERE name = $1",
                                       {name}));
    if (r.empty()) return absl::NotFoundError(absl::StrCat("no role \"", name, "\""));
    FillRole(r, 0, out);
    return absl::OkStatus();
  }

  const v1::ProviderConfig config_;
  store::ConnectionPool pool_;
  std::string site_, site_type_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::SiteLink::Stub> site_stub_;  // for live link state
  std::string bound_address_;
  ShutdownGuard shutdown_;
  absl::Notification stopped_;  // Wait() returns
};

ProviderServer::ProviderServer(v1::ProviderConfig config)
    : impl_(std::make_unique<Impl>(std::move(config))) {}
ProviderServer::~ProviderServer() = default;
absl::Status ProviderServer::Start() { return impl_->Start(); }
absl::Status ProviderServer::Wait() { return impl_->Wait(); }
void ProviderServer::Shutdown() { impl_->Shutdown(); }
const std::string& ProviderServer::bound_address() const { return impl_->bound_address(); }

}  // namespace strata::provider
