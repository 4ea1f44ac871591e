#include "bench/clientsim/sim_client.h"

#include "grpc/grpc_security.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/hlc.h"
#include "common/base/status.h"

namespace strata::sim {

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

std::vector<uint32_t> PackageUniverse::Pick(std::mt19937_64& rng, int count) const {
  std::set<uint32_t> chosen;
  count = std::min<int>(count, static_cast<int>(items_.size()));
  while (static_cast<int>(chosen.size()) < count) {
    chosen.insert(static_cast<uint32_t>(rng() % items_.size()));
  }
  return {chosen.begin(), chosen.end()};
}

absl::StatusOr<Enrollment> MakeEnrollment(const std::string& token, const std::string& hardware_id,
                                          const std::string& hostname) {
  Enrollment e;
  ASSIGN_OR_RETURN(e.key, MakeKeyAndCsr(hostname));
  e.request.set_csr_pem(e.key.csr_pem);
  e.request.set_hardware_id(hardware_id);
  e.request.set_hostname(hostname);
  e.request.set_enrollment_token(token);
  return e;
}

ChannelOptions AgentChannelOptions() {
  ChannelOptions options;
  options.own_connection = true;
  options.keepalive_ms = 60000;
  options.reconnect_max_backoff_ms = 2000;
  // As the agent: a client holds its nudge channel, and a gRPC connection
  // only while it has calls to make (an MP's open files go to the former).
  options.idle_timeout_ms = 1000;
  return options;
}

SimClient::SimClient(const std::string& address, const std::string& ca_pem,
                     const Enrollment& enrollment, const v1::RegisterResponse& registered)
    : address_(address),
      pem_{ca_pem, registered.certificate_pem(), enrollment.key.key_pem},
      id_(registered.client_id()),
      hostname_(enrollment.request.hostname()) {
  Reconnect();
}

absl::StatusOr<std::unique_ptr<SimClient>> SimClient::Register(const std::string& address,
                                                               const std::string& ca_pem,
                                                               const std::string& token,
                                                               const std::string& hardware_id,
                                                               const std::string& hostname) {
  ASSIGN_OR_RETURN(Enrollment enrollment, MakeEnrollment(token, hardware_id, hostname));
  auto stub = v1::ManagementPoint::NewStub(MakeChannel(address, ChannelPem{ca_pem, "", ""}));
  v1::RegisterResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  RETURN_IF_ERROR(FromGrpcStatus(stub->Register(&ctx, enrollment.request, &resp)));
  if (resp.state() != v1::REGISTRATION_STATE_APPROVED) {
    return absl::FailedPreconditionError(absl::StrCat("client ", resp.client_id(), " is pending"));
  }
  return std::make_unique<SimClient>(address, ca_pem, enrollment, resp);
}

void SimClient::Reconnect() {
  if (!sessions_) {
    sessions_.reset(grpc_ssl_session_cache_create_lru(1), grpc_ssl_session_cache_destroy);
  }
  ChannelOptions options = AgentChannelOptions();
  options.session_cache = sessions_.get();
  channel_ = MakeChannel(address_, pem_, options);
  stub_ = v1::ManagementPoint::NewStub(channel_);
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
  for (uint32_t i : installed_) *inv->add_software() = universe.at(i);
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
  // Removed and added sets are disjoint by (name, architecture): universe
  // names are unique, so indexes identify packages.
  std::set<uint32_t> removed;
  for (int i = 0; i < changes / 2 && !installed_.empty(); ++i) {
    size_t k = rng() % installed_.size();
    removed.insert(installed_[k]);
    installed_.erase(installed_.begin() + static_cast<std::ptrdiff_t>(k));
  }
  for (uint32_t i : removed) {
    auto* gone = inv->add_software_removed();
    gone->set_name(universe.at(i).name());
    gone->set_architecture(universe.at(i).architecture());
  }
  for (int i = 0; i < changes - changes / 2; ++i) {
    auto k = static_cast<uint32_t>(rng() % universe.size());
    if (removed.count(k)) continue;
    auto at = std::lower_bound(installed_.begin(), installed_.end(), k);
    if (at != installed_.end() && *at == k) continue;
    installed_.insert(at, k);
    *inv->add_software() = universe.at(k);
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

v1::ClientReport SimClient::NextDeploymentState(const std::string& deployment,
                                                v1::DeploymentStateKind state) {
  v1::ClientReport r;
  r.set_seq(++seq_);
  r.set_created_unix_ms(WallClockMs());
  auto* d = r.mutable_deployment();
  d->set_deployment(deployment);
  d->set_state(state);
  d->set_attempt(1);
  d->set_at_unix_ms(r.created_unix_ms());
  return r;
}

absl::Status SimClient::Send(const std::vector<v1::ClientReport>& reports, int timeout_s) {
  v1::ReportRequest req;
  for (const auto& r : reports) *req.add_reports() = r;
  v1::ReportResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_s));
  return FromGrpcStatus(stub_->Report(&ctx, req, &resp));
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

int64_t InventoryRows(const v1::ClientReport& report) {
  if (!report.has_inventory()) return 0;
  const auto& inv = report.inventory();
  int64_t rows = inv.software_size();
  if (inv.has_hardware()) {
    const auto& hw = inv.hardware();
    rows += 3 + hw.processors_size() + hw.disks_size() + hw.adapters_size();  // os, system, memory
  }
  return rows;
}

}  // namespace strata::sim
