#pragma once

// Simulated agents speaking the real protocol (mutual TLS, real certificates
// from registration) with realistic, varied inventories: used by the client
// simulator binary (strata-clientsim), the MP benchmark and the integration
// tests.

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/net/pki.h"
#include "common/net/tls.h"
#include "grpcpp/channel.h"
#include "strata/v1/client.grpc.pb.h"

namespace strata::sim {

// A fixed universe of packages; each client installs a random subset.
class PackageUniverse {
 public:
  explicit PackageUniverse(int size = 3000, uint64_t seed = 42);
  // `count` distinct package indexes for a client.
  std::vector<uint32_t> Pick(std::mt19937_64& rng, int count) const;
  const v1::SoftwareItem& at(size_t i) const { return items_[i]; }
  size_t size() const { return items_.size(); }

 private:
  std::vector<v1::SoftwareItem> items_;
};

// What a simulated agent sends to register (a fresh key and CSR).
struct Enrollment {
  KeyAndCsr key;
  v1::RegisterRequest request;
};
absl::StatusOr<Enrollment> MakeEnrollment(const std::string& token, const std::string& hardware_id,
                                          const std::string& hostname);

// Channel options of a simulated agent: a connection of its own, as each
// real agent has, the agent's keepalive, and released when idle for 1 s.
ChannelOptions AgentChannelOptions();

class SimClient {
 public:
  // A registered client: `registered` is the MP's answer to `enrollment`.
  SimClient(const std::string& address, const std::string& ca_pem, const Enrollment& enrollment,
            const v1::RegisterResponse& registered);

  // Registers through the MP at `address` (no client certificate).
  static absl::StatusOr<std::unique_ptr<SimClient>> Register(const std::string& address,
                                                             const std::string& ca_pem,
                                                             const std::string& token,
                                                             const std::string& hardware_id,
                                                             const std::string& hostname);

  const std::string& id() const { return id_; }
  v1::ManagementPoint::Stub& stub() { return *stub_; }
  std::shared_ptr<grpc::Channel> channel() { return channel_; }
  const ChannelPem& pem() const { return pem_; }

  // A full inventory with `packages` packages, as the next report.
  v1::ClientReport NextFull(const PackageUniverse& universe, std::mt19937_64& rng, int packages);
  // A delta changing `changes` packages (half removed, half added).
  v1::ClientReport NextDelta(const PackageUniverse& universe, std::mt19937_64& rng, int changes);
  v1::ClientReport NextHeartbeat();
  // A deployment's state, as the agent's install engine reports it.
  v1::ClientReport NextDeploymentState(const std::string& deployment,
                                       v1::DeploymentStateKind state);

  // Sends reports (in order); OK once the MP has acknowledged them.
  absl::Status Send(const std::vector<v1::ClientReport>& reports, int timeout_s = 60);
  // Not-modified policy check (or a fresh one when `version` is stale).
  absl::StatusOr<v1::PolicyResponse> Policy(const std::string& version);

  int64_t last_seq() const { return seq_; }
  int64_t inventory_seq() const { return inventory_seq_; }
  // A fresh connection (after the MP went away), as the agent dials anew.
  void Reconnect();

 private:
  std::string address_;
  ChannelPem pem_;
  std::string id_;
  std::string hostname_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ManagementPoint::Stub> stub_;
  std::shared_ptr<grpc_ssl_session_cache> sessions_;  // this client's TLS sessions
  int64_t seq_ = 0;
  int64_t inventory_seq_ = 0;
  std::vector<uint32_t> installed_;  // indexes into the universe, sorted
};

// The number of inventory rows a report puts in the site's tables (one per
// os, system, memory, processor, disk, adapter and package).
int64_t InventoryRows(const v1::ClientReport& report);

}  // namespace strata::sim
