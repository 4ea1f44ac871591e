#pragma once

// The site server's side of its management points (service SiteClients):
// registration (the site's issuing CA signs client certificates), client
// authorization lookups (with each client's custom client settings), and
// one stream per MP that carries the site bundle (client settings,
// boundaries, site systems) and changes of clients' custom settings down,
// and client data up.
// Client data is applied by IngestReports and acknowledged once committed.
// Each MP is recorded in site_systems (version, online or offline, clients
// it holds), and told at once of clients an administrator approved or
// blocked (client_decisions). Runbook workers' exchanges are served here
// and their jobs dispatched by a RunbookDispatcher (runbook_dispatch.h).

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "common/replication/link_session.h"
#include "strata/v1/client.grpc.pb.h"
#include "strata/v1/config.pb.h"
#include "strata/v1/site_link.pb.h"

namespace strata::site {

struct ClientServiceOptions {
  v1::SiteServerConfig config;
  // The primary that owns this site's clients: the site itself at a
  // primary, the parent at a secondary ("" while not yet known).
  std::function<std::string()> owner_site;
  replication::ChangeNotifier* notifier = nullptr;
};

class ClientService final : public v1::SiteClients::Service {
 public:
  explicit ClientService(ClientServiceOptions options);
  ~ClientService() override;

  // Loads the issuing CA (if configured) and starts the bundle thread.
  absl::Status Start();
  void Shutdown();

  grpc::Status Register(grpc::ServerContext* context, const v1::RegisterRequest* request,
                        v1::RegisterResponse* response) override;
  grpc::Status LookupClients(grpc::ServerContext* context, const v1::ClientLookupRequest* request,
                             v1::ClientLookupResponse* response) override;
  grpc::Status Connect(grpc::ServerContext* context,
                       grpc::ServerReaderWriter<v1::MpDown, v1::MpUp>* stream) override;
  grpc::Status GetContentManifest(grpc::ServerContext* context,
                                  const v1::ContentManifestRequest* request,
                                  v1::ContentManifestResponse* response) override;
  grpc::Status RunbookWork(grpc::ServerContext* context, const v1::RunbookWorkRequest* request,
                           v1::RunbookWorkResponse* response) override;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata::site
