#pragma once

// stratactl's output: tables (aligned, or CSV with -o csv), JSON (-o json,
// the API's own messages), and the words admins read (durations, yes/no).

#include <string>
#include <vector>

#include "google/protobuf/message.h"
#include "provider/stratactl/client.h"

namespace strata::ctl {

struct Table {
  std::vector<std::string> headers;
  std::vector<std::vector<std::string>> rows;
};

// One CSV line (fields quoted where they need it), without its newline.
std::string CsvLine(const std::vector<std::string>& cells);

// As a table, or CSV ("csv").
void PrintTable(const Table& t, const std::string& format);
void PrintJson(const google::protobuf::Message& m);

// A listing: JSON as is, otherwise `table`; then, on a table, where the
// next page starts.
void Show(const Options& o, const google::protobuf::Message& resp, const std::string& next_page,
          const Table& table);

// A change done: `what` (table and CSV) or the answer (JSON).
void PrintDone(const Options& o, const std::string& what, const google::protobuf::Message& m);

// A two-column table of one object (FIELD, VALUE), or its JSON.
void Describe(const Options& o, const google::protobuf::Message& m,
              const std::vector<std::vector<std::string>>& fields);

std::string Bool(bool b);

// "[#########---------------------]": `done` of `total`, 30 wide.
std::string ProgressBar(int64_t done, int64_t total);

// Seconds as an admin reads them: 90s, 5m, 1h, 7d (exact units only).
std::string Duration(int64_t s);
// "300", "300s", "5m", "1h", "7d" -> seconds; -1 if not one of those.
int64_t ParseDuration(const std::string& text);

}  // namespace strata::ctl
