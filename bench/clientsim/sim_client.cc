#include "bench/clientsim/sim_client.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/hlc.h"
#include "common/base/status.h"
#include "common/net/pki.h"
#include "common/net/tls.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace strata::sim {

absl::StatusOr<std::shared_ptr<grpc::Channel>> ChannelWithPem(const std::string& address,
                                                              const std::string& ca_pem,
                                                              const std::string& cert_pem,
                                                              const std::string& key_pem) {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ca_pem;
  ssl.pem_cert_chain = cert_pem;
  ssl.pem_private_key = key_pem;
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("localhost");
  args.SetMaxReceiveMessageSize(16 << 20);
  args.SetMaxSendMessageSize(16 << 20);
  // Each simulated client is its own connection, as real agents are.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // Reconnect soon after an MP restart, as the agent (which dials anew each
  // cycle) does.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
  return grpc::CreateCustomChannel(address, grpc::SslCredentials(ssl), args);
}

PackageUniverse::PackageUniverse(int size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  static const char* kArch[] = {"amd64", "amd64", "amd64", "all", "i386"};
  static const char* kPrefix[] = {"lib", "python3-", "node-", "golang-", "", "", "perl-", "fonts-"};
  for (int i = 0; i < size; ++i) {
    v1::SoftwareItem s;
    s.set_name(absl::StrCat(kPrefix[rng() % 8], "pkg", i));
    s.set_version(absl::StrFormat("%d.%d.%d-%d", rng() % 5, rng() % 20, rng() % 30, rng() % 4 + 1));
    s.set_architecture(kArch[rng() % 5]);
    s.set_source("dpkg");
    s.set_install_time_unix(1700000000 + static_cast<int64_t>(rng() % 30000000));
    items_.push_back(std::move(s));
  }
}

std::vector<v1::SoftwareItem> PackageUniverse::Pick(std::mt19937_64& rng, int count) const {
  std::set<size_t> chosen;
  count = std::min<int>(count, static_cast<int>(items_.size()));
  while (static_cast<int>(chosen.size()) < count) chosen.insert(rng() % items_.size());
  std::vector<v1::SoftwareItem> out;
  for (size_t i : chosen) out.push_back(items_[i]);
  return out;
}

absl::StatusOr<std::unique_ptr<SimClient>> SimClient::Register(const std::string& address,
                                                               const std::string& ca_pem,
                                                               const std::string& token,
                                                               const std::string& hardware_id,
                                                               const std::string& hostname) {
  ASSIGN_OR_RETURN(KeyAndCsr key, MakeKeyAndCsr(hostname));
  ASSIGN_OR_RETURN(auto anon, ChannelWithPem(address, ca_pem, "", ""));
  auto stub = v1::ManagementPoint::NewStub(anon);
  v1::RegisterRequest req;
  req.set_csr_pem(key.csr_pem);
  req.set_hardware_id(hardware_id);
  req.set_hostname(hostname);
  req.set_enrollment_token(token);
  v1::RegisterResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  RETURN_IF_ERROR(FromGrpcStatus(stub->Register(&ctx, req, &resp)));
  if (resp.state() != v1::REGISTRATION_STATE_APPROVED) {
    return absl::FailedPreconditionError(absl::StrCat("client ", resp.client_id(), " is pending"));
  }
  auto client = std::unique_ptr<SimClient>(new SimClient());
  client->id_ = resp.client_id();
  client->hostname_ = hostname;
  client->address_ = address;
  client->ca_pem_ = ca_pem;
  client->cert_pem_ = resp.certificate_pem();
  client->key_pem_ = key.key_pem;
  RETURN_IF_ERROR(client->Reconnect());
  return client;
}

absl::Status SimClient::Reconnect() {
  ASSIGN_OR_RETURN(channel_, ChannelWithPem(address_, ca_pem_, cert_pem_, key_pem_));
  stub_ = v1::ManagementPoint::NewStub(channel_);
  return absl::OkStatus();
}

