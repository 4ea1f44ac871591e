#include "common/site/client_ingest.h"

#include <map>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/json.h"
#include "common/base/status.h"
#include "common/deploy/application.h"
#include "common/deploy/script.h"

namespace strata::site {
namespace {

using store::TextArrayLiteral;

// Columns of a multi-row statement: each travels as one array parameter.
// `type` is the element type of the array; `expr` turns u.<name> into the
// column's value (default: as is).
struct Col {
  Col(const char* name, const char* type = "text", const char* expr = "", bool key = false)
      : name(name), type(type), expr(expr), key(key) {}
  std::string name;
  std::string type;
  std::string expr;
  bool key;
};

class RowSet {
 public:
  explicit RowSet(std::vector<Col> cols) : cols_(std::move(cols)), values_(cols_.size()) {}
  void Add(std::vector<std::string> row) {
    for (size_t i = 0; i < cols_.size(); ++i) values_[i].push_back(std::move(row[i]));
  }
  size_t size() const { return values_.empty() ? 0 : values_[0].size(); }
  bool empty() const { return size() == 0; }

  // unnest($first::t[], ...) AS u(c1, ...), with the params appended.
  std::string Unnest(store::Params& params) const {
    std::vector<std::string> args, names;
    for (size_t i = 0; i < cols_.size(); ++i) {
      params.emplace_back(TextArrayLiteral(values_[i]));
      args.push_back(absl::StrCat("$", params.size(), "::", cols_[i].type, "[]"));
      names.push_back(cols_[i].name);
    }
    return absl::StrCat("unnest(", absl::StrJoin(args, ", "), ") AS u(", absl::StrJoin(names, ", "),
                        ")");
  }
  std::string Select() const {
    std::vector<std::string> out;
    for (const auto& c : cols_) out.push_back(c.expr.empty() ? "u." + c.name : c.expr);
    return absl::StrJoin(out, ", ");
  }
  std::string Names(bool keys, bool values, const std::string& prefix = "") const {
    std::vector<std::string> out;
    for (const auto& c : cols_) {
      if ((c.key && keys) || (!c.key && values)) out.push_back(prefix + c.name);
    }
    return absl::StrJoin(out, ", ");
  }

  // Inserts or updates the rows; rows that are already equal are not touched.
  absl::Status Upsert(store::Transaction& tx, const std::string& table) const {
    if (empty()) return absl::OkStatus();
    store::Params params;
    std::string unnest = Unnest(params);
    std::vector<std::string> sets;
    for (const auto& c : cols_) {
      if (!c.key) sets.push_back(absl::StrCat(c.name, " = EXCLUDED.", c.name));
    }
    std::string sql =
        absl::StrCat("INSERT INTO ", table, " (", Names(true, true), ") SELECT ", Select(),
                     " FROM ", unnest, " ON CONFLICT (", Names(true, false), ") DO UPDATE SET ",
                     absl::StrJoin(sets, ", "), " WHERE (", Names(false, true, table + "."),
                     ") IS DISTINCT FROM (", Names(false, true, "EXCLUDED."), ")");
    return tx.Exec(sql, params).status();
  }

  // Deletes the rows of `devices` in `table` whose keys are not in this set.
  absl::Status DeleteOthers(store::Transaction& tx, const std::string& table,
                            const std::vector<std::string>& devices) const {
    if (devices.empty()) return absl::OkStatus();
    store::Params params{TextArrayLiteral(devices)};
    std::string keys = Names(true, false);
    std::string sql;
    if (empty()) {
      sql = absl::StrCat("DELETE FROM ", table, " WHERE device_id = ANY($1::uuid[])");
    } else {
      std::string unnest = Unnest(params);
      sql = absl::StrCat("DELETE FROM ", table, " WHERE device_id = ANY($1::uuid[]) AND (", keys,
                         ") NOT IN (SELECT ", keys, " FROM ", unnest, ")");
    }
    return tx.Exec(sql, params).status();
  }

