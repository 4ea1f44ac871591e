// Collection evaluation benchmark (issue 4): a primary's database with
// --devices simulated devices of realistic inventory and --collections
// query-rule collections of varied selectivity (limited by All Systems).
//   full_eval_s             a scheduled full evaluation: every collection
//                           recomputed and compared with its stored members,
//                           only differences written, one transaction each
//   sql_baseline_s          the same rules hand-written as plain SQL, each
//                           member set computed (counted), same database
//   first_eval_s            the first evaluation, writing every membership
//                           (with change capture, for the CAS)
//   sql_insert_s            the hand-written rules inserting the same members
//                           into a plain table with the same key
//   incremental_eval_ms_*   one device's inventory changed (committed), then
//                           every collection re-evaluated for it through the
//                           queue, as the site does (one transaction)
// The evaluator and the hand-written SQL are checked to select the same
// devices, rule by rule.
// Last line: bench collections: devices=… collections=… full_eval_s=…
//   incremental_eval_ms_p99=… sql_baseline_s=… full_vs_sql=… first_eval_s=…
//   sql_insert_s=… first_vs_insert=…

#include <algorithm>
#include <chrono>
#include <iostream>
#include <random>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"
#include "common/collections/evaluator.h"
#include "common/site/site_server.h"
#include "common/store/database.h"

ABSL_FLAG(std::string, db, "", "libpq connection string of an empty database");
ABSL_FLAG(int, devices, 100000, "Simulated devices");
ABSL_FLAG(int, collections, 200, "Query-rule collections");
ABSL_FLAG(int, samples, 200, "Incremental evaluations measured");

namespace strata::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

void Check(const absl::Status& s, const char* what) {
  if (!s.ok()) {
    std::cerr << "bench collections: " << what << ": " << s << "\n";
    std::exit(1);
  }
}

store::Result Exec(store::Connection& conn, const std::string& sql,
                   const store::Params& params = {}) {
  auto r = conn.Exec(sql, params);
  Check(r.status(), sql.substr(0, 80).c_str());
  return *r;
}

// A rule in the query language and the same rule as a DBA would write it.
struct Rule {
  std::string query;
  std::string sql;  // SELECT of device ids
};

const char* kOs[] = {"Debian GNU/Linux", "Debian GNU/Linux", "Debian GNU/Linux",
                     "Debian GNU/Linux", "Ubuntu",           "Ubuntu",
                     "Rocky Linux",      "AlmaLinux",        "SUSE Linux Enterprise Server",
                     "Fedora Linux"};

std::vector<Rule> MakeRules(int n, std::mt19937_64& rng) {
  std::vector<Rule> rules;
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  // Package popularity falls with its number: low numbers are on most devices.
  auto pkg = [&] { return absl::StrCat("pkg", pick(0, 3) == 0 ? pick(0, 20) : pick(0, 2000)); };
  auto os = [&] { return std::string(kOs[pick(0, 9)]); };
  for (int i = 0; rules.size() < static_cast<size_t>(n); ++i) {
    switch (i % 10) {
      case 0: {
        std::string o = os();
        rules.push_back(
            {absl::StrCat("os.name = \"", o, "\""),
             absl::StrCat("SELECT o.device_id FROM device_os o WHERE o.name = '", o, "'")});
        break;
      }
      case 1: {
        int mb = 1024 << pick(0, 5);
        rules.push_back({absl::StrCat("memory.total_mb >= ", mb),
                         absl::StrCat("SELECT m.device_id FROM device_memory m WHERE m.total_kb / "
                                      "1024 >= ",
                                      mb)});
        break;
      }
      case 2: {
        std::string p = pkg();
        rules.push_back({absl::StrCat("software.name = \"", p, "\""),
                         absl::StrCat("SELECT DISTINCT s.device_id FROM device_software s WHERE "
                                      "s.name = '",
                                      p, "'")});
        break;
      }
      case 3: {
        std::string p = pkg(), v = absl::StrCat("1.", pick(1, 6));
        rules.push_back(
            {absl::StrCat("software.name = \"", p, "\" and software.version < \"", v, "\""),
             absl::StrCat("SELECT DISTINCT s.device_id FROM device_software s WHERE s.name = '", p,
                          "' AND strata_version_key(s.version) < strata_version_key('", v, "')")});
        break;
      }
      case 4: {
        std::string o = os(), p = pkg();
        int mb = 1024 << pick(0, 5);
        rules.push_back(
            {absl::StrCat("os.name = \"", o, "\" and memory.total_mb >= ", mb,
                          " and software.name = \"", p, "\""),
             absl::StrCat("SELECT o.device_id FROM device_os o JOIN device_memory m USING "
                          "(device_id) WHERE o.name = '",
                          o, "' AND m.total_kb / 1024 >= ", mb,
                          " AND EXISTS (SELECT 1 FROM device_software s WHERE s.device_id = "
                          "o.device_id AND s.name = '",
                          p, "')")});
        break;
      }
      case 5: {
        std::string p = pkg();
        rules.push_back({absl::StrCat("not software.name = \"", p, "\""),
                         absl::StrCat("SELECT d.id FROM devices d WHERE NOT EXISTS (SELECT 1 FROM "
                                      "device_software s WHERE s.device_id = d.id AND s.name = '",
                                      p, "')")});
        break;
      }
      case 6: {
        int cores = 1 << pick(0, 4), gb = pick(20, 400);
        rules.push_back(
            {absl::StrCat("processor.cores >= ", cores, " and disk.free_gb < ", gb),
             absl::StrCat("SELECT p.device_id FROM device_processor p WHERE p.cores >= ", cores,
                          " AND EXISTS (SELECT 1 FROM device_disk k WHERE k.device_id = "
                          "p.device_id AND k.free_bytes / 1073741824.0 < ",
                          gb, ")")});
        break;
      }
      case 7: {
        std::string a = pkg(), b = pkg(), c = pkg();
        rules.push_back(
            {absl::StrCat("software.name in (\"", a, "\", \"", b, "\", \"", c, "\")"),
             absl::StrCat("SELECT DISTINCT s.device_id FROM device_software s WHERE s.name IN ('",
                          a, "', '", b, "', '", c, "')")});
        break;
      }
      case 8: {
        std::string k = absl::StrCat("6.1.0-", pick(0, 29), "-amd64");
        rules.push_back({absl::StrCat("os.kernel >= \"", k, "\""),
                         absl::StrCat("SELECT o.device_id FROM device_os o WHERE "
                                      "strata_version_key(o.kernel) >= strata_version_key('",
                                      k, "')")});
        break;
      }
      case 9: {
        std::string prefix = absl::StrCat("dev-0", pick(0, 9));
        rules.push_back(
            {absl::StrCat("device.name like \"", prefix, "%\""),
             absl::StrCat("SELECT d.id FROM devices d WHERE d.name LIKE '", prefix, "%'")});
        break;
      }
    }
  }
  return rules;
}

