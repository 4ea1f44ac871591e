// Built-in reports (proto/strata/v1/admin/reports.proto); the reports
// themselves are in report_catalog.cc.

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"
#include "provider/input.h"
#include "provider/resource.h"
#include "provider/resources/report_catalog.h"
#include "strata/v1/admin/reports.grpc.pb.h"

namespace strata::provider {
namespace {

constexpr Permission kRun{"report.run", "List and run reports (some need more)"};

constexpr int kDefaultReportRows = 10000;
constexpr int kMaxReportRows = 100000;

class ReportServiceImpl final : public v1::ReportService::Service {
 public:
  explicit ReportServiceImpl(CallCore& core) : core_(core) {}

  grpc::Status ListReports(grpc::ServerContext* ctx, const v1::ListRequest* req,
                           v1::ReportList* out) override {
    return core_.Run(*ctx, __func__, kRun.name, [&](Call&) {
      out->Clear();
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
    return core_.Run(*ctx, __func__, kRun.name, [&](Call& call) -> absl::Status {
      out->Clear();
      const ReportSpec* spec = FindReport(req->name());
      if (spec == nullptr) {
        std::vector<std::string> names;
        for (const auto& r : BuiltinReports()) names.push_back(r.name);
        return absl::NotFoundError(absl::StrCat("no report \"", req->name(),
                                                "\" (reports: ", absl::StrJoin(names, ", "), ")"));
      }
      if (!spec->permission.empty()) {
        RETURN_IF_ERROR(call.Require(spec->permission, "report", spec->name));
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
      const Caller& c = call.caller;
      ReportCaller rc{c.collections, c.scopes, c.all_scopes};
      store::Params params;
      std::string sql = spec->sql(rc, args, params);
      ASSIGN_OR_RETURN(
          Result r,
          call.tx.Exec(absl::StrCat("SELECT * FROM (", sql, ") report LIMIT ", limit + 1), params));
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
  CallCore& core_;
};

}  // namespace

Resource ReportsResource() {
  return {"reports", {kRun}, [](const ResourceContext& c) {
            return std::make_unique<ReportServiceImpl>(*c.core);
          }};
}

}  // namespace strata::provider
