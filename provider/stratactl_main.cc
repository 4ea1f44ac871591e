// stratactl: the admin tool. Talks gRPC (mutual TLS) to a provider at the
// CAS or a primary; see docs/admin-guide.md.
//
// Exit codes: 0 ok, 1 refused or failed (the message says why), 2 usage,
// 3 permission denied, 4 not found, 5 server unavailable.

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/base/config.h"
#include "common/base/version.h"
#include "common/net/tls.h"
#include "google/protobuf/util/json_util.h"
#include "strata/v1/admin.grpc.pb.h"

namespace strata::ctl {
namespace {

enum Exit { kOk = 0, kFailed = 1, kUsage = 2, kDenied = 3, kNotFound = 4, kUnavailable = 5 };

struct Options {
  std::string config, server, ca, cert, key, output = "table";
  int timeout_s = 30;
  // Listing
  std::string filter, sort_by, page_token;
  int limit = 0;
  bool all_pages = false;
};

// --- output --------------------------------------------------------------

struct Table {
  std::vector<std::string> headers;
  std::vector<std::vector<std::string>> rows;
};

std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

void PrintTable(const Table& t, const std::string& format) {
  if (format == "csv") {
    std::vector<std::string> h;
    for (const auto& x : t.headers) h.push_back(CsvField(x));
    std::cout << absl::StrJoin(h, ",") << "\n";
    for (const auto& row : t.rows) {
      std::vector<std::string> r;
      for (const auto& x : row) r.push_back(CsvField(x));
      std::cout << absl::StrJoin(r, ",") << "\n";
    }
    return;
  }
  std::vector<size_t> width(t.headers.size());
  for (size_t i = 0; i < t.headers.size(); ++i) width[i] = t.headers[i].size();
  for (const auto& row : t.rows) {
    for (size_t i = 0; i < row.size() && i < width.size(); ++i) {
      width[i] = std::max(width[i], std::min<size_t>(row[i].size(), 60));
    }
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t i = 0; i < cells.size(); ++i) {
      std::string c = cells[i].size() > 60 ? cells[i].substr(0, 57) + "..." : cells[i];
      if (i + 1 < cells.size()) c.resize(std::max(c.size(), width[i]), ' ');
      absl::StrAppend(&out, c, i + 1 < cells.size() ? "  " : "");
    }
    std::cout << out << "\n";
  };
  line(t.headers);
  for (const auto& row : t.rows) line(row);
}

void PrintJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.preserve_proto_field_names = true;
  o.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  std::cout << out;
}

std::string Bool(bool b) { return b ? "yes" : "no"; }

// --- calls ---------------------------------------------------------------

int ExitFor(const grpc::Status& s) {
  switch (s.error_code()) {
    case grpc::StatusCode::OK:
      return kOk;
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
      return kDenied;
    case grpc::StatusCode::NOT_FOUND:
      return kNotFound;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return kUnavailable;
    default:
      return kFailed;
  }
}

const char* CodeName(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::PERMISSION_DENIED:
      return "permission denied";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "not authenticated";
    case grpc::StatusCode::NOT_FOUND:
      return "not found";
    case grpc::StatusCode::UNAVAILABLE:
      return "server unavailable";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "timed out";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "invalid";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "already exists";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "refused";
    default:
      return "error";
  }
}

// Under a query error ("query: character N: ..."), the query and a caret
// under character N. `queries` are the queries sent, in order (a rule's
// error names it "query-K").
void PointAt(const std::string& error, const std::vector<std::string>& queries) {
  const size_t at = error.find("query: character ");
  if (at == std::string::npos || queries.empty()) return;
  int n = std::atoi(error.c_str() + at + 17);
  const std::string* query = queries.size() == 1 ? &queries[0] : nullptr;
  if (size_t r = error.find("rule \"query-"); r != std::string::npos && r < at) {
    int k = std::atoi(error.c_str() + r + 12);
    if (k >= 1 && static_cast<size_t>(k) <= queries.size()) query = &queries[k - 1];
  }
  if (query == nullptr || n < 1 || query->find('\n') != std::string::npos) return;
  std::string caret;
  int chars = 0;
  for (char ch : *query) {
    if (chars >= n - 1) break;
    if ((static_cast<unsigned char>(ch) & 0xC0) != 0x80) {
      caret.push_back(' ');
      ++chars;
    }
  }
  std::cerr << "  " << *query << "\n  " << caret << "^\n";
}

class Client {
 public:
  explicit Client(const Options& o) : o_(o) {}

  int Connect() {
    v1::StratactlConfig conf;
    std::string path = o_.config;
    bool explicit_path = !path.empty();
    if (path.empty() && std::getenv("STRATACTL_CONFIG")) path = std::getenv("STRATACTL_CONFIG");
    if (path.empty() && std::getenv("HOME")) {
      path = absl::StrCat(std::getenv("HOME"), "/.config/strata/stratactl.conf");
    }
    if (!path.empty() && (explicit_path || access(path.c_str(), R_OK) == 0)) {
      absl::Status s = LoadTextProtoFile(path, &conf);
      if (!s.ok()) {
        std::cerr << "stratactl: " << s.message() << "\n";
        return kUsage;
      }
    }
    if (!o_.server.empty()) conf.set_server(o_.server);
    if (!o_.ca.empty()) conf.set_ca_file(o_.ca);
    if (!o_.cert.empty()) conf.set_cert_file(o_.cert);
    if (!o_.key.empty()) conf.set_key_file(o_.key);
    if (conf.server().empty() || conf.ca_file().empty() || conf.cert_file().empty() ||
        conf.key_file().empty()) {
      std::cerr << "stratactl: no provider configured: write ~/.config/strata/stratactl.conf "
                   "(server, ca_file, cert_file, key_file) or pass --server --ca --cert --key\n";
      return kUsage;
    }
    v1::TlsConfig tls;
    tls.set_ca_file(conf.ca_file());
    tls.set_cert_file(conf.cert_file());
    tls.set_key_file(conf.key_file());
    auto channel = MakeChannel(conf.server(), tls);
    if (!channel.ok()) {
      std::cerr << "stratactl: " << channel.status().message() << "\n";
      return kUsage;
    }
    stub_ = v1::AdminService::NewStub(*channel);
    server_ = conf.server();
    return kOk;
  }

