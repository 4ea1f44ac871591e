#pragma once

// A resource of the admin API: one gRPC service (proto/strata/v1/admin/),
// served by one file in provider/resources/, declaring the permissions its
// calls check. The provider serves every resource in the registry
// (provider/resources/registry.cc); roles grant the permissions resources
// declare. docs/adding-a-resource.md is the recipe.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "grpcpp/channel.h"
#include "grpcpp/impl/service_type.h"
#include "provider/core.h"
#include "strata/v1/config.pb.h"

namespace strata::provider {

// What a resource's service is made with.
struct ResourceContext {
  CallCore* core = nullptr;
  const v1::ProviderConfig* config = nullptr;
  std::string site;       // this site's code
  std::string site_type;  // cas or primary
  // To the site server (site_address), for live state; null without one.
  std::shared_ptr<grpc::Channel> site_channel;
};

struct Resource {
  std::string name;  // as the registry and logs name it, e.g. "boundaries"
  std::vector<Permission> permissions;
  std::function<std::unique_ptr<grpc::Service>(const ResourceContext&)> make;
};

// Every resource, in the registry's order.
const std::vector<Resource>& Resources();

// Every permission a security role can grant: the resources' declarations.
const std::vector<std::string>& KnownPermissions();

}  // namespace strata::provider
