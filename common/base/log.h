#pragma once

// Structured logging: one line per event, `key=value` fields, to stderr.
//   LogInfo("link.attached", {{"peer", "P01"}, {"lag", 3}});
// prints
//   2026-11-21T05:40:00.123Z INFO link.attached peer=P01 lag=3
// Values with spaces, quotes or '=' are quoted. Thread-safe.

#include <initializer_list>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace strata {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

struct LogField {
  LogField(std::string_view k, std::string_view v) : key(k), value(v) {}
  LogField(std::string_view k, const char* v) : key(k), value(v) {}
  LogField(std::string_view k, absl::string_view v) : key(k), value(v.data(), v.size()) {}
  LogField(std::string_view k, const std::string& v) : key(k), value(v) {}
  LogField(std::string_view k, int64_t v) : key(k), value(std::to_string(v)) {}
  LogField(std::string_view k, int v) : key(k), value(std::to_string(v)) {}
  LogField(std::string_view k, uint64_t v) : key(k), value(std::to_string(v)) {}
  LogField(std::string_view k, double v);
  LogField(std::string_view k, bool v) : key(k), value(v ? "true" : "false") {}
  LogField(std::string_view k, const absl::Status& s) : key(k), value(s.ToString()) {}
  std::string key;
  std::string value;
};

void SetLogLevel(LogLevel level);
// Prefix for every line (e.g. the site code), so interleaved logs stay readable.
void SetLogComponent(std::string_view component);
void Log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields = {});
// Formats the line Log() would print, without the timestamp (for tests).
std::string FormatLogLine(LogLevel level, std::string_view event,
                          std::initializer_list<LogField> fields);

inline void LogInfo(std::string_view e, std::initializer_list<LogField> f = {}) {
  Log(LogLevel::kInfo, e, f);
}
inline void LogWarning(std::string_view e, std::initializer_list<LogField> f = {}) {
  Log(LogLevel::kWarning, e, f);
}
inline void LogError(std::string_view e, std::initializer_list<LogField> f = {}) {
  Log(LogLevel::kError, e, f);
}
inline void LogDebug(std::string_view e, std::initializer_list<LogField> f = {}) {
  Log(LogLevel::kDebug, e, f);
}

}  // namespace strata