  template <typename Req, typename Resp, typename Method>
  int Call(Method method, const Req& req, Resp* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(o_.timeout_s));
    grpc::Status s = (stub_.get()->*method)(&ctx, req, resp);
    last_error_ = s.error_message();
    if (!s.ok()) {
      std::cerr << "stratactl: " << CodeName(s.error_code()) << ": " << s.error_message();
      if (s.error_code() == grpc::StatusCode::UNAVAILABLE)
        std::cerr << " (server " << server_ << ")";
      std::cerr << "\n";
    }
    return ExitFor(s);
  }

  v1::ListRequest List() const {
    v1::ListRequest r;
    r.set_filter(o_.filter);
    r.set_order_by(o_.sort_by);
    r.set_page_token(o_.page_token);
    r.set_page_size(o_.limit);
    return r;
  }

  // Fetches every page (--all) or one, merging into `out`.
  template <typename Resp, typename Method>
  int ListAll(Method method, v1::ListRequest req, Resp* out) {
    while (true) {
      Resp page;
      if (int rc = Call(method, req, &page); rc != kOk) return rc;
      std::string next = page.next_page_token();
      page.clear_next_page_token();
      out->MergeFrom(page);
      out->set_next_page_token(next);
      if (!o_.all_pages || next.empty()) return kOk;
      req.set_page_token(next);
    }
  }

  const Options& options() const { return o_; }
  const std::string& last_error() const { return last_error_; }

 private:
  const Options& o_;
  std::unique_ptr<v1::AdminService::Stub> stub_;
  std::string server_;
  std::string last_error_;
};

void NotePage(const std::string& token, bool quiet) {
  if (!token.empty() && !quiet) {
    std::cerr << "(more: --page-token " << token << ", or --all)\n";
  }
}

// Prints a listing: JSON as is, otherwise through `table`.
template <typename Resp>
void Show(const Options& o, const Resp& resp, const Table& table) {
  if (o.output == "json") {
    PrintJson(resp);
  } else {
    PrintTable(table, o.output);
  }
  NotePage(resp.next_page_token(), o.output != "table");
}

Table DeviceTable(const v1::DeviceList& l) {
  Table t{{"NAME", "SITE", "ACTIVE", "OS", "MEMORY_MB", "SOFTWARE", "LAST_HEARTBEAT", "ID"}, {}};
  for (const auto& d : l.devices()) {
    t.rows.push_back({d.name(), d.site_code(), Bool(d.active()), d.os(),
                      absl::StrCat(d.memory_mb()), absl::StrCat(d.software_count()),
                      d.last_heartbeat_at(), d.id()});
  }
  return t;
}

std::string LinkStateName(v1::LinkState s) {
  switch (s) {
    case v1::LINK_STATE_ACTIVE:
      return "active";
    case v1::LINK_STATE_DEGRADED:
      return "degraded";
    case v1::LINK_STATE_FAILED:
      return "failed";
    default:
      return "unknown";
  }
}

std::string RuleText(const v1::CollectionRule& r) {
  if (r.kind() == "query") return r.query();
  if (r.kind() == "direct") return r.device_id();
  return r.collection();
}

// Seconds as an admin reads them: 90s, 5m, 1h, 7d (exact units only).
std::string Duration(int64_t s) {
  if (s > 0 && s % 86400 == 0) return absl::StrCat(s / 86400, "d");
  if (s > 0 && s % 3600 == 0) return absl::StrCat(s / 3600, "h");
  if (s > 0 && s % 60 == 0) return absl::StrCat(s / 60, "m");
  return absl::StrCat(s, "s");
}

// "300", "300s", "5m", "1h", "7d" -> seconds; -1 if not one of those.
int64_t ParseDuration(const std::string& text) {
  if (text.empty()) return -1;
  int64_t unit = 1;
  std::string digits = text;
  switch (text.back()) {
    case 's':
      digits.pop_back();
      break;
    case 'm':
      unit = 60;
      digits.pop_back();
      break;
    case 'h':
      unit = 3600;
      digits.pop_back();
      break;
    case 'd':
      unit = 86400;
      digits.pop_back();
      break;
    default:
      break;
  }
  int64_t n = 0;
  if (digits.empty() || digits.size() > 9 || !absl::SimpleAtoi(digits, &n) || n < 0) return -1;
  return n * unit;
}

std::string SettingValue(bool has, int64_t v) { return has ? Duration(v) : "-"; }

Table SettingsTable(const google::protobuf::RepeatedPtrField<v1::ClientSetting>& list) {
  Table t{{"NAME", "PRIORITY", "POLICY_POLL", "INVENTORY", "HEARTBEAT", "SPLAY", "APPROVAL",
           "DEPLOYED_TO", "DEVICES"},
          {}};
  for (const auto& x : list) {
    t.rows.push_back({x.name(), absl::StrCat(x.priority()),
                      SettingValue(x.has_policy_poll_seconds(), x.policy_poll_seconds()),
                      SettingValue(x.has_inventory_seconds(), x.inventory_seconds()),
                      SettingValue(x.has_heartbeat_seconds(), x.heartbeat_seconds()),
                      SettingValue(x.has_splay_seconds(), x.splay_seconds()),
                      x.approval_mode().empty() ? "-" : x.approval_mode(),
                      x.builtin() ? "(every client)" : absl::StrJoin(x.deployed_to(), ","),
                      absl::StrCat(x.devices())});
  }
  return t;
}

// --- commands ------------------------------------------------------------

