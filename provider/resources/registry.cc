// The registry of the admin API's resources: the provider serves each one,
// and security roles grant the permissions they declare. A new resource is
// one line here (and its declaration above it); see
// docs/adding-a-resource.md.

#include <algorithm>

#include "provider/resource.h"

namespace strata::provider {

Resource SitesResource();
Resource SiteSystemsResource();
Resource LinksResource();
Resource DevicesResource();
Resource ClientApprovalResource();
Resource EnrollmentTokensResource();
Resource CollectionsResource();
Resource ClientSettingsResource();
Resource BoundariesResource();
Resource RolesResource();
Resource AdministratorsResource();
Resource AuditResource();
Resource ReportsResource();
Resource PackagesResource();
Resource DistributionPointsResource();
Resource ContentLinksResource();
Resource ApplicationsResource();
Resource DeploymentsResource();
Resource MaintenanceWindowsResource();
Resource RolloutsResource();
Resource ScriptsResource();
Resource ScriptRunsResource();
Resource LiveQueriesResource();
Resource RunbooksResource();
Resource RunbookWorkerGroupsResource();
Resource RunbookJobsResource();
Resource RunbookSchedulesResource();
Resource RunbookAssetsResource();
Resource HierarchySettingsResource();

const std::vector<Resource>& Resources() {
  static const auto* resources = new std::vector<Resource>{
      SitesResource(),
      SiteSystemsResource(),
      LinksResource(),
      DevicesResource(),
      ClientApprovalResource(),
      EnrollmentTokensResource(),
      CollectionsResource(),
      ClientSettingsResource(),
      BoundariesResource(),
      RolesResource(),
      AdministratorsResource(),
      AuditResource(),
      ReportsResource(),
      PackagesResource(),
      DistributionPointsResource(),
      ContentLinksResource(),
      ApplicationsResource(),
      DeploymentsResource(),
      MaintenanceWindowsResource(),
      RolloutsResource(),
      ScriptsResource(),
      ScriptRunsResource(),
      LiveQueriesResource(),
      RunbooksResource(),
      RunbookWorkerGroupsResource(),
      RunbookJobsResource(),
      RunbookSchedulesResource(),
      RunbookAssetsResource(),
      HierarchySettingsResource(),
  };
  return *resources;
}

const std::vector<std::string>& KnownPermissions() {
  static const auto* known = [] {
    auto* out = new std::vector<std::string>;
    for (const Resource& r : Resources()) {
      for (const Permission& p : r.permissions) out->push_back(p.name);
    }
    return out;
  }();
  return *known;
}

}  // namespace strata::provider
