#include "mp/site_client.h"

#include <algorithm>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/base/status.h"
#include "common/net/tls.h"
#include "strata/v1/client.grpc.pb.h"

namespace strata::mp {
namespace {

constexpr size_t kLookupBatch = 5000;

class GrpcSiteStream final : public SiteStream {
 public:
  explicit GrpcSiteStream(v1::SiteClients::Stub& stub) : rw_(stub.Connect(&ctx_)) {}
  bool Write(const v1::MpUp& m) override {
    absl::MutexLock lock(&write_mu_);
    return rw_->Write(m);
  }
  bool Read(v1::MpDown* m) override { return rw_->Read(m); }
  void Cancel() override { ctx_.TryCancel(); }
  absl::Status Finish() override { return FromGrpcStatus(rw_->Finish()); }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::MpUp, v1::MpDown>> rw_;
  absl::Mutex write_mu_;  // gRPC allows one write at a time
};

class GrpcSiteClient final : public SiteClient {
 public:
  explicit GrpcSiteClient(std::shared_ptr<grpc::Channel> channel)
      : stub_(v1::SiteClients::NewStub(channel)) {}

  void Register(const v1::RegisterRequest* req, v1::RegisterResponse* resp,
                std::function<void(grpc::Status)> done) override {
    auto* ctx = new grpc::ClientContext;
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    stub_->async()->Register(ctx, req, resp, [ctx, done = std::move(done)](grpc::Status s) {
      delete ctx;
      done(std::move(s));
    });
  }

  absl::StatusOr<Allowed> LookupClients(const std::vector<std::string>& ids) override {
    Allowed out;
    for (size_t i = 0; i < ids.size(); i += kLookupBatch) {
      v1::ClientLookupRequest req;
      for (size_t j = i; j < std::min(ids.size(), i + kLookupBatch); ++j) {
        req.add_client_ids(ids[j]);
      }
      v1::ClientLookupResponse resp;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      RETURN_IF_ERROR(FromGrpcStatus(stub_->LookupClients(&ctx, req, &resp)));
      for (const auto& id : resp.allowed()) out[id];
      for (const auto& a : resp.assignments()) {
        auto it = out.find(a.client_id());
        if (it == out.end()) continue;
        it->second = policy::FromProto(a);
      }
    }
    return out;
  }

  std::unique_ptr<SiteStream> Connect() override {
    return std::make_unique<GrpcSiteStream>(*stub_);
  }

  void GetContentManifest(const v1::ContentManifestRequest* req, v1::ContentManifestResponse* resp,
                          std::function<void(grpc::Status)> done) override {
    auto* ctx = new grpc::ClientContext;
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    stub_->async()->GetContentManifest(ctx, req, resp,
                                       [ctx, done = std::move(done)](grpc::Status s) {
                                         delete ctx;
                                         done(std::move(s));
                                       });
  }

  void RunbookWork(const v1::RunbookWorkRequest* req, v1::RunbookWorkResponse* resp,
                   std::function<void(grpc::Status)> done) override {
    auto* ctx = new grpc::ClientContext;
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    stub_->async()->RunbookWork(ctx, req, resp, [ctx, done = std::move(done)](grpc::Status s) {
      delete ctx;
      done(std::move(s));
    });
  }

 private:
  std::unique_ptr<v1::SiteClients::Stub> stub_;
};

}  // namespace

std::unique_ptr<SiteClient> MakeSiteClient(std::shared_ptr<grpc::Channel> channel) {
  return std::make_unique<GrpcSiteClient>(std::move(channel));
}

}  // namespace strata::mp