void Load(store::Connection& conn, int devices) {
  // Bulk load as a replica would apply it: no change capture, no queue.
  Exec(conn, "UPDATE collection_evaluation SET enabled = false");
  Check(conn.Transact([&](store::Transaction& tx) -> absl::Status {
    for (const char* sql : {
             "SET LOCAL strata.applying = 'on'",
             "SELECT setseed(0.42)",
             "INSERT INTO devices (id, name, site_code, last_seen_at, last_inventory_at) SELECT "
             "md5('dev' || i)::uuid, 'dev-' || lpad(i::text, 6, '0'), 'P01', now(), now() FROM "
             "generate_series(1, $1::int) i",
             "INSERT INTO device_os (device_id, name, version, pretty_name, kernel, architecture, "
             "hostname) SELECT md5('dev' || i)::uuid, (ARRAY['Debian GNU/Linux', 'Debian "
             "GNU/Linux', 'Debian GNU/Linux', 'Debian GNU/Linux', 'Ubuntu', 'Ubuntu', 'Rocky "
             "Linux', 'AlmaLinux', 'SUSE Linux Enterprise Server', 'Fedora Linux'])[1 + i % 10], "
             "(10 + i % 4)::text, 'OS ' || i % 10, '6.1.0-' || (i % 30) || '-amd64', 'x86_64', "
             "'dev-' || i FROM generate_series(1, $1::int) i",
             "INSERT INTO device_system (device_id, vendor, product, serial, bios_vendor, "
             "bios_version, bios_date, virtualization, uptime_s, boot_time) SELECT md5('dev' || "
             "i)::uuid, (ARRAY['Dell Inc.', 'HPE', 'Lenovo', 'QEMU'])[1 + i % 4], 'Model ' || i % "
             "17, 'SN' || i, 'BIOS Co', '1.' || i % 9, '2024-01-01', CASE WHEN i % 4 = 3 THEN "
             "'kvm' ELSE 'none' END, i % 1000000, now() FROM generate_series(1, $1::int) i",
             "INSERT INTO device_memory (device_id, total_kb, swap_kb) SELECT md5('dev' || "
             "i)::uuid, (1048576::bigint << (i % 6)), 1048576 FROM generate_series(1, $1::int) i",
             "INSERT INTO device_processor (device_id, idx, model, sockets, cores, threads) "
             "SELECT md5('dev' || i)::uuid, 0, 'CPU model ' || i % 7, 1, 1 << (i % 5), 2 << (i % "
             "5) FROM generate_series(1, $1::int) i",
             "INSERT INTO device_disk (device_id, name, is_filesystem, model, fs_type, size_bytes, "
             "free_bytes) SELECT md5('dev' || i)::uuid, '/', true, '', (ARRAY['ext4', "
             "'xfs'])[1 + i % 2], (50 + i % 950)::bigint << 30, ((i * 7919) % (50 + i % 950))::"
             "bigint << 30 FROM generate_series(1, $1::int) i",
             // 80-220 packages each, popular ones (low numbers) on most devices.
             "INSERT INTO device_software (device_id, name, architecture, version, source, "
             "installed_at) SELECT DISTINCT ON (d, p) md5('dev' || d)::uuid, 'pkg' || p, 'amd64', "
             "'1.' || (p % 7) || '.' || ((d + p) % 13) || '-1', 'dpkg', now() FROM (SELECT d, "
             "CASE WHEN j <= 20 THEN j - 1 ELSE floor(2000 * power(random(), 2))::int END AS p "
             "FROM generate_series(1, $1::int) d, generate_series(1, 220) j WHERE j <= 80 + (d * "
             "37) % 141) x",
         }) {
      store::Params params;
      if (std::string(sql).find("$1") != std::string::npos) params = {absl::StrCat(devices)};
      RETURN_IF_ERROR(tx.Exec(sql, params).status());
    }
    return absl::OkStatus();
  }),
        "load");
  Exec(conn, "UPDATE collection_evaluation SET enabled = true");
  Exec(conn, "ANALYZE");
}

}  // namespace

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage("strata-bench-collections --db CONNINFO [--devices N] ...");
  absl::ParseCommandLine(argc, argv);
  const int devices = absl::GetFlag(FLAGS_devices);
  const int ncoll = absl::GetFlag(FLAGS_collections);
  auto opened = store::Connection::Open(absl::GetFlag(FLAGS_db));
  Check(opened.status(), "connect");
  store::Connection& conn = **opened;
  Check(site::PrepareDatabase(conn, "P01"), "prepare");

  auto t0 = Clock::now();
  Load(conn, devices);
  std::cout << absl::StrFormat("loaded: devices=%d software_rows=%s seconds=%.1f", devices,
                               Exec(conn, "SELECT count(*) FROM device_software").GetString(0, 0),
                               Seconds(t0, Clock::now()))
            << std::endl;

  std::mt19937_64 rng(4242);
  std::vector<Rule> rules = MakeRules(ncoll, rng);
  Check(conn.Transact([&](store::Transaction& tx) -> absl::Status {
    for (size_t i = 0; i < rules.size(); ++i) {
      const std::string name = absl::StrFormat("c%03d", i);
      RETURN_IF_ERROR(tx.Exec("INSERT INTO collections (name, limiting) VALUES ($1, 'All "
                              "Systems')",
                              {name})
                          .status());
      RETURN_IF_ERROR(tx.Exec("INSERT INTO collection_rules (collection, name, kind, query) "
                              "VALUES ($1, 'q', 'query', $2)",
                              {name, rules[i].query})
                          .status());
    }
    return absl::OkStatus();
  }),
        "collections");

  // All Systems first (every other collection is limited by it): not timed.
  collections::Evaluator evaluator("P01");
  Check(conn.Transact([&](store::Transaction& tx) {
    return tx
        .Exec(
            "INSERT INTO collection_members (collection, device_id, site_code) SELECT "
            "'All Systems', id, 'P01' FROM devices")
        .status();
  }),
        "all systems");

  // Hand-written SQL: each rule's member set computed (counted, so no rows
  // travel), then written to a plain table with the same key.
  t0 = Clock::now();
  for (const Rule& r : rules) Exec(conn, absl::StrCat("SELECT count(*) FROM (", r.sql, ") x"));
  const double select_s = Seconds(t0, Clock::now());
  Exec(conn,
       "CREATE TABLE bench_baseline (collection text, device_id uuid, PRIMARY KEY "
       "(collection, device_id))");
  t0 = Clock::now();
  for (size_t i = 0; i < rules.size(); ++i) {
    Exec(conn, absl::StrCat("INSERT INTO bench_baseline SELECT '", absl::StrFormat("c%03d", i),
                            "', x.id FROM (", rules[i].sql, ") AS x(id)"));
  }
  const double insert_s = Seconds(t0, Clock::now());

  // The first evaluation writes every membership (with change capture); a
  // scheduled full evaluation recomputes every collection and compares it
  // with what is stored, writing only the differences.
  t0 = Clock::now();
  auto first = evaluator.EvaluateChanged(conn, true);
  Check(first.status(), "first evaluation");
  const double first_s = Seconds(t0, Clock::now());
  t0 = Clock::now();
  auto full = evaluator.EvaluateChanged(conn, true);
  Check(full.status(), "full evaluation");
  const double full_s = Seconds(t0, Clock::now());

  // Same members, rule by rule.
  std::string diff = Exec(conn,
                          "SELECT count(*) FROM ((SELECT collection, device_id FROM "
                          "collection_members WHERE collection ~ '^c[0-9]+$' EXCEPT SELECT "
                          "collection, device_id FROM bench_baseline) UNION ALL (SELECT "
                          "collection, device_id FROM bench_baseline EXCEPT SELECT collection, "
                          "device_id FROM collection_members)) x")
                         .GetString(0, 0);
  std::cout << absl::StrFormat(
                   "first evaluation: collections=%d members=%d seconds=%.2f; hand-written "
                   "INSERT of the same members: seconds=%.2f (ratio %.2f)",
                   first->collections, first->added, first_s, insert_s, first_s / insert_s)
            << std::endl;
  std::cout << absl::StrFormat(
                   "full evaluation: collections=%d failed=%d changes=%d seconds=%.2f; "
                   "hand-written SELECT of the same members: seconds=%.2f; differences=%s",
                   full->collections, full->failed, full->added + full->removed, full_s, select_s,
                   diff)
            << std::endl;
  if (diff != "0" || full->failed != 0 || first->failed != 0) {
    std::cerr << "bench collections: the evaluator and the hand-written SQL disagree\n";
    return 1;
  }

  // Incremental: one device changes, then the queue is drained. The bulk
  // writes above leave a checkpoint due; it is taken first, so that the
  // samples see the steady state. One warm-up sample (not counted) prepares
  // the statements, as the site's first incremental pass after a definition
  // change does.
  Exec(conn, "DELETE FROM collection_dirty");
  {
    auto r = conn.Exec("CHECKPOINT");
    Check(r.status(), "checkpoint");
  }
  std::vector<double> ms;
  std::uniform_int_distribution<int> dev(1, devices);
  int moved = 0;
  for (int i = -1; i < absl::GetFlag(FLAGS_samples); ++i) {
    const std::string id =
        Exec(conn, absl::StrCat("SELECT md5('dev' || ", dev(rng), ")::uuid::text")).GetString(0, 0);
    switch ((i + 3) % 3) {
      case 0:  // a popular package goes away
        Exec(conn,
             "DELETE FROM device_software WHERE device_id = $1 AND name IN (SELECT name "
             "FROM device_software WHERE device_id = $1 ORDER BY name LIMIT 1)",
             {id});
        break;
      case 1:  // a package arrives
        Exec(conn,
             "INSERT INTO device_software (device_id, name, architecture, version, source) "
             "VALUES ($1, 'new-pkg' || $2, 'amd64', '1.0.1-1', 'dpkg')",
             {id, absl::StrCat(i)});
        break;
      case 2:  // memory upgraded
        Exec(conn, "UPDATE device_memory SET total_kb = total_kb * 2 WHERE device_id = $1", {id});
        break;
    }
    auto a = Clock::now();
    auto s = evaluator.EvaluateDirty(conn, 1000);
    if (i >= 0) ms.push_back(Seconds(a, Clock::now()) * 1000);
    Check(s.status(), "incremental evaluation");
    if (s->devices != 1) {
      std::cerr << "bench collections: sample " << i << " (device " << id
                << "): expected one queued device, got " << s->devices << "\n";
      return 1;
    }
    moved += s->added + s->removed;
  }
  std::sort(ms.begin(), ms.end());
  std::vector<std::string> slowest;
  for (size_t k = ms.size() > 5 ? ms.size() - 5 : 0; k < ms.size(); ++k) {
    slowest.push_back(absl::StrFormat("%.1f", ms[k]));
  }
  auto pct = [&](double p) { return ms[std::min(ms.size() - 1, size_t(p * ms.size()))]; };
  std::cout << absl::StrFormat(
                   "incremental: samples=%d membership_changes=%d p50_ms=%.1f "
                   "p99_ms=%.1f max_ms=%.1f slowest_ms=%s",
                   ms.size(), moved, pct(0.5), pct(0.99), ms.back(), absl::StrJoin(slowest, ","))
            << std::endl;
  std::cout << absl::StrFormat(
                   "bench collections: devices=%d collections=%d full_eval_s=%.2f "
                   "incremental_eval_ms_p99=%.1f sql_baseline_s=%.2f full_vs_sql=%.2f "
                   "first_eval_s=%.2f sql_insert_s=%.2f first_vs_insert=%.2f",
                   devices, ncoll, full_s, pct(0.99), select_s, full_s / select_s, first_s,
                   insert_s, first_s / insert_s)
            << std::endl;
  return 0;
}

}  // namespace strata::bench

int main(int argc, char** argv) { return strata::bench::Main(argc, argv); }
