// stratactl query 'QUERY' --select a.b,c.d --collection C | --device D
// (rows printed as they arrive), get live-queries, get live-query ID

#include <unistd.h>

#include <iostream>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "provider/stratactl/command.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/live_queries.grpc.pb.h"

namespace strata::ctl {
namespace {

std::string CountsLine(const v1::LiveQueryCounts& c) {
  return absl::StrCat(c.answered(), "/", c.targeted(), " answered, ", c.pending(), " pending, ",
                      c.offline(), " offline, ", c.failed(), " failed; ", c.rows(), " rows");
}

// A row as a line of the table (columns split by two spaces) or CSV.
void PrintRow(const Options& o, const std::vector<std::string>& cells) {
  if (o.output == "csv") {
    std::cout << CsvLine(cells) << "\n";
    return;
  }
  std::cout << absl::StrJoin(cells, "  ") << "\n";
}

std::vector<std::string> Cells(const v1::LiveResultRow& r) {
  std::vector<std::string> cells{r.device_name(), r.site_code()};
  cells.insert(cells.end(), r.values().begin(), r.values().end());
  return cells;
}

void ShowProblems(const google::protobuf::RepeatedPtrField<v1::DeviceLiveAnswer>& problems) {
  for (const auto& p : problems)
    std::cerr << p.device_name() << " (" << p.site_code() << "): " << p.state()
              << (p.truncated() ? ", rows cut" : "") << (p.detail().empty() ? "" : ": ")
              << p.detail() << "\n";
}

struct QueryFlags {
  v1::RunLiveQueryRequest req;
  std::string select, expires, time_limit;
  int max_rows = 0;
  int64_t wait = 30;
};

Action Ask(CLI::App* cmd) {
  auto f = std::make_shared<QueryFlags>();
  cmd->add_option("query", *f->req.mutable_query(),
                  "The question, in the collection query language with the live classes "
                  "(process, socket, user, service, file, os_update): 'socket.port = 22'")
      ->required();
  cmd->add_option("--select", f->select,
                  "The columns to return: class.attribute,... (a row per matching row of the "
                  "one many-rowed class among them, e.g. software or process)")
      ->required();
  auto* coll = cmd->add_option("--collection", *f->req.mutable_collection(),
                               "Ask this collection's members");
  auto* dev = cmd->add_option("--device", *f->req.mutable_device(), "Ask one device (name or id)");
  coll->excludes(dev);
  cmd->add_option("--wait", f->wait,
                  "Seconds to wait for answers (default 30); later ones merge in: get live-query")
      ->check(CLI::Range(1, 3600));
  cmd->add_option("--max-rows-per-device", f->max_rows,
                  "Rows one device may return (default 100, at most 1000)")
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--time-limit", f->time_limit,
                  "How long a device may take before it stops and reports the query too "
                  "costly: 500ms, 2s (default 10s, at most 60s)");
  cmd->add_option("--expires", f->expires,
                  "Devices that learn of it later do not answer: 3600, 30m, 2h (default 1h, at "
                  "most 1d)");
  return [f](Client& c) {
    if (f->req.collection().empty() && f->req.device().empty()) {
      std::cerr << "stratactl: --collection or --device is required\n";
      return kUsage;
    }
    for (const auto& s : absl::StrSplit(f->select, ',', absl::SkipWhitespace()))
      f->req.add_select(std::string(absl::StripAsciiWhitespace(s)));
    if (!f->expires.empty()) {
      const int64_t s = ParseDuration(f->expires);
      if (s <= 0) {
        std::cerr << "stratactl: --expires " << f->expires << ": seconds, or 30m, 2h, 1d\n";
        return kUsage;
      }
      f->req.set_expires_in_seconds(s);
    }
    f->req.set_max_rows_per_device(f->max_rows);
    if (!f->time_limit.empty()) {
      int64_t ms = 0;
      if (absl::EndsWith(f->time_limit, "ms") &&
          absl::SimpleAtoi(f->time_limit.substr(0, f->time_limit.size() - 2), &ms)) {
      } else if (const int64_t s = ParseDuration(f->time_limit); s > 0) {
        ms = s * 1000;
      }
      if (ms <= 0) {
        std::cerr << "stratactl: --time-limit " << f->time_limit << ": 500ms, 2s, 1m\n";
        return kUsage;
      }
      f->req.set_time_limit_ms(static_cast<int32_t>(std::min<int64_t>(ms, 1 << 30)));
    }
    v1::LiveQuery q;
    if (int rc = c.Call(&v1::LiveQueryService::Stub::RunLiveQuery, f->req, &q)) return rc;
    const Options& o = c.options();
    const bool tty = isatty(STDERR_FILENO);
    std::cerr << "live query " << q.id() << " on " << q.targeted() << " devices\n";
    v1::LiveQueryService::Stub stub(c.channel());
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(f->wait + 30));
    v1::WatchLiveQueryRequest watch;
    watch.set_id(q.id());
    watch.set_wait_seconds(f->wait);
    auto reader = stub.WatchLiveQuery(&ctx, watch);
    v1::LiveQueryUpdate u;
    v1::LiveQueryResults all;  // -o json: everything, printed at the end
    v1::LiveQueryCounts last;
    std::string progress;
    while (reader->Read(&u)) {
      if (u.columns_size() > 0 && o.output != "json") {
        std::vector<std::string> header{"DEVICE", "SITE"};
        for (const auto& col : u.columns()) header.push_back(absl::AsciiStrToUpper(col));
        PrintRow(o, header);
      }
      for (const auto& r : u.rows()) {
        if (o.output == "json") {
          *all.add_rows() = r;
        } else {
          PrintRow(o, Cells(r));
        }
      }
      if (o.output != "json") ShowProblems(u.problems());
      for (const auto& p : u.problems()) *all.add_devices() = p;
      last = u.counts();
      const std::string line = CountsLine(last);
      if (tty && line != progress) std::cerr << "\r" << line << "\033[K";
      progress = line;
    }
    if (tty) std::cerr << "\r\033[K";
    if (int rc = c.Report(reader->Finish())) return rc;
    if (o.output == "json") {
      *all.mutable_query() = q;
      *all.mutable_counts() = last;
      PrintJson(all);
    }
    std::cerr << CountsLine(last) << (last.pending() > 0 ? " (still waiting: get live-query " : "")
              << (last.pending() > 0 ? q.id() + ")" : "") << "\n";
    return kOk;
  };
}