int GetCmd(Client& c, const std::string& noun, const std::string& arg) {
  const Options& o = c.options();
  if (noun == "sites" || noun == "site") {
    v1::SiteList l;
    if (int rc = c.ListAll(&v1::AdminService::Stub::ListSites, c.List(), &l)) return rc;
    Table t{{"CODE", "TYPE", "PARENT", "VERSION", "STATE", "ATTACHED"}, {}};
    for (const auto& s : l.sites()) {
      t.rows.push_back({s.code(), s.type(), s.parent(), s.version(), s.state(), s.attached_at()});
    }
    Show(o, l, t);
  } else if (noun == "devices" || noun == "device") {
    v1::DeviceList l;
    if (int rc = c.ListAll(&v1::AdminService::Stub::ListDevices, c.List(), &l)) {
      PointAt(c.last_error(), {o.filter});
      return rc;
    }
    Show(o, l, DeviceTable(l));
  } else if (noun == "collections" || noun == "collection") {
    v1::CollectionList l;
    if (int rc = c.ListAll(&v1::AdminService::Stub::ListCollections, c.List(), &l)) return rc;
    Table t{{"NAME", "MEMBERS", "LIMITING", "RULES", "SCOPES", "BUILTIN", "EVALUATED", "ERROR"},
            {}};
    for (const auto& x : l.collections()) {
      t.rows.push_back({x.name(), absl::StrCat(x.members()), x.limiting(),
                        absl::StrCat(x.rules_size()), absl::StrJoin(x.scopes(), ","),
                        Bool(x.builtin()), x.evaluated_at(), x.evaluation_error()});
    }
    Show(o, l, t);
  } else if (noun == "members") {
    if (arg.empty()) {
      std::cerr << "stratactl: get members needs a collection name\n";
      return kUsage;
    }
    v1::ListMembersRequest req;
    req.set_name(arg);
    *req.mutable_list() = c.List();
    v1::DeviceList l;
    if (int rc = c.Call(&v1::AdminService::Stub::ListCollectionMembers, req, &l)) return rc;
    Show(o, l, DeviceTable(l));
  } else if (noun == "roles" || noun == "role") {
    v1::RoleList l;
    if (int rc = c.ListAll(&v1::AdminService::Stub::ListRoles, c.List(), &l)) return rc;
    Table t{{"NAME", "BUILTIN", "PERMISSIONS", "DESCRIPTION"}, {}};
    for (const auto& r : l.roles()) {
      t.rows.push_back(
          {r.name(), Bool(r.builtin()), absl::StrCat(r.permissions_size()), r.description()});
    }
    Show(o, l, t);
  } else if (noun == "admins" || noun == "admin" || noun == "administrators") {
    v1::AdministratorList l;
    if (int rc = c.ListAll(&v1::AdminService::Stub::ListAdministrators, c.List(), &l)) return rc;
    Table t{{"NAME", "ROLES", "SCOPES", "COLLECTIONS"}, {}};
    for (const auto& a : l.administrators()) {
      t.rows.push_back({a.name(), absl::StrJoin(a.roles(), ","), absl::StrJoin(a.scopes(), ","),
                        absl::StrJoin(a.collections(), ",")});
    }
    Show(o, l, t);
  } else if (noun == "boundaries" || noun == "boundary") {
    v1::BoundaryList l;
    if (int rc = c.ListAll(&v1::AdminService::Stub::ListBoundaries, c.List(), &l)) return rc;
    Table t{{"NAME", "VALUE", "GROUP"}, {}};
    for (const auto& b : l.boundaries()) t.rows.push_back({b.name(), b.value(), b.group()});
    Show(o, l, t);
  } else if (noun == "boundary-groups" || noun == "boundary-group") {
    v1::BoundaryGroupList l;
    if (int rc = c.ListAll(&v1::AdminService::Stub::ListBoundaryGroups, c.List(), &l)) return rc;
    Table t{{"NAME", "ASSIGNED_SITE"}, {}};
    for (const auto& g : l.groups()) t.rows.push_back({g.name(), g.assigned_site()});
    Show(o, l, t);
  } else if (noun == "links" || noun == "link") {
    v1::LinkList l;
    if (int rc = c.Call(&v1::AdminService::Stub::ListLinks, c.List(), &l)) return rc;
    Table t{{"PEER", "ROLE", "STATE", "CONNECTED", "LAG_CHANGES", "LAG_S", "LAST_CONTACT",
             "LAST_ERROR"},
            {}};
    for (const auto& k : l.links()) {
      t.rows.push_back(
          {k.peer_site_code(), k.role(), LinkStateName(k.state()),
           k.state() == v1::LINK_STATE_UNSPECIFIED ? "?" : Bool(k.connected()),
           k.lag_changes() < 0 ? "?" : absl::StrCat(k.lag_changes()),
           k.lag_changes() < 0 ? "?" : absl::StrCat(static_cast<int64_t>(k.lag_seconds())),
           k.last_contact_unix_ms() == 0
               ? std::string()
               : absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                                  absl::FromUnixMillis(k.last_contact_unix_ms()),
                                  absl::UTCTimeZone()),
           k.last_error()});
    }
    Show(o, l, t);
    if (!l.degraded_reason().empty()) std::cerr << "note: " << l.degraded_reason() << "\n";
  } else if (noun == "client-settings" || noun == "client-setting") {
    v1::ClientSettingList l;
    if (int rc = c.ListAll(&v1::AdminService::Stub::ListClientSettings, c.List(), &l)) return rc;
    Show(o, l, SettingsTable(l.settings()));
  } else if (noun == "audit") {
    v1::AuditList l;
    if (int rc = c.ListAll(&v1::AdminService::Stub::ListAuditLog, c.List(), &l)) return rc;
    Table t{{"AT", "SITE", "ADMIN", "ACTION", "OBJECT", "NAME", "OUTCOME", "SUMMARY"}, {}};
    for (const auto& e : l.entries()) {
      t.rows.push_back({e.at(), e.site_code(), e.admin(), e.action(), e.object_type(),
                        e.object_name(), e.outcome(), e.summary()});
    }
    Show(o, l, t);
  } else {
    std::cerr << "stratactl: unknown resource \"" << noun
              << "\" (sites, links, devices, collections, members, client-settings, roles, "
                 "admins, boundaries, boundary-groups, audit)\n";
    return kUsage;
  }
  return kOk;
}

