#pragma once

#include <functional>

// The provider's built-in reports: each a name, a description, optional
// parameters and the SQL it runs. Rows about devices cover only the devices
// the caller may see (members of their collections).

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/store/database.h"

namespace strata::provider {

// Who runs a report, as far as reports care.
struct ReportCaller {
  std::vector<std::string> collections;  // devices: members of these
  std::vector<std::string> scopes;       // collections: in these scopes
  bool all_scopes = false;
};

struct ReportSpec {
  std::string name;
  std::string description;
  std::vector<std::string> parameters;  // all optional
  std::string permission;               // needed besides report.run ("" none)
  // The SQL (parameters appended to `params`); values come out as text.
  std::function<std::string(const ReportCaller&, const std::map<std::string, std::string>& args,
                            store::Params& params)>
      sql;
};

const std::vector<ReportSpec>& BuiltinReports();
const ReportSpec* FindReport(const std::string& name);

}  // namespace strata::provider
