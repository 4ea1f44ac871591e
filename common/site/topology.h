#pragma once

// Hierarchy rules checked when a child site attaches to its parent
// (Configuration Manager's placement rules): a secondary's parent is a
// primary, a primary's parent is a CAS, a CAS has no parent, site codes are
// unique in the hierarchy, and the child's certificate names the site it claims.

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "strata/v1/site_link.pb.h"

namespace strata::site {

std::string SiteTypeName(v1::SiteType type);  // "cas", "primary", "secondary"
v1::SiteType SiteTypeFromName(std::string_view name);
std::string SiteTypeLongName(v1::SiteType type);  // "central administration site", ...

struct AttachCandidate {
  std::string code;
  v1::SiteType type = v1::SITE_TYPE_UNSPECIFIED;
  std::string cert_role;  // from the verified client certificate
  std::string cert_name;
};

// What the parent's sites table says about the claimed code, if anything.
struct KnownSite {
  std::string code;
  v1::SiteType type = v1::SITE_TYPE_UNSPECIFIED;
  std::string parent;
};

// OK, or the refusal: PermissionDenied (certificate), InvalidArgument (bad
// code), FailedPrecondition (placement), AlreadyExists (code taken).
absl::Status CheckAttach(const std::string& parent_code, v1::SiteType parent_type,
                         const AttachCandidate& child, const std::optional<KnownSite>& known);

}  // namespace strata::site
