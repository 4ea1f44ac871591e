// stratactl report list, report run NAME [--param k=v] [--max-rows N]

#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/str_join.h"
#include "provider/stratactl/command.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/reports.grpc.pb.h"

namespace strata::ctl {
namespace {

int ListReports(Client& c) {
  v1::ReportList l;
  if (int rc = c.Call(&v1::ReportService::Stub::ListReports, v1::ListRequest(), &l)) return rc;
  Table t{{"NAME", "PARAMETERS", "DESCRIPTION"}, {}};
  for (const auto& r : l.reports()) {
    t.rows.push_back({r.name(), absl::StrJoin(r.parameters(), ","), r.description()});
  }
  Show(c.options(), l, l.next_page_token(), t);
  return kOk;
}

Action Run(CLI::App* cmd) {
  struct State {
    std::string name;
    std::vector<std::string> params;
    int max_rows = 0;
  };
  auto st = std::make_shared<State>();
  cmd->add_option("name", st->name, "The report (see report list)")->required();
  cmd->add_option("--param", st->params, "A parameter NAME=VALUE (repeatable)");
  cmd->add_option("--max-rows", st->max_rows, "At most this many rows (default 10000)")
      ->check(CLI::Range(1, 100000));
  return [st](Client& c) {
    v1::RunReportRequest req;
    req.set_name(st->name);
    req.set_max_rows(st->max_rows);
    for (const auto& p : st->params) {
      size_t eq = p.find('=');
      if (eq == std::string::npos || eq == 0) {
        std::cerr << "stratactl: --param takes NAME=VALUE, not \"" << p << "\"\n";
        return kUsage;
      }
      (*req.mutable_parameters())[p.substr(0, eq)] = p.substr(eq + 1);
    }
    v1::ReportResult res;
    if (int rc = c.Call(&v1::ReportService::Stub::RunReport, req, &res)) return rc;
    const Options& o = c.options();
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
  };
}

}  // namespace

std::vector<Command> ReportCommands() {
  return {
      {"report",
       "list",
       {},
       "The built-in reports and their parameters",
       [](CLI::App*) -> Action { return ListReports; }},
      {"report",
       "run",
       {},
       "Run a report (rows about devices: only the ones you may see)",
       Run,
       "report list"},
  };
}

}  // namespace strata::ctl