v1::ClientReport SimClient::NextFull(const PackageUniverse& universe, std::mt19937_64& rng,
                                     int packages) {
  installed_ = universe.Pick(rng, packages);
  v1::ClientReport r;
  r.set_seq(++seq_);
  r.set_created_unix_ms(WallClockMs());
  auto* inv = r.mutable_inventory();
  inv->set_full(true);
  inv->set_inventory_seq(inventory_seq_ = seq_);
  auto* hw = inv->mutable_hardware();
  hw->mutable_os()->set_name("Debian GNU/Linux");
  hw->mutable_os()->set_version(rng() % 3 == 0 ? "11" : "12");
  hw->mutable_os()->set_pretty_name("Debian GNU/Linux 12 (bookworm)");
  hw->mutable_os()->set_kernel("6.1.0-" + std::to_string(rng() % 30) + "-amd64");
  hw->mutable_os()->set_architecture("x86_64");
  hw->mutable_os()->set_hostname(hostname_);
  auto* cpu = hw->add_processors();
  cpu->set_model("Intel(R) Xeon(R) CPU E5-2690 v4 @ 2.60GHz");
  cpu->set_sockets(1);
  cpu->set_cores(static_cast<int>(2 << (rng() % 4)));
  cpu->set_threads(cpu->cores() * 2);
  hw->mutable_system()->set_vendor("QEMU");
  hw->mutable_system()->set_product("Standard PC (Q35 + ICH9, 2009)");
  hw->mutable_system()->set_virtualization("kvm");
  hw->mutable_system()->set_memory_total_kb(int64_t{1024 * 1024} << (rng() % 6));
  auto* disk = hw->add_disks();
  disk->set_name("vda");
  disk->set_size_bytes(int64_t{20} << (30 + rng() % 4));
  auto* fs = hw->add_disks();
  fs->set_name("/");
  fs->set_is_filesystem(true);
  fs->set_mount_point("/");
  fs->set_fs_type("ext4");
  fs->set_size_bytes(disk->size_bytes() - 1000000);
  fs->set_free_bytes(fs->size_bytes() / 3);
  auto* nic = hw->add_adapters();
  nic->set_name("eth0");
  nic->set_mac(absl::StrFormat("52:54:00:%02x:%02x:%02x", rng() % 256, rng() % 256, rng() % 256));
  nic->add_ipv4(absl::StrFormat("10.%d.%d.%d/16", rng() % 4, rng() % 256, rng() % 254 + 1));
  nic->set_speed_mbps(1000);
  for (const auto& s : installed_) *inv->add_software() = s;
  return r;
}

v1::ClientReport SimClient::NextDelta(const PackageUniverse& universe, std::mt19937_64& rng,
                                      int changes) {
  v1::ClientReport r;
  r.set_seq(++seq_);
  r.set_created_unix_ms(WallClockMs());
  auto* inv = r.mutable_inventory();
  inv->set_full(false);
  inv->set_base_seq(inventory_seq_);
  inv->set_inventory_seq(inventory_seq_ = seq_);
  std::set<std::pair<std::string, std::string>> have;
  for (const auto& s : installed_) have.insert({s.name(), s.architecture()});
  for (int i = 0; i < changes / 2 && !installed_.empty(); ++i) {
    size_t k = rng() % installed_.size();
    auto* gone = inv->add_software_removed();
    gone->set_name(installed_[k].name());
    gone->set_architecture(installed_[k].architecture());
    have.erase({installed_[k].name(), installed_[k].architecture()});
    installed_.erase(installed_.begin() + k);
  }
  for (int i = 0; i < changes - changes / 2; ++i) {
    const auto& s = universe.at(rng() % universe.size());
    if (!have.insert({s.name(), s.architecture()}).second) continue;
    bool removed_now = false;
    for (const auto& g : inv->software_removed()) {
      removed_now |= g.name() == s.name() && g.architecture() == s.architecture();
    }
    if (removed_now) continue;
    installed_.push_back(s);
    *inv->add_software() = s;
  }
  return r;
}

v1::ClientReport SimClient::NextHeartbeat() {
  v1::ClientReport r;
  r.set_seq(++seq_);
  r.set_created_unix_ms(WallClockMs());
  r.mutable_heartbeat()->set_hostname(hostname_);
  return r;
}

absl::Status SimClient::Send(const std::vector<v1::ClientReport>& reports, int timeout_s) {
  v1::ReportRequest req;
  for (const auto& r : reports) *req.add_reports() = r;
  v1::ReportResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_s));
  absl::Status s = FromGrpcStatus(stub_->Report(&ctx, req, &resp));
  return s;
}

absl::StatusOr<v1::PolicyResponse> SimClient::Policy(const std::string& version) {
  v1::PolicyRequest req;
  req.set_current_version(version);
  v1::PolicyResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  RETURN_IF_ERROR(FromGrpcStatus(stub_->GetPolicy(&ctx, req, &resp)));
  return resp;
}

}  // namespace strata::sim
