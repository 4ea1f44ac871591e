#pragma once

// Simulated agents speaking the real protocol (mutual TLS, real certificates
// from registration) with realistic, varied inventories: used by the client
// simulator binary, the MP benchmark and the integration tests.

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "strata/v1/client.grpc.pb.h"

namespace strata::sim {

// A channel presenting a certificate held in memory.
absl::StatusOr<std::shared_ptr<grpc::Channel>> ChannelWithPem(const std::string& address,
                                                              const std::string& ca_pem,
                                                              const std::string& cert_pem,
                                                              const std::string& key_pem);

// A fixed universe of packages; each client installs a random subset.
class PackageUniverse {
 public:
  explicit PackageUniverse(int size = 3000, uint64_t seed = 42);
  // `count` distinct packages (name, version, arch) for a client.
  std::vector<v1::SoftwareItem> Pick(std::mt19937_64& rng, int count) const;
  const v1::SoftwareItem& at(size_t i) const { return items_[i]; }
  size_t size() const { return items_.size(); }

 private:
  std::vector<v1::SoftwareItem> items_;
};

class SimClient {
 public:
  // Registers through the MP at `address` (no client certificate).
  static absl::StatusOr<std::unique_ptr<SimClient>> Register(const std::string& address,
                                                             const std::string& ca_pem,
                                                             const std::string& token,
                                                             const std::string& hardware_id,
                                                             const std::string& hostname);

  const std::string& id() const { return id_; }
  v1::ManagementPoint::Stub& stub() { return *stub_; }
  std::shared_ptr<grpc::Channel> channel() { return channel_; }

  // A full inventory with `packages` packages, as the next report.
  v1::ClientReport NextFull(const PackageUniverse& universe, std::mt19937_64& rng, int packages);
  // A delta changing `changes` packages (half removed, half added/upgraded).
  v1::ClientReport NextDelta(const PackageUniverse& universe, std::mt19937_64& rng, int changes);
  v1::ClientReport NextHeartbeat();

  // Sends reports (in order); OK once the MP has acknowledged them.
  absl::Status Send(const std::vector<v1::ClientReport>& reports, int timeout_s = 60);
  // Not-modified policy check (or a fresh one when `version` is stale).
  absl::StatusOr<v1::PolicyResponse> Policy(const std::string& version);

  int64_t last_seq() const { return seq_; }
  // A fresh connection (after the MP went away), as the agent dials anew.
  absl::Status Reconnect();

 private:
  std::string address_, ca_pem_, cert_pem_, key_pem_;
  std::string id_;
  std::string hostname_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ManagementPoint::Stub> stub_;
  int64_t seq_ = 0;
  int64_t inventory_seq_ = 0;
  std::vector<v1::SoftwareItem> installed_;
};

}  // namespace strata::sim