  // Deletes exactly the rows whose keys are in this set (key columns only).
  absl::Status DeleteListed(store::Transaction& tx, const std::string& table) const {
    if (empty()) return absl::OkStatus();
    store::Params params;
    std::string unnest = Unnest(params);
    std::vector<std::string> match;
    for (const auto& c : cols_) match.push_back(absl::StrCat("t.", c.name, " = u.", c.name));
    return tx
        .Exec(absl::StrCat("DELETE FROM ", table, " t USING ", unnest, " WHERE ",
                           absl::StrJoin(match, " AND ")),
              params)
        .status();
  }

 private:
  std::vector<Col> cols_;
  std::vector<std::vector<std::string>> values_;
};

std::string Str(int64_t v) { return absl::StrCat(v); }

RowSet SoftwareRows() {
  return RowSet({{"device_id", "uuid", "", true},
                 {"name", "text", "", true},
                 {"architecture", "text", "", true},
                 {"version"},
                 {"source"},
                 {"installed_at", "bigint", "to_timestamp(nullif(u.installed_at, 0))"}});
}

void AddSoftware(RowSet& rows, const std::string& id, const v1::SoftwareItem& s) {
  rows.Add({id, s.name(), s.architecture(), s.version(), s.source(), Str(s.install_time_unix())});
}

// Hardware classes of the reports in one round.
struct HardwareRows {
  std::vector<std::string> devices;
  RowSet os{{{"device_id", "uuid", "", true},
             {"name"},
             {"version"},
             {"pretty_name"},
             {"kernel"},
             {"architecture"},
             {"hostname"},
             {"os_id"}}};
  RowSet system{{{"device_id", "uuid", "", true},
                 {"vendor"},
                 {"product"},
                 {"serial"},
                 {"bios_vendor"},
                 {"bios_version"},
                 {"bios_date"},
                 {"virtualization"},
                 {"uptime_s", "bigint"},
                 {"boot_time", "bigint", "to_timestamp(nullif(u.boot_time, 0))"}}};
  RowSet memory{{{"device_id", "uuid", "", true}, {"total_kb", "bigint"}, {"swap_kb", "bigint"}}};
  RowSet processors{{{"device_id", "uuid", "", true},
                     {"idx", "integer", "", true},
                     {"model"},
                     {"sockets", "integer"},
                     {"cores", "integer"},
                     {"threads", "integer"}}};
  RowSet disks{{{"device_id", "uuid", "", true},
                {"name", "text", "", true},
                {"is_filesystem", "boolean"},
                {"model"},
                {"fs_type"},
                {"size_bytes", "bigint"},
                {"free_bytes", "bigint"}}};
  RowSet adapters{{{"device_id", "uuid", "", true},
                   {"name", "text", "", true},
                   {"mac"},
                   {"ipv4", "text", "string_to_array(u.ipv4, ' ')"},
                   {"ipv6", "text", "string_to_array(u.ipv6, ' ')"},
                   {"speed_mbps", "bigint"}}};

  void Add(const std::string& id, const v1::HardwareInventory& hw) {
    devices.push_back(id);
    const auto& o = hw.os();
    os.Add({id, o.name(), o.version(), o.pretty_name(), o.kernel(), o.architecture(), o.hostname(),
            o.id()});
    const auto& s = hw.system();
    // Uptime changes with every report; it is kept, but it alone does not
    // make a delta carry hardware (see the agent).
    system.Add({id, s.vendor(), s.product(), s.serial(), s.bios_vendor(), s.bios_version(),
                s.bios_date(), s.virtualization(), Str(s.uptime_s()), Str(s.boot_time_unix())});
    memory.Add({id, Str(s.memory_total_kb()), Str(s.swap_total_kb())});
    for (int i = 0; i < hw.processors_size(); ++i) {
      const auto& p = hw.processors(i);
      processors.Add({id, Str(i), p.model(), Str(p.sockets()), Str(p.cores()), Str(p.threads())});
    }
    for (const auto& d : hw.disks()) {
      disks.Add({id, d.name(), d.is_filesystem() ? "t" : "f", d.model(), d.fs_type(),
                 Str(d.size_bytes()), Str(d.free_bytes())});
    }
    for (const auto& a : hw.adapters()) {
      adapters.Add({id, a.name(), a.mac(), absl::StrJoin(a.ipv4(), " "),
                    absl::StrJoin(a.ipv6(), " "), Str(a.speed_mbps())});
    }
  }

