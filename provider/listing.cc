#include "provider/listing.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"

namespace strata::provider {

std::string Ts(const std::string& column) {
  return absl::StrCat("coalesce(to_char(", column,
                      " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '')");
}

std::string NamePattern(const std::string& filter) {
  std::string out;
  for (char c : filter) {
    if (c == '*') {
      out.push_back('%');
    } else {
      if (c == '%' || c == '_' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
  }
  return out;
}

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

std::string Paged(const std::string& sql, const Page& p) {
  return absl::StrCat(sql, " ORDER BY ", p.order, " LIMIT ", p.size + 1, " OFFSET ", p.offset);
}

}  // namespace strata::provider