int DescribeCmd(Client& c, const std::string& noun, const std::string& name) {
  const Options& o = c.options();
  v1::GetRequest req;
  req.set_name(name);
  if (noun == "device") {
    v1::DeviceDetail d;
    if (int rc = c.Call(&v1::AdminService::Stub::GetDevice, req, &d)) return rc;
    if (o.output == "json") {
      PrintJson(d);
      return kOk;
    }
    const auto& hw = d.hardware();
    Table t{{"FIELD", "VALUE"},
            {{"name", d.device().name()},
             {"id", d.device().id()},
             {"site", d.device().site_code()},
             {"active", Bool(d.device().active())},
             {"last heartbeat", d.device().last_heartbeat_at()},
             {"last inventory", d.device().last_inventory_at()},
             {"os", hw.os().pretty_name()},
             {"kernel", hw.os().kernel()},
             {"architecture", hw.os().architecture()},
             {"system", absl::StrCat(hw.system().vendor(), " ", hw.system().product())},
             {"virtualization", hw.system().virtualization()},
             {"memory", absl::StrCat(hw.system().memory_total_kb() / 1024, " MB")},
             {"ip addresses", absl::StrJoin(d.device().ip_addresses(), " ")},
             {"collections", absl::StrJoin(d.collections(), ", ")},
             {"client settings", d.client_settings().empty()
                                     ? std::string("Default Client Settings only")
                                     : absl::StrJoin(d.client_settings(), ", ")},
             {"policy poll", Duration(d.resultant_settings().policy_poll_seconds())},
             {"inventory every", Duration(d.resultant_settings().inventory_seconds())},
             {"heartbeat every", Duration(d.resultant_settings().heartbeat_seconds())},
             {"splay", Duration(d.resultant_settings().splay_seconds())},
             {"software", absl::StrCat(d.software_size(), " packages")}}};
    for (const auto& p : hw.processors()) {
      t.rows.push_back({"processor", absl::StrCat(p.model(), " (", p.cores(), " cores, ",
                                                  p.threads(), " threads)")});
    }
    for (const auto& k : hw.disks()) {
      t.rows.push_back({k.is_filesystem() ? "filesystem" : "disk",
                        absl::StrCat(k.name(), " ", k.fs_type(), " ", k.size_bytes() >> 30, " GB, ",
                                     k.free_bytes() >> 30, " GB free")});
    }
    for (const auto& a : hw.adapters()) {
      t.rows.push_back(
          {"network", absl::StrCat(a.name(), " ", a.mac(), " ", absl::StrJoin(a.ipv4(), " "))});
    }
    PrintTable(t, o.output);
    return kOk;
  }
  if (noun == "collection") {
    v1::Collection x;
    if (int rc = c.Call(&v1::AdminService::Stub::GetCollection, req, &x)) return rc;
    if (o.output == "json") {
      PrintJson(x);
      return kOk;
    }
    Table t{{"FIELD", "VALUE"},
            {{"name", x.name()},
             {"comment", x.comment()},
             {"limiting", x.limiting()},
             {"scopes", absl::StrJoin(x.scopes(), ", ")},
             {"members", absl::StrCat(x.members())},
             {"built in", Bool(x.builtin())},
             {"created by", x.created_by()},
             {"evaluated", x.evaluated_at()},
             {"evaluation error", x.evaluation_error()}}};
    for (const auto& r : x.rules()) {
      t.rows.push_back(
          {absl::StrCat("rule ", r.name()), absl::StrCat(r.kind(), ": ", RuleText(r))});
    }
    PrintTable(t, o.output);
    return kOk;
  }
  if (noun == "role") {
    v1::Role r;
    if (int rc = c.Call(&v1::AdminService::Stub::GetRole, req, &r)) return rc;
    if (o.output == "json") {
      PrintJson(r);
      return kOk;
    }
    Table t{
        {"FIELD", "VALUE"},
        {{"name", r.name()}, {"description", r.description()}, {"built in", Bool(r.builtin())}}};
    for (const auto& p : r.permissions()) t.rows.push_back({"permission", p});
    PrintTable(t, o.output);
    return kOk;
  }
  if (noun == "client-setting") {
    v1::ClientSetting x;
    if (int rc = c.Call(&v1::AdminService::Stub::GetClientSetting, req, &x)) return rc;
    if (o.output == "json") {
      PrintJson(x);
      return kOk;
    }
    Table t{{"FIELD", "VALUE"},
            {{"name", x.name()},
             {"description", x.description()},
             {"priority", absl::StrCat(x.priority())},
             {"policy poll", SettingValue(x.has_policy_poll_seconds(), x.policy_poll_seconds())},
             {"inventory every", SettingValue(x.has_inventory_seconds(), x.inventory_seconds())},
             {"heartbeat every", SettingValue(x.has_heartbeat_seconds(), x.heartbeat_seconds())},
             {"splay", SettingValue(x.has_splay_seconds(), x.splay_seconds())}}};
    if (x.builtin()) t.rows.push_back({"approval mode", x.approval_mode()});
    t.rows.push_back({"scopes", absl::StrJoin(x.scopes(), ", ")});
    t.rows.push_back({"deployed to", x.builtin() ? std::string("(every client)")
                                                 : absl::StrJoin(x.deployed_to(), ", ")});
    t.rows.push_back({"devices", absl::StrCat(x.devices())});
    t.rows.push_back({"built in", Bool(x.builtin())});
    t.rows.push_back({"created by", x.created_by()});
    t.rows.push_back({"updated", x.updated_at()});
    PrintTable(t, o.output);
    return kOk;
  }
  std::cerr << "stratactl: describe takes device, collection, client-setting or role\n";
  return kUsage;
}

