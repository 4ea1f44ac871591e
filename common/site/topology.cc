#include "common/site/topology.h"

#include "absl/strings/str_cat.h"
#include "common/base/config.h"

namespace strata::site {

std::string SiteTypeName(v1::SiteType type) {
  switch (type) {
    case v1::SITE_TYPE_CAS:
      return "cas";
    case v1::SITE_TYPE_PRIMARY:
      return "primary";
    case v1::SITE_TYPE_SECONDARY:
      return "secondary";
    default:
      return "unknown";
  }
}

v1::SiteType SiteTypeFromName(std::string_view name) {
  if (name == "cas") return v1::SITE_TYPE_CAS;
  if (name == "primary") return v1::SITE_TYPE_PRIMARY;
  if (name == "secondary") return v1::SITE_TYPE_SECONDARY;
  return v1::SITE_TYPE_UNSPECIFIED;
}

std::string SiteTypeLongName(v1::SiteType type) {
  switch (type) {
    case v1::SITE_TYPE_CAS:
      return "central administration site";
    case v1::SITE_TYPE_PRIMARY:
      return "primary site";
    case v1::SITE_TYPE_SECONDARY:
      return "secondary site";
    default:
      return "site of unknown type";
  }
}

absl::Status CheckAttach(const std::string& parent_code, v1::SiteType parent_type,
                         const AttachCandidate& child, const std::optional<KnownSite>& known) {
  if (child.cert_role != "site") {
    return absl::PermissionDeniedError(absl::StrCat("the client certificate is for a ",
                                                    child.cert_role, " (", child.cert_name,
                                                    "), not a site server"));
  }
  if (child.cert_name != child.code) {
    return absl::PermissionDeniedError(absl::StrCat("the client certificate names site ",
                                                    child.cert_name,
                                                    ", but the child claims to be ", child.code));
  }
  if (absl::Status s = ValidateSiteCode(child.code); !s.ok()) return s;
  switch (child.type) {
    case v1::SITE_TYPE_CAS:
      return absl::FailedPreconditionError(absl::StrCat(
          "site ", child.code, " is a central administration site, which has no parent"));
    case v1::SITE_TYPE_SECONDARY:
      if (parent_type != v1::SITE_TYPE_PRIMARY) {
        return absl::FailedPreconditionError(
            absl::StrCat("secondary site ", child.code, " cannot attach to ", parent_code,
                         ": a secondary site's parent must be a primary site, and ", parent_code,
                         " is a ", SiteTypeLongName(parent_type)));
      }
      break;
    case v1::SITE_TYPE_PRIMARY:
      if (parent_type != v1::SITE_TYPE_CAS) {
        return absl::FailedPreconditionError(
            absl::StrCat("primary site ", child.code, " cannot attach to ", parent_code,
                         ": a primary site's parent must be a central administration site, and ",
                         parent_code, " is a ", SiteTypeLongName(parent_type)));
      }
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("site ", child.code, " did not say its type"));
  }
  if (child.code == parent_code) {
    return absl::AlreadyExistsError(
        absl::StrCat("site code ", child.code, " is already used by the parent site itself"));
  }
  if (known && (known->type != child.type || known->parent != parent_code)) {
    return absl::AlreadyExistsError(absl::StrCat(
        "site code ", child.code, " is already used in this hierarchy by the ",
        SiteTypeLongName(known->type),
        known->parent.empty() ? std::string(" at the top") : absl::StrCat(" under ", known->parent),
        "; site codes must be unique"));
  }
  return absl::OkStatus();
}

}  // namespace strata::site
