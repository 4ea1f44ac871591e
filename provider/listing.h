#pragma once

// Listings of the admin API: paging (page_size, page_token), ordering
// (order_by, among the columns a listing names), name filters, and
// timestamps as the API shows them. A listing declares its shape in a
// ListSpec and hands each row to a fill function.

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/store/database.h"
#include "strata/v1/admin/common.pb.h"

namespace strata::provider {

inline constexpr int kDefaultPageSize = 100;
inline constexpr int kMaxPageSize = 1000;

// An RFC 3339 UTC timestamp of a timestamptz column, "" for NULL.
std::string Ts(const std::string& column);

// A name pattern ("*ssl*") as an ILIKE pattern, with %, _ and \ taken literally.
std::string NamePattern(const std::string& filter);

// Paging and ordering of a listing.
struct Page {
  int64_t offset = 0;
  int size = kDefaultPageSize;
  std::string order;  // SQL ORDER BY
};

// `columns`: the names order_by may use, each with its SQL expression.
absl::StatusOr<Page> ParsePage(const v1::ListRequest& req,
                               const std::map<std::string, std::string>& columns,
                               const std::string& default_order);

// Appends ORDER BY / LIMIT / OFFSET (one row more than the page, to know
// whether another follows).
std::string Paged(const std::string& sql, const Page& p);

// The rows of the page (beyond it: a next page, whose token is set).
template <typename List>
size_t TrimPage(const store::Result& r, const Page& p, List* list) {
  if (r.size() > static_cast<size_t>(p.size)) {
    list->set_next_page_token(absl::StrCat(p.offset + p.size));
    return p.size;
  }
  return r.size();
}

// A simple listing: one SELECT, a name filter over some columns, orderable
// columns.
struct ListSpec {
  std::string select;                        // "SELECT a, b FROM t" (no WHERE)
  std::string where;                         // a condition of the caller's, or ""
  std::vector<std::string> filter_columns;   // the filter (a name pattern) matches any
  std::map<std::string, std::string> order;  // order_by name -> SQL
  std::string default_order;                 // SQL
};

// Runs one page of `spec` for `req` (the caller's `params` are those its
// `where` uses) and hands each row to `fill`.
template <typename List>
absl::Status ListPage(store::Transaction& tx, const v1::ListRequest& req, const ListSpec& spec,
                      store::Params params, List* out,
                      const std::function<void(const store::Result&, size_t)>& fill) {
  ASSIGN_OR_RETURN(Page page, ParsePage(req, spec.order, spec.default_order));
  std::string where = spec.where;
  if (!req.filter().empty() && !spec.filter_columns.empty()) {
    params.emplace_back(NamePattern(req.filter()));
    std::string any;
    for (const auto& column : spec.filter_columns) {
      absl::StrAppend(&any, any.empty() ? "" : " OR ", column, " ILIKE $", params.size());
    }
    where = where.empty() ? any : absl::StrCat("(", where, ") AND (", any, ")");
  }
  std::string sql = where.empty() ? spec.select : absl::StrCat(spec.select, " WHERE ", where);
  ASSIGN_OR_RETURN(store::Result r, tx.Exec(Paged(sql, page), params));
  for (size_t i = 0, n = TrimPage(r, page, out); i < n; ++i) fill(r, i);
  return absl::OkStatus();
}

}  // namespace strata::provider
