#include "provider/stratactl/output.h"

#include <algorithm>
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/json_util.h"

namespace strata::ctl {
namespace {

std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

}  // namespace

std::string CsvLine(const std::vector<std::string>& cells) {
  std::vector<std::string> r;
  for (const auto& x : cells) r.push_back(CsvField(x));
  return absl::StrJoin(r, ",");
}

void PrintTable(const Table& t, const std::string& format) {
  if (format == "csv") {
    std::cout << CsvLine(t.headers) << "\n";
    for (const auto& row : t.rows) std::cout << CsvLine(row) << "\n";
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

void Show(const Options& o, const google::protobuf::Message& resp, const std::string& next_page,
          const Table& table) {
  if (o.output == "json") {
    PrintJson(resp);
  } else {
    PrintTable(table, o.output);
  }
  if (!next_page.empty() && o.output == "table") {
    std::cerr << "(more: --page-token " << next_page << ", or --all)\n";
  }
}

void PrintDone(const Options& o, const std::string& what, const google::protobuf::Message& m) {
  if (o.output == "json") {
    PrintJson(m);
  } else {
    std::cout << what << "\n";
  }
}

void Describe(const Options& o, const google::protobuf::Message& m,
              const std::vector<std::vector<std::string>>& fields) {
  if (o.output == "json") {
    PrintJson(m);
    return;
  }
  PrintTable({{"FIELD", "VALUE"}, fields}, o.output);
}

std::string ProgressBar(int64_t done, int64_t total) {
  constexpr int kWidth = 30;
  const int filled = total > 0 ? static_cast<int>(kWidth * std::min(done, total) / total) : 0;
  return absl::StrCat("[", std::string(filled, '#'), std::string(kWidth - filled, '-'), "]");
}

std::string Bool(bool b) { return b ? "yes" : "no"; }

std::string Duration(int64_t s) {
  if (s > 0 && s % 86400 == 0) return absl::StrCat(s / 86400, "d");
  if (s > 0 && s % 3600 == 0) return absl::StrCat(s / 3600, "h");
  if (s > 0 && s % 60 == 0) return absl::StrCat(s / 60, "m");
  return absl::StrCat(s, "s");
}

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

}  // namespace strata::ctl
