// stratactl create|update asset NAME (--value V [--encrypted] | --user U
// --secret-file F | --certificate F --key F), get assets, describe asset,
// delete asset. Secrets are read from files (or - for standard input), never
// from the command line, and never shown.

#include <iostream>
#include <iterator>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "provider/stratactl/command.h"
#include "provider/stratactl/nouns/scripts.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/runbook_assets.grpc.pb.h"

namespace strata::ctl {
namespace {

using Stub = v1::RunbookAssetService::Stub;

// A file's text, "-" standard input; a secret file's last newline dropped.
bool ReadSecret(const std::string& path, std::string* out) {
  if (path == "-") {
    out->assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else if (!ReadWhole(path, out)) {
    return false;
  }
  if (!out->empty() && out->back() == '\n') out->pop_back();
  return true;
}

Action Save(CLI::App* cmd, bool create) {
  auto a = std::make_shared<v1::RunbookAssetInfo>();
  auto secret_file = std::make_shared<std::string>();
  auto cert_file = std::make_shared<std::string>();
  auto key_file = std::make_shared<std::string>();
  auto value = std::make_shared<std::string>();
  auto value_file = std::make_shared<std::string>();
  auto encrypted = std::make_shared<bool>(false);
  auto scopes = std::make_shared<std::vector<std::string>>();
  cmd->add_option("name", *a->mutable_name(),
                  "The asset's name: [a-z0-9_], a job sees it as $STRATA_ASSET_<name>")
      ->required();
  cmd->add_option("--value", *value, "A variable's value");
  cmd->add_option("--value-file", *value_file,
                  "A variable's value from a file (- : standard input), e.g. an encrypted one");
  cmd->add_flag("--encrypted", *encrypted, "Encrypt the variable (never shown again)");
  cmd->add_option("--user", *a->mutable_user(), "A credential's user");
  cmd->add_option("--secret-file", *secret_file,
                  "A credential's secret, from a file (- : standard input)");
  cmd->add_option("--certificate", *cert_file, "A certificate asset's PEM certificate (a file)");
  cmd->add_option("--key", *key_file, "Its PEM private key (a file)");
  cmd->add_option("--description", *a->mutable_description(), "What it is for");
  cmd->add_option("--scope", *scopes, "Security scopes (default: Default); repeatable");
  return [=](Client& c) {
    auto fail = [](const std::string& why) {
      std::cerr << "stratactl: " << why << "\n";
      return kUsage;
    };
    const bool variable = !value->empty() || !value_file->empty();
    const bool credential = !a->user().empty() || !secret_file->empty();
    const bool certificate = !cert_file->empty() || !key_file->empty();
    if (variable + credential + certificate != 1)
      return fail(
          "give a variable (--value or --value-file), a credential (--user and "
          "--secret-file) or a certificate (--certificate and --key)");
    if (variable) {
      a->set_kind("variable");
      a->set_encrypted(*encrypted);
      if (!value_file->empty() && !ReadSecret(*value_file, a->mutable_value()))
        return fail("cannot read " + *value_file);
      if (!value->empty()) a->set_value(*value);
    } else if (credential) {
      a->set_kind("credential");
      if (a->user().empty() || secret_file->empty())
        return fail("a credential needs --user and --secret-file");
      if (!ReadSecret(*secret_file, a->mutable_secret()))
        return fail("cannot read " + *secret_file);
    } else {
      a->set_kind("certificate");
      if (!ReadWhole(*cert_file, a->mutable_certificate()) ||
          !ReadWhole(*key_file, a->mutable_private_key()))
        return fail("cannot read the --certificate and --key files");
    }
    for (const auto& x : *scopes) a->add_scopes(x);
    v1::RunbookAssetInfo out;
    if (int rc = c.Call(create ? &Stub::CreateRunbookAsset : &Stub::UpdateRunbookAsset, *a, &out))
      return rc;
    PrintDone(
        c.options(),
        absl::StrCat("asset \"", out.name(), "\" (", out.kind(),
                     out.encrypted() ? ", encrypted" : "", ") ", create ? "created" : "updated"),
        out);
    return kOk;
  };
}

void DescribeAsset(const Options& o, const v1::RunbookAssetInfo& a) {
  Describe(o, a,
           {{"name", a.name()},
            {"kind", a.kind()},
            {"encrypted", Bool(a.encrypted())},
            {"value", a.encrypted() ? "(encrypted)" : a.value()},
            {"user", a.user()},
            {"certificate", a.certificate()},
            {"description", a.description()},
            {"scopes", absl::StrJoin(a.scopes(), ", ")},
            {"by", a.created_by()},
            {"updated", a.updated_at()}});
}

}  // namespace

std::vector<Command> RunbookAssetCommands() {
  const std::string names = "get assets --all";
  return {
      {"get",
       "assets",
       {"asset"},
       "Runbook assets (secrets are never shown)",
       [](CLI::App*) -> Action {
         return [](Client& c) {
           v1::RunbookAssetList l;
           if (int rc = c.ListAll(&Stub::ListRunbookAssets, &l)) return rc;
           Table t{{"NAME", "KIND", "ENCRYPTED", "USER", "UPDATED"}, {}};
           for (const auto& a : l.assets())
             t.rows.push_back({a.name(), a.kind(), Bool(a.encrypted()), a.user(), a.updated_at()});
           Show(c.options(), l, l.next_page_token(), t);
           return kOk;
         };
       }},
      {"describe",
       "asset",
       {},
       "A runbook asset (secrets are never shown)",
       OnName<Stub, v1::RunbookAssetInfo>(&Stub::GetRunbookAsset, DescribeAsset),
       names},
      {"create",
       "asset",
       {},
       "A runbook asset: a variable, a credential or a certificate",
       [](CLI::App* cmd) { return Save(cmd, true); }},
      {"update",
       "asset",
       {},
       "A runbook asset (every flag, as create)",
       [](CLI::App* cmd) { return Save(cmd, false); },
       names},
      {"delete",
       "asset",
       {},
       "A runbook asset",
       DeleteByName(&Stub::DeleteRunbookAsset, "asset"),
       names},
  };
}

}  // namespace strata::ctl