struct RuleFlags {
  std::vector<std::string> queries, includes, excludes, devices;
  void AddTo(google::protobuf::RepeatedPtrField<v1::CollectionRule>* rules) const {
    for (const auto& q : queries) {
      auto* r = rules->Add();
      r->set_kind("query");
      r->set_query(q);
    }
    for (const auto& k : includes) {
      auto* r = rules->Add();
      r->set_kind("include");
      r->set_collection(k);
    }
    for (const auto& k : excludes) {
      auto* r = rules->Add();
      r->set_kind("exclude");
      r->set_collection(k);
    }
    for (const auto& d : devices) {
      auto* r = rules->Add();
      r->set_kind("direct");
      r->set_device_id(d);
    }
  }
};

// Client setting flags: durations as 300, 5m, 1h or 7d.
struct SettingFlags {
  std::string poll, inventory, heartbeat, splay, approval;
  int priority = 0;
  std::vector<std::string> clear;
  bool description_set = false;

  // Sets the fields given on `m` (ClientSetting or UpdateClientSettingRequest);
  // false, after saying why, for a value that is not a duration.
  template <typename M>
  bool ApplyTo(M* m) const {
    struct {
      const std::string& text;
      const char* flag;
      void (M::*set)(int64_t);
    } fields[] = {{poll, "--policy-poll", &M::set_policy_poll_seconds},
                  {inventory, "--inventory", &M::set_inventory_seconds},
                  {heartbeat, "--heartbeat", &M::set_heartbeat_seconds},
                  {splay, "--splay", &M::set_splay_seconds}};
    for (const auto& f : fields) {
      if (f.text.empty()) continue;
      const int64_t v = ParseDuration(f.text);
      if (v < 0) {
        std::cerr << "stratactl: " << f.flag << " takes seconds or a duration (300, 5m, 1h, 7d), "
                  << "not \"" << f.text << "\"\n";
        return false;
      }
      (m->*f.set)(v);
    }
    return true;
  }
};

void PrintDone(const Options& o, const std::string& what, const google::protobuf::Message& m) {
  if (o.output == "json") {
    PrintJson(m);
  } else {
    std::cout << what << "\n";
  }
}

const char kCompletion[] = R"(# bash completion for stratactl: source <(stratactl completion bash)
_stratactl() {
  local cur=${COMP_WORDS[COMP_CWORD]} verb=${COMP_WORDS[1]}
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "whoami get describe create update delete deploy undeploy set diagnose report completion --help" -- "$cur"))
  elif [ "$COMP_CWORD" -eq 2 ]; then
    case $verb in
      get) COMPREPLY=($(compgen -W "sites links devices collections members client-settings roles admins boundaries boundary-groups audit" -- "$cur")) ;;
      diagnose) COMPREPLY=($(compgen -W "link" -- "$cur")) ;;
      describe) COMPREPLY=($(compgen -W "device collection client-setting role" -- "$cur")) ;;
      create) COMPREPLY=($(compgen -W "collection client-setting role boundary boundary-group" -- "$cur")) ;;
      update) COMPREPLY=($(compgen -W "collection client-setting" -- "$cur")) ;;
      delete) COMPREPLY=($(compgen -W "collection client-setting role admin boundary boundary-group" -- "$cur")) ;;
      deploy|undeploy) COMPREPLY=($(compgen -W "client-setting" -- "$cur")) ;;
      set) COMPREPLY=($(compgen -W "admin" -- "$cur")) ;;
      report) COMPREPLY=($(compgen -W "list run" -- "$cur")) ;;
      completion) COMPREPLY=($(compgen -W "bash" -- "$cur")) ;;
    esac
  else
    if [ "$verb" = report ] && [ "$COMP_CWORD" -eq 3 ] && [ "${COMP_WORDS[2]}" = run ]; then
      COMPREPLY=($(compgen -W "hardware-summary software-by-title devices-by-os inactive-devices collection-membership replication-health" -- "$cur"))
      return
    fi
    COMPREPLY=($(compgen -W "-o --output --filter --sort-by --limit --all --page-token --param --max-rows --value --group --site --reinitialize --priority --policy-poll --inventory --heartbeat --splay --approval-mode --clear --collection --description --server --ca --cert --key --config" -- "$cur"))
  fi
}
complete -F _stratactl stratactl
)";