Action GetOne(CLI::App* cmd) {
  auto req = std::make_shared<v1::GetLiveQueryRequest>();
  auto max_rows = std::make_shared<int>(0);
  cmd->add_option("id", *req->mutable_id(), "The query's id (query, get live-queries)")->required();
  cmd->add_option("--max-rows", *max_rows, "Rows shown (default 20000)")
      ->check(CLI::Range(1, 100000));
  return [req, max_rows](Client& c) {
    req->set_max_rows(*max_rows);
    v1::LiveQueryResults out;
    if (int rc = c.Call(&v1::LiveQueryService::Stub::GetLiveQuery, *req, &out)) return rc;
    const Options& o = c.options();
    if (o.output == "json") {
      PrintJson(out);
      return kOk;
    }
    Table t{{"DEVICE", "SITE"}, {}};
    for (const auto& col : out.query().select()) t.headers.push_back(absl::AsciiStrToUpper(col));
    for (const auto& r : out.rows()) t.rows.push_back(Cells(r));
    if (o.output != "csv")
      std::cout << "live query " << out.query().id() << ": " << out.query().query() << "\n"
                << CountsLine(out.counts()) << "\n";
    PrintTable(t, o.output);
    if (out.rows_truncated()) std::cout << "(more rows: --max-rows)\n";
    if (o.output != "csv") {
      Table d{{"DEVICE", "SITE", "STATE", "ROWS", "MS", "DETAIL"}, {}};
      for (const auto& x : out.devices())
        if (x.state() != "answered" || x.truncated())
          d.rows.push_back({x.device_name(), x.site_code(), x.state(), absl::StrCat(x.rows()),
                            absl::StrCat(x.elapsed_ms()), x.detail()});
      if (!d.rows.empty()) {
        std::cout << "\n";
        PrintTable(d, o.output);
      }
    }
    return kOk;
  };
}

}  // namespace

std::vector<Command> LiveQueryCommands() {
  return {
      {"query", "", {}, "Ask devices a question now: rows as they arrive", Ask},
      {"get",
       "live-queries",
       {},
       "Live queries asked, newest first (--filter: a pattern of the query's text)",
       [](CLI::App*) -> Action {
         return [](Client& c) {
           v1::LiveQueryList l;
           if (int rc = c.ListAll(&v1::LiveQueryService::Stub::ListLiveQueries, &l)) return rc;
           Table t{{"ID", "QUERY", "SELECT", "TARGET", "DEVICES", "BY", "CREATED"}, {}};
           for (const auto& q : l.queries())
             t.rows.push_back({q.id(), q.query(), absl::StrJoin(q.select(), ","),
                               q.device_id().empty() ? q.collection() : q.device_name(),
                               absl::StrCat(q.targeted()), q.created_by(), q.created_at()});
           Show(c.options(), l, l.next_page_token(), t);
           return kOk;
         };
       }},
      {"get",
       "live-query",
       {},
       "A live query's rows and the devices that did not answer",
       GetOne,
       "get live-queries --all"},
  };
}

}  // namespace strata::ctl
