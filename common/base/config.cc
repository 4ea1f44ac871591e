#include "common/base/config.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"

namespace strata {
namespace {

class Collector : public google::protobuf::io::ErrorCollector {
 public:
  explicit Collector(absl::string_view source) : source_(source) {}
  void AddError(int line, int column, const std::string& message) override {
    if (!first_.empty()) return;
    first_ = absl::StrCat(source_, ":", line + 1, ":", column + 1, ": ", message);
  }
  void AddWarning(int, int, const std::string&) override {}
  const std::string& first() const { return first_; }

 private:
  std::string source_;
  std::string first_;
};

}  // namespace

absl::Status OverrideStringFields(
    google::protobuf::Message* message,
    const std::vector<std::pair<absl::string_view, std::string>>& values) {
  for (const auto& [path, value] : values) {
    if (value.empty()) continue;
    google::protobuf::Message* m = message;
    const google::protobuf::FieldDescriptor* field = nullptr;
    for (absl::string_view part : absl::StrSplit(path, '.')) {
      if (field != nullptr) {
        if (field->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE ||
            field->is_repeated()) {
          field = nullptr;
          break;
        }
        m = m->GetReflection()->MutableMessage(m, field);
      }
      field = m->GetDescriptor()->FindFieldByName(std::string(part));
      if (field == nullptr) break;
    }
    if (field == nullptr || field->is_repeated() ||
        field->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_STRING) {
      return absl::InvalidArgumentError(absl::StrCat("\"", path, "\" is not a string field of ",
                                                     message->GetDescriptor()->full_name()));
    }
    m->GetReflection()->SetString(m, field, value);
  }
  return absl::OkStatus();
}

absl::Status ParseTextProto(absl::string_view text, absl::string_view source_name,
                            google::protobuf::Message* message) {
  Collector collector(source_name);
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&collector);
  if (!parser.ParseFromString(std::string(text), message)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config ", collector.first().empty() ? std::string(source_name) : collector.first()));
  }
  return absl::OkStatus();
}

absl::Status LoadTextProtoFile(const std::string& path, google::protobuf::Message* message) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("config file ", path, " cannot be read"));
  std::ostringstream text;
  text << in.rdbuf();
  return ParseTextProto(text.str(), path, message);
}

absl::Status ValidateSiteCode(absl::string_view code) {
  bool ok = code.size() == 3;
  for (char c : code) ok = ok && ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'));
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "site code \"", code, "\" is invalid: it must be three characters, A-Z or 0-9"));
  }
  return absl::OkStatus();
}

}  // namespace strata