  absl::Status Write(store::Transaction& tx) const {
    RETURN_IF_ERROR(os.Upsert(tx, "device_os"));
    RETURN_IF_ERROR(system.Upsert(tx, "device_system"));
    RETURN_IF_ERROR(memory.Upsert(tx, "device_memory"));
    for (auto [rows, table] : {std::pair{&processors, "device_processor"},
                               {&disks, "device_disk"},
                               {&adapters, "device_network"}}) {
      RETURN_IF_ERROR(rows->DeleteOthers(tx, table, devices));
      RETURN_IF_ERROR(rows->Upsert(tx, table));
    }
    return absl::OkStatus();
  }
};

struct DeviceState {
  int64_t last_report_seq = 0;
  int64_t inventory_seq = 0;
  bool needs_full = false;
  bool changed = false;
  int round = 0;  // inventory reports applied so far in this batch
  int64_t heartbeat_ms = 0;
  int64_t inventory_ms = 0;
  std::string hostname;
  std::vector<std::string> ips;
  bool has_ips = false;
};

// Of `rows` (by device and name), those whose name is assigned to the
// device in `table` (by `column`).
using Keyed = std::map<std::pair<std::string, std::string>, std::vector<std::string>>;
absl::StatusOr<std::set<std::pair<std::string, std::string>>> AssignedKeys(store::Transaction& tx,
                                                                           const Keyed& rows,
                                                                           const char* table,
                                                                           const char* column) {
  std::set<std::pair<std::string, std::string>> out;
  if (rows.empty()) return out;
  std::vector<std::string> ids, names;
  for (const auto& [key, row] : rows) {
    ids.push_back(key.first);
    names.push_back(key.second);
  }
  ASSIGN_OR_RETURN(
      store::Result known,
      tx.Exec(absl::StrCat("SELECT u.d::text, u.n FROM unnest($1::uuid[], $2::text[]) AS u(d, n) "
                           "WHERE EXISTS (SELECT 1 FROM ",
                           table, " a WHERE a.device_id = u.d AND a.", column, "::text = u.n)"),
              {TextArrayLiteral(ids), TextArrayLiteral(names)}));
  for (size_t i = 0; i < known.size(); ++i)
    out.insert({known.GetString(i, 0), known.GetString(i, 1)});
  return out;
}

std::string LiveStateName(v1::LiveQueryStateKind k) {
  switch (k) {
    case v1::LIVE_QUERY_STATE_ANSWERED:
      return "answered";
    case v1::LIVE_QUERY_STATE_TOO_COSTLY:
      return "too_costly";
    default:
      return "failed";
  }
}

// Live query answers of devices the query reached, each query's rows at
// this site kept to kMaxLiveQueryRows (an answer past it keeps its state,
// not its rows, and says so).
absl::Status WriteLiveAnswers(store::Transaction& tx, Keyed& answers) {
  // Keyed by (device, query); the rows' columns: query, device_id, ...
  ASSIGN_OR_RETURN(auto assigned, AssignedKeys(tx, answers, "live_query_assignments", "query"));
  std::map<std::string, int64_t> stored;
  std::vector<std::string> queries;
  for (const auto& [key, row] : answers) queries.push_back(key.second);
  if (!queries.empty()) {
    ASSIGN_OR_RETURN(store::Result r,
                     tx.Exec("SELECT query::text, sum(row_count) FROM live_query_results WHERE "
                             "query = ANY($1::uuid[]) GROUP BY 1",
                             {TextArrayLiteral(queries)}));
    for (size_t i = 0; i < r.size(); ++i) stored[r.GetString(i, 0)] = r.GetInt(i, 1);
  }
  RowSet live(
      {{"query", "uuid", "", true},
       {"device_id", "uuid", "", true},
       {"site_code", "text", "(SELECT x.site_code FROM devices x WHERE x.id = u.device_id)"},
       {"state"},
       {"rows", "text", "u.rows::jsonb"},
       {"row_count", "integer"},
       {"truncated", "boolean"},
       {"detail"},
       {"elapsed_ms", "bigint"},
       {"reported_at", "bigint", "to_timestamp(u.reported_at / 1000.0)"}});
  for (auto& [key, row] : answers) {
    if (!assigned.count(key)) continue;
    int64_t n = 0;
    absl::SimpleAtoi(row[5], &n);
    int64_t& total = stored[key.second];
    if (total + n > kMaxLiveQueryRows) {
      row[4] = "[]";
      row[5] = "0";
      row[6] = "t";
      row[7] = absl::StrCat("rows not kept: the query reached its ", kMaxLiveQueryRows,
                            " rows at this site");
    } else {
      total += n;
    }
    live.Add(std::move(row));
  }
  return live.Upsert(tx, "live_query_results");
}

}  // namespace

absl::StatusOr<IngestResult> IngestReports(store::Transaction& tx,
                                           const std::vector<const v1::ClientReport*>& reports) {
  IngestResult result;
  std::set<std::string> ids;
  for (const auto* r : reports) ids.insert(r->client_id());
  if (ids.empty()) return result;
  ASSIGN_OR_RETURN(
      store::Result rows,
      tx.Exec("SELECT id::text, last_report_seq, inventory_seq, needs_full_inventory FROM devices "
              "WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE",
              {TextArrayLiteral({ids.begin(), ids.end()})}));
  std::map<std::string, DeviceState> devices;
  for (size_t i = 0; i < rows.size(); ++i) {
    DeviceState& d = devices[rows.GetString(i, 0)];
    d.last_report_seq = rows.GetInt(i, 1);
    d.inventory_seq = rows.GetInt(i, 2);
    d.needs_full = rows.GetBool(i, 3);
  }

  // Inventory reports go in rounds: the n-th applied inventory of each device
  // in round n, so that one device's reports apply in order.
  std::vector<std::vector<const v1::ClientReport*>> rounds;
  RowSet states({{"device_id", "uuid", "", true},
                 {"seq", "bigint", "", true},
                 {"topic"},
                 {"severity", "integer"},
                 {"text"},
                 {"created_at", "bigint", "to_timestamp(u.created_at / 1000.0)"}});
  Keyed deployment_states;
  Keyed script_results;
  Keyed live_answers;
  std::set<std::string> full_requested;
  for (const auto* r : reports) {
    auto it = devices.find(r->client_id());
    if (it == devices.end()) {
      ++result.unknown_clients;  // deleted meanwhile: nothing to attach the data to
      continue;
    }
    DeviceState& d = it->second;
    if (r->seq() <= d.last_report_seq) {
      ++result.duplicates;
      continue;
    }
    d.last_report_seq = r->seq();
    d.changed = true;
    ++result.applied;
    const int64_t at_ms = r->created_unix_ms();
    switch (r->body_case()) {
      case v1::ClientReport::kInventory: {
        const auto& inv = r->inventory();
        bool fits = inv.full() || (!d.needs_full && inv.base_seq() == d.inventory_seq);
        if (!fits) {
          d.needs_full = true;
          if (full_requested.insert(r->client_id()).second) {
            result.full_requests.push_back(r->client_id());
          }
          break;
        }
        d.inventory_seq = inv.inventory_seq();
        d.needs_full = false;
        d.inventory_ms = std::max(d.inventory_ms, at_ms);
        if (inv.has_hardware() && !inv.hardware().os().hostname().empty()) {
          d.hostname = inv.hardware().os().hostname();
        }
        if (static_cast<int>(rounds.size()) <= d.round) rounds.emplace_back();
        rounds[d.round++].push_back(r);
        result.software_rows += inv.software_size();
        break;
      }
      case v1::ClientReport::kHeartbeat:
        d.heartbeat_ms = std::max(d.heartbeat_ms, at_ms);
        if (!r->heartbeat().hostname().empty()) d.hostname = r->heartbeat().hostname();
        d.ips.assign(r->heartbeat().ip_addresses().begin(), r->heartbeat().ip_addresses().end());
        d.has_ips = true;
        break;
      case v1::ClientReport::kState: {
        const auto& st = r->state();
        states.Add({r->client_id(), Str(r->seq()), st.topic(), Str(st.severity()), st.text(),
                    Str(st.at_unix_ms() ? st.at_unix_ms() : at_ms)});
        break;
      }
      case v1::ClientReport::kDeployment: {
        // The newest of the batch per deployment (reports come in seq order).
        const auto& st = r->deployment();
        deployment_states[{r->client_id(), st.deployment()}] = {
            r->client_id(),
            st.deployment(),
            "",
            deploy::StateName(st.state()),
            st.deployment_type(),
            st.revision(),
            Str(st.exit_code()),
            st.detail(),
            Str(st.bytes_done()),
            Str(st.bytes_total()),
            Str(st.attempt()),
            Str(st.at_unix_ms() ? st.at_unix_ms() : at_ms)};
        break;
      }
      case v1::ClientReport::kScript: {
        const auto& sr = r->script();
        auto ms = [](int64_t v) { return v > 0 ? Str(v) : std::string(); };
        script_results[{r->client_id(), sr.run()}] = {r->client_id(),
                                                      sr.run(),
                                                      "",
                                                      deploy::ScriptStateName(sr.state()),
                                                      Str(sr.exit_code()),
                                                      sr.output(),
                                                      sr.truncated() ? "t" : "f",
                                                      sr.detail(),
                                                      ms(sr.started_unix_ms()),
                                                      ms(sr.finished_unix_ms()),
                                                      Str(at_ms)};
        break;
      }
      case v1::ClientReport::kLiveQuery: {
        const auto& a = r->live_query();
        std::string json = "[";
        for (const auto& row : a.rows()) {
          json += json.size() > 1 ? ",[" : "[";
          for (int k = 0; k < row.values_size(); ++k) {
            if (k > 0) json += ",";
            AppendJsonString(json, row.values(k));
          }
          json += "]";
        }
        json += "]";
        live_answers[{r->client_id(), a.query()}] = {a.query(),
                                                     r->client_id(),
                                                     "",
                                                     LiveStateName(a.state()),
                                                     std::move(json),
                                                     Str(a.rows_size()),
                                                     a.truncated() ? "t" : "f",
                                                     a.detail(),
                                                     Str(a.elapsed_ms()),
                                                     Str(at_ms)};
        break;
      }
      case v1::ClientReport::BODY_NOT_SET:
        break;
    }
  }

  for (const auto& round : rounds) {
    HardwareRows hardware;
    RowSet software = SoftwareRows();
    RowSet removed({{"device_id", "uuid", "", true},
                    {"name", "text", "", true},
                    {"architecture", "text", "", true}});
    std::vector<std::string> full_devices;
    for (const auto* r : round) {
      const auto& inv = r->inventory();
      const std::string& id = r->client_id();
      if (inv.has_hardware()) hardware.Add(id, inv.hardware());
      if (inv.full()) full_devices.push_back(id);
      for (const auto& s : inv.software()) AddSoftware(software, id, s);
      for (const auto& s : inv.software_removed()) {
        removed.Add({id, s.name(), s.architecture()});
      }
    }
    RETURN_IF_ERROR(hardware.Write(tx));
    RETURN_IF_ERROR(removed.DeleteListed(tx, "device_software"));
    if (!full_devices.empty()) {
      // A full inventory replaces the device's software: delete what it no
      // longer lists (compared per device, against this round's rows).
      RowSet full_software = SoftwareRows();
      std::set<std::string> full_set(full_devices.begin(), full_devices.end());
      for (const auto* r : round) {
        if (!full_set.count(r->client_id())) continue;
        for (const auto& s : r->inventory().software()) {
          AddSoftware(full_software, r->client_id(), s);
        }
      }
      RETURN_IF_ERROR(full_software.DeleteOthers(tx, "device_software", full_devices));
    }
    RETURN_IF_ERROR(software.Upsert(tx, "device_software"));
  }
  RETURN_IF_ERROR(states.Upsert(tx, "status_messages"));
  RowSet deployments(
      {{"device_id", "uuid", "", true},
       {"deployment", "text", "", true},
       {"site_code", "text", "(SELECT x.site_code FROM devices x WHERE x.id = u.device_id)"},
       {"state"},
       {"deployment_type"},
       {"revision"},
       {"exit_code", "integer"},
       {"detail"},
       {"bytes_done", "bigint"},
       {"bytes_total", "bigint"},
       {"attempt", "integer"},
       {"reported_at", "bigint", "to_timestamp(u.reported_at / 1000.0)"}});
  // Only deployments assigned to the device here: a client cannot make
  // rows of names of its own choosing, nor count in a deployment that does
  // not target it.
  ASSIGN_OR_RETURN(auto assigned,
                   AssignedKeys(tx, deployment_states, "app_deployment_assignments", "deployment"));
  for (auto& [key, row] : deployment_states)
    if (assigned.count(key)) deployments.Add(std::move(row));
  RETURN_IF_ERROR(deployments.Upsert(tx, "deployment_states"));

  RowSet scripts(
      {{"device_id", "uuid", "", true},
       {"run", "uuid", "", true},
       {"site_code", "text", "(SELECT x.site_code FROM devices x WHERE x.id = u.device_id)"},
       {"state"},
       {"exit_code", "integer"},
       {"output"},
       {"truncated", "boolean"},
       {"detail"},
       {"started_at", "text", "to_timestamp(nullif(u.started_at, '')::bigint / 1000.0)"},
       {"finished_at", "text", "to_timestamp(nullif(u.finished_at, '')::bigint / 1000.0)"},
       {"reported_at", "bigint", "to_timestamp(u.reported_at / 1000.0)"}});
  ASSIGN_OR_RETURN(auto assigned_runs,
                   AssignedKeys(tx, script_results, "script_run_assignments", "run"));
  for (auto& [key, row] : script_results)
    if (assigned_runs.count(key)) scripts.Add(std::move(row));
  RETURN_IF_ERROR(scripts.Upsert(tx, "script_results"));

  RETURN_IF_ERROR(WriteLiveAnswers(tx, live_answers));

  RowSet updates({{"id", "uuid", "", true},
                  {"last_report_seq", "bigint"},
                  {"inventory_seq", "bigint"},
                  {"needs_full", "boolean"},
                  {"heartbeat_ms", "bigint"},
                  {"inventory_ms", "bigint"},
                  {"hostname"},
                  {"has_ips", "boolean"},
                  {"ips"}});
  for (const auto& [id, d] : devices) {
    if (!d.changed) continue;
    updates.Add({id, Str(d.last_report_seq), Str(d.inventory_seq), d.needs_full ? "t" : "f",
                 Str(d.heartbeat_ms), Str(d.inventory_ms), d.hostname, d.has_ips ? "t" : "f",
                 absl::StrJoin(d.ips, " ")});
  }
  if (!updates.empty()) {
    store::Params params;
    std::string unnest = updates.Unnest(params);
    RETURN_IF_ERROR(
        tx.Exec(absl::StrCat(
                    "UPDATE devices d SET last_report_seq = u.last_report_seq, inventory_seq = "
                    "u.inventory_seq, needs_full_inventory = u.needs_full, last_seen_at = now(), "
                    "active = true, last_heartbeat_at = CASE WHEN u.heartbeat_ms > 0 THEN "
                    "to_timestamp(u.heartbeat_ms / 1000.0) ELSE d.last_heartbeat_at END, "
                    "last_inventory_at = CASE WHEN u.inventory_ms > 0 THEN "
                    "to_timestamp(u.inventory_ms / 1000.0) ELSE d.last_inventory_at END, "
                    "name = CASE WHEN u.hostname <> '' THEN u.hostname ELSE d.name END, "
                    "ip_addresses = CASE WHEN u.has_ips THEN string_to_array(u.ips, ' ') ELSE "
                    "d.ip_addresses END FROM ",
                    unnest, " WHERE d.id = u.id"),
                params)
            .status());
  }
  return result;
}

}  // namespace strata::site