int Main(int argc, char** argv) {
  Options o;
  CLI::App app{
      "stratactl: administer a Strata hierarchy through a provider (the CAS or a primary).\n"
      "Connection: ~/.config/strata/stratactl.conf (text-format StratactlConfig: server, "
      "ca_file,\ncert_file, key_file), STRATACTL_CONFIG, or the flags below.\n"
      "Exit codes: 0 ok, 1 refused or failed, 2 usage, 3 permission denied, 4 not found,\n"
      "5 server unavailable.",
      "stratactl"};
  app.set_version_flag("--version", std::string("stratactl ") + kVersion);
  app.require_subcommand(1);
  app.fallthrough();
  app.add_option("--config", o.config, "Config file (default ~/.config/strata/stratactl.conf)");
  app.add_option("--server", o.server, "Provider address, host:port or unix:/path");
  app.add_option("--ca", o.ca, "PEM file of the hierarchy root CA");
  app.add_option("--cert", o.cert, "Your admin certificate (OU=admin)");
  app.add_option("--key", o.key, "Its private key");
  app.add_option("-o,--output", o.output, "Output format")
      ->check(CLI::IsMember({"table", "json", "csv"}))
      ->capture_default_str();
  app.add_option("--timeout", o.timeout_s, "Seconds to wait for the server")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();

  auto list_flags = [&](CLI::App* sub) {
    sub->add_option("--filter", o.filter,
                    "devices: a query (os.name = \"Debian GNU/Linux\" and memory.total_mb >= "
                    "4096); others: a name pattern (*ssl*)");
    sub->add_option("--sort-by", o.sort_by, "A column, optionally followed by \" desc\"");
    sub->add_option("--limit", o.limit, "Rows per page (default 100, at most 1000)")
        ->check(CLI::Range(1, 1000));
    sub->add_option("--page-token", o.page_token, "Continue a listing where it stopped");
    sub->add_flag("--all", o.all_pages, "Fetch every page");
  };

  std::string noun, name;
  auto* whoami = app.add_subcommand("whoami", "Your roles, permissions, scopes and collections");
  auto* get = app.add_subcommand(
      "get",
      "List resources: sites, links, devices, collections, members COLLECTION, client-settings,\n"
      "roles, admins, boundaries, boundary-groups, audit");
  get->add_option("resource", noun, "What to list")->required();
  get->add_option("name", name, "For members: the collection");
  list_flags(get);
  auto* describe =
      app.add_subcommand("describe", "Show one device, collection, client setting or role in full");
  describe->add_option("resource", noun, "device, collection, client-setting or role")->required();
  describe->add_option("name", name, "Its name (a device: name or id)")->required();

  RuleFlags rules;
  std::string comment, limiting, from, description;
  std::vector<std::string> scopes, remove_rules, add_perms, remove_perms, roles, colls;
  bool comment_set = false;
  auto rule_flags = [&](CLI::App* sub, const std::string& prefix) {
    sub->add_option(absl::StrCat("--", prefix, "query"), rules.queries,
                    "Query rule (repeatable), e.g. 'software.name = \"openssl\"'");
    sub->add_option(absl::StrCat("--", prefix, "include"), rules.includes,
                    "Include the members of a collection (repeatable)");
    sub->add_option(absl::StrCat("--", prefix, "exclude"), rules.excludes,
                    "Exclude the members of a collection (repeatable)");
    sub->add_option(absl::StrCat("--", prefix, "device"), rules.devices,
                    "A direct member, by device id (repeatable)");
  };
  std::string value, group, site;
  SettingFlags sf;
  auto setting_flags = [&](CLI::App* sub) {
    sub->add_option("--priority", sf.priority,
                    "client-setting: 1 (highest) to 9999 (create: after the others)")
        ->check(CLI::Range(1, 9999));
    sub->add_option("--policy-poll", sf.poll,
                    "client-setting: policy polling interval (300, 5m, 1h, 7d)");
    sub->add_option("--inventory", sf.inventory, "client-setting: inventory interval");
    sub->add_option("--heartbeat", sf.heartbeat, "client-setting: heartbeat interval");
    sub->add_option("--splay", sf.splay, "client-setting: random delay before scheduled work");
  };
  auto* create = app.add_subcommand(
      "create",
      "Create a collection, a custom client setting, a custom role, a boundary or a boundary "
      "group");
  create
      ->add_option("resource", noun, "collection, client-setting, role, boundary or boundary-group")
      ->required();
  create->add_option("name", name, "Its name")->required();
  create->add_option("--limiting", limiting, "collection: the limiting collection (All Systems)");
  create->add_option("--comment", comment, "collection: a comment");
  create->add_option("--scope", scopes,
                     "collection, client-setting: security scope (repeatable; Default)");
  rule_flags(create, "");
  create->add_option("--from", from, "role: the role to copy");
  create->add_option("--add", add_perms, "role: a permission to add (repeatable)");
  create->add_option("--remove", remove_perms, "role: a permission to remove (repeatable)");
  create->add_option("--description", description, "role, client-setting: a description");
  setting_flags(create);
  create->add_option("--value", value,
                     "boundary: a subnet (10.1.0.0/16) or a range (10.1.0.10-10.1.0.200)");
  create->add_option("--group", group, "boundary: its boundary group");
  create->add_option("--site", site, "boundary-group: the site it assigns clients to");
  auto* update = app.add_subcommand(
      "update", "Change a collection's rules or comment, or a client setting's values");
  update->add_option("resource", noun, "collection or client-setting")->required();
  update->add_option("name", name, "Its name")->required();
  update->add_option("--comment", comment, "A new comment")->each([&](const std::string&) {
    comment_set = true;
  });
  rule_flags(update, "add-");
  update->add_option("--remove-rule", remove_rules, "A rule to remove, by name (repeatable)");
  setting_flags(update);
  update
      ->add_option("--approval-mode", sf.approval,
                   "Default Client Settings: token, manual or auto (registration)")
      ->check(CLI::IsMember({"token", "manual", "auto"}));
  update
      ->add_option("--clear", sf.clear,
                   "client-setting: leave a field to others again (policy-poll, inventory, "
                   "heartbeat, splay; repeatable)")
      ->check(CLI::IsMember({"policy-poll", "inventory", "heartbeat", "splay"}));
  update->add_option("--description", description, "client-setting: a new description")
      ->each([&](const std::string&) { sf.description_set = true; });
  auto* del = app.add_subcommand("delete",
                                 "Delete a collection, custom client setting, custom role, "
                                 "administrator, boundary or boundary group");
  del->add_option("resource", noun,
                  "collection, client-setting, role, admin, boundary or boundary-group")
      ->required();
  del->add_option("name", name, "Its name")->required();
  std::string target;
  auto* deploy = app.add_subcommand(
      "deploy",
      "Deploy a custom client setting to a collection: deploy client-setting NAME "
      "--collection COLLECTION");
  auto* undeploy = app.add_subcommand(
      "undeploy", "Take a custom client setting's deployment away from a collection");
  for (auto* sub : {deploy, undeploy}) {
    sub->add_option("resource", noun, "client-setting")
        ->required()
        ->check(CLI::IsMember({"client-setting"}));
    sub->add_option("name", name, "The custom client setting")->required();
    sub->add_option("--collection", target, "The collection")->required();
  }
  auto* set = app.add_subcommand("set", "Create or change an administrator");
  set->add_option("resource", noun, "admin")->required();
  set->add_option("name", name, "The certificate CN of the administrator")->required();
  set->add_option("--role", roles, "A security role (repeatable, at least one)")->required();
  set->add_option("--scope", scopes, "A security scope (repeatable; default All)");
  set->add_option("--collection", colls,
                  "A collection whose devices they see (default All Systems)");
  auto* diagnose = app.add_subcommand(
      "diagnose", "What is wrong with a replication link: diagnose link PEER [--reinitialize]");
  bool reinitialize = false;
  diagnose->add_option("resource", noun, "link")->required()->check(CLI::IsMember({"link"}));
  diagnose->add_option("name", name, "The peer site's code")->required();
  diagnose->add_flag("--reinitialize", reinitialize,
                     "Also re-initialize this site's copy of the peer's data from a snapshot");
  auto* report = app.add_subcommand("report", "Built-in reports: report list, report run NAME");
  std::string report_action;
  std::vector<std::string> report_params;
  int max_rows = 0;
  report->add_option("action", report_action, "list or run")
      ->required()
      ->check(CLI::IsMember({"list", "run"}));
  report->add_option("name", name, "run: the report (see report list)");
  report->add_option("--param", report_params, "run: a parameter NAME=VALUE (repeatable)");
  report->add_option("--max-rows", max_rows, "run: at most this many rows (default 10000)")
      ->check(CLI::Range(1, 100000));
  auto* completion = app.add_subcommand("completion", "Print a shell completion script");
  std::string shell;
  completion->add_option("shell", shell, "bash")->required()->check(CLI::IsMember({"bash"}));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kOk : kUsage;
  }
  if (completion->parsed()) {
    std::cout << kCompletion;
    return kOk;
  }

  Client c(o);
  if (int rc = c.Connect(); rc != kOk) return rc;

  if (whoami->parsed()) {
    v1::Administrator a;
    if (int rc = c.Call(&v1::AdminService::Stub::WhoAmI, v1::WhoAmIRequest(), &a)) return rc;
    if (o.output == "json") {
      PrintJson(a);
    } else {
      PrintTable({{"FIELD", "VALUE"},
                  {{"name", a.name()},
                   {"roles", absl::StrJoin(a.roles(), ", ")},
                   {"scopes", absl::StrJoin(a.scopes(), ", ")},
                   {"collections", absl::StrJoin(a.collections(), ", ")},
                   {"permissions", absl::StrJoin(a.permissions(), " ")}}},
                 o.output);
    }
    return kOk;
  }
  if (get->parsed()) return GetCmd(c, noun, name);
  if (diagnose->parsed()) {
    v1::DiagnoseLinkRequest req;
    req.set_peer(name);
    req.set_reinitialize(reinitialize);
    v1::LinkDiagnosis d;
    if (int rc = c.Call(&v1::AdminService::Stub::DiagnoseLink, req, &d)) return rc;
    if (o.output == "json") {
      PrintJson(d);
      return kOk;
    }
    Table t{{"SEVERITY", "FINDING"}, {}};
    for (const auto& f : d.findings()) t.rows.push_back({f.severity(), f.text()});
    if (o.output == "table") {
      std::cout << "link " << d.link().peer_site_code() << " (" << d.link().role()
                << "): " << LinkStateName(d.link().state()) << "\n";
      for (const auto& f : d.findings())
        std::cout << "  " << f.severity() << ": " << f.text() << "\n";
    } else {
      PrintTable(t, o.output);
    }
    return kOk;
  }
  if (report->parsed()) {
    if (report_action == "list") {
      v1::ReportList l;
      if (int rc = c.Call(&v1::AdminService::Stub::ListReports, v1::ListRequest(), &l)) return rc;
      Table t{{"NAME", "PARAMETERS", "DESCRIPTION"}, {}};
      for (const auto& r : l.reports()) {
        t.rows.push_back({r.name(), absl::StrJoin(r.parameters(), ","), r.description()});
      }
      Show(o, l, t);
      return kOk;
    }
    if (name.empty()) {
      std::cerr << "stratactl: report run needs a report name (see: stratactl report list)\n";
      return kUsage;
    }
    v1::RunReportRequest req;
    req.set_name(name);
    req.set_max_rows(max_rows);
    for (const auto& p : report_params) {
      size_t eq = p.find('=');
      if (eq == std::string::npos || eq == 0) {
        std::cerr << "stratactl: --param takes NAME=VALUE, not \"" << p << "\"\n";
        return kUsage;
      }
      (*req.mutable_parameters())[p.substr(0, eq)] = p.substr(eq + 1);
    }
    v1::ReportResult res;
    if (int rc = c.Call(&v1::AdminService::Stub::RunReport, req, &res)) return rc;
    if (o.output == "json") {
      PrintJson(res);
    } else {
      Table t{{res.columns().begin(), res.columns().end()}, {}};
      if (o.output == "table") {
        for (auto& h : t.headers) h = absl::AsciiStrToUpper(h);
      }
      for (const auto& row : res.rows())
        t.rows.push_back({row.values().begin(), row.values().end()});
      PrintTable(t, o.output);
    }
    if (res.truncated()) {
      std::cerr << "(truncated at " << res.rows_size() << " rows; --max-rows raises it)\n";
    }
    return kOk;
  }
  if (describe->parsed()) return DescribeCmd(c, noun, name);
  if (create->parsed()) {
    if (noun == "collection") {
      v1::Collection req;
      req.set_name(name);
      req.set_comment(comment);
      req.set_limiting(limiting);
      for (const auto& s : scopes) req.add_scopes(s);
      rules.AddTo(req.mutable_rules());
      v1::Collection out;
      if (int rc = c.Call(&v1::AdminService::Stub::CreateCollection, req, &out)) {
        PointAt(c.last_error(), rules.queries);
        return rc;
      }
      PrintDone(o,
                absl::StrCat("collection \"", out.name(), "\" created (", out.rules_size(),
                             " rules; members appear as the primaries evaluate it)"),
                out);
      return kOk;
    }
    if (noun == "client-setting") {
      v1::ClientSetting req;
      req.set_name(name);
      req.set_description(description);
      req.set_priority(sf.priority);
      for (const auto& s : scopes) req.add_scopes(s);
      if (!sf.ApplyTo(&req)) return kUsage;
      v1::ClientSetting out;
      if (int rc = c.Call(&v1::AdminService::Stub::CreateClientSetting, req, &out)) return rc;
      PrintDone(o,
                absl::StrCat("client setting \"", out.name(), "\" created (priority ",
                             out.priority(), "; deploy it to a collection to use it)"),
                out);
      return kOk;
    }
    if (noun == "role") {
      if (from.empty()) {
        std::cerr << "stratactl: create role needs --from ROLE (custom roles are copies)\n";
        return kUsage;
      }
      v1::CopyRoleRequest req;
      req.set_source(from);
      req.set_name(name);
      req.set_description(description);
      for (const auto& p : add_perms) req.add_add_permissions(p);
      for (const auto& p : remove_perms) req.add_remove_permissions(p);
      v1::Role out;
      if (int rc = c.Call(&v1::AdminService::Stub::CopyRole, req, &out)) return rc;
      PrintDone(o,
                absl::StrCat("role \"", out.name(), "\" created (", out.permissions_size(),
                             " permissions)"),
                out);
      return kOk;
    }
    if (noun == "boundary") {
      v1::Boundary req;
      req.set_name(name);
      req.set_value(value);
      req.set_group(group);
      v1::Boundary out;
      if (int rc = c.Call(&v1::AdminService::Stub::CreateBoundary, req, &out)) return rc;
      PrintDone(
          o,
          absl::StrCat("boundary \"", out.name(), "\" created: ", out.value(), " -> ", out.group()),
          out);
      return kOk;
    }
    if (noun == "boundary-group") {
      v1::BoundaryGroup req;
      req.set_name(name);
      req.set_assigned_site(site);
      v1::BoundaryGroup out;
      if (int rc = c.Call(&v1::AdminService::Stub::CreateBoundaryGroup, req, &out)) return rc;
      PrintDone(o,
                absl::StrCat("boundary group \"", out.name(), "\" created: clients go to ",
                             out.assigned_site()),
                out);
      return kOk;
    }
    std::cerr
        << "stratactl: create takes collection, client-setting, role, boundary or boundary-group\n";
    return kUsage;
  }
  if (update->parsed()) {
    if (noun == "client-setting") {
      v1::UpdateClientSettingRequest req;
      req.set_name(name);
      if (sf.description_set) req.set_description(description);
      if (sf.priority > 0) req.set_priority(sf.priority);
      if (!sf.approval.empty()) req.set_approval_mode(sf.approval);
      if (!sf.ApplyTo(&req)) return kUsage;
      for (const auto& f : sf.clear) {
        req.add_clear(f == "policy-poll" ? "policy_poll_seconds" : f + "_seconds");
      }
      v1::ClientSetting out;
      if (int rc = c.Call(&v1::AdminService::Stub::UpdateClientSetting, req, &out)) return rc;
      PrintDone(o, absl::StrCat("client setting \"", out.name(), "\" updated"), out);
      return kOk;
    }
    if (noun != "collection") {
      std::cerr << "stratactl: update takes collection or client-setting\n";
      return kUsage;
    }
    v1::UpdateCollectionRequest req;
    req.set_name(name);
    if (comment_set) req.set_comment(comment);
    rules.AddTo(req.mutable_add_rules());
    for (const auto& r : remove_rules) req.add_remove_rules(r);
    v1::Collection out;
    if (int rc = c.Call(&v1::AdminService::Stub::UpdateCollection, req, &out)) {
      // Added rules are named after the ones the collection has: no index to map.
      if (rules.queries.size() == 1) PointAt(c.last_error(), rules.queries);
      return rc;
    }
    PrintDone(
        o, absl::StrCat("collection \"", out.name(), "\" updated (", out.rules_size(), " rules)"),
        out);
    return kOk;
  }
  if (del->parsed()) {
    v1::GetRequest req;
    req.set_name(name);
    v1::Deleted out;
    int rc;
    if (noun == "collection") {
      rc = c.Call(&v1::AdminService::Stub::DeleteCollection, req, &out);
    } else if (noun == "client-setting") {
      rc = c.Call(&v1::AdminService::Stub::DeleteClientSetting, req, &out);
    } else if (noun == "role") {
      rc = c.Call(&v1::AdminService::Stub::DeleteRole, req, &out);
    } else if (noun == "admin") {
      rc = c.Call(&v1::AdminService::Stub::DeleteAdministrator, req, &out);
    } else if (noun == "boundary") {
      rc = c.Call(&v1::AdminService::Stub::DeleteBoundary, req, &out);
    } else if (noun == "boundary-group") {
      rc = c.Call(&v1::AdminService::Stub::DeleteBoundaryGroup, req, &out);
    } else {
      std::cerr << "stratactl: delete takes collection, client-setting, role, admin, boundary or "
                   "boundary-group\n";
      return kUsage;
    }
    if (rc != kOk) return rc;
    PrintDone(o, absl::StrCat(noun, " \"", out.name(), "\" deleted"), out);
    return kOk;
  }
  if (deploy->parsed() || undeploy->parsed()) {
    v1::DeployClientSettingRequest req;
    req.set_name(name);
    req.set_collection(target);
    v1::ClientSetting out;
    const bool on = deploy->parsed();
    if (int rc = c.Call(on ? &v1::AdminService::Stub::DeployClientSetting
                           : &v1::AdminService::Stub::UndeployClientSetting,
                        req, &out)) {
      return rc;
    }
    PrintDone(o,
              absl::StrCat("client setting \"", out.name(), "\" ",
                           on ? "deployed to \"" : "no longer deployed to \"", target,
                           "\"; management points tell the agents concerned"),
              out);
    return kOk;
  }
  if (set->parsed()) {
    if (noun != "admin") {
      std::cerr << "stratactl: set takes admin\n";
      return kUsage;
    }
    v1::Administrator req;
    req.set_name(name);
    for (const auto& r : roles) req.add_roles(r);
    for (const auto& s : scopes) req.add_scopes(s);
    for (const auto& k : colls) req.add_collections(k);
    v1::Administrator out;
    if (int rc = c.Call(&v1::AdminService::Stub::SetAdministrator, req, &out)) return rc;
    PrintDone(o,
              absl::StrCat("administrator \"", out.name(), "\": roles ",
                           absl::StrJoin(out.roles(), ", ")),
              out);
    return kOk;
  }
  return kUsage;
}

}  // namespace
}  // namespace strata::ctl

int main(int argc, char** argv) { return strata::ctl::Main(argc, argv); }
