#pragma once

// stratactl's connection to a provider: the configuration (file, env,
// flags), one channel over mutual TLS, calls with a deadline whose errors
// are printed and turned into exit codes, and listings page by page.

#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "strata/v1/admin/common.pb.h"

namespace strata::ctl {

// Exit codes: 0 ok, 1 refused or failed (the message says why), 2 usage,
// 3 permission denied, 4 not found, 5 server unavailable.
inline constexpr int kOk = 0;
inline constexpr int kFailed = 1;
inline constexpr int kUsage = 2;
inline constexpr int kDenied = 3;
inline constexpr int kNotFound = 4;
inline constexpr int kUnavailable = 5;

// Options every command may use; set from the command line.
struct Options {
  std::string config, server, ca, cert, key, output = "table";
  int timeout_s = 30;
  // Listings (get)
  std::string filter, sort_by, page_token;
  int limit = 0;
  bool all_pages = false;
};

int ExitFor(const grpc::Status& s);
const char* CodeName(grpc::StatusCode c);

// Under a query error ("query: character N: ..."), the query and a caret
// under character N. `queries` are the queries sent, in order (a rule's
// error names it "query-K").
void PointAt(const std::string& error, const std::vector<std::string>& queries);

class Client {
 public:
  explicit Client(const Options& o) : o_(o) {}

  // Reads the configuration and makes the channel; kUsage (said why) if it
  // cannot.
  int Connect();

  // One call: `method` of the service whose stub is `Stub`. Prints the error,
  // if any, and returns its exit code. `extra`: time the call needs beyond
  // --timeout (work proportional to its size).
  template <typename Stub, typename Req, typename Resp>
  int Call(grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*), const Req& req,
           Resp* resp, std::chrono::seconds extra = std::chrono::seconds(0)) {
    Stub stub(channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(o_.timeout_s) + extra);
    grpc::Status s = (stub.*method)(&ctx, req, resp);
    return Report(s);
  }

  // The listing flags as a request.
  v1::ListRequest List() const;

  // Fetches every page (--all) or one, merging into `out`.
  template <typename Stub, typename Resp>
  int ListAll(grpc::Status (Stub::*method)(grpc::ClientContext*, const v1::ListRequest&, Resp*),
              Resp* out) {
    v1::ListRequest req = List();
    while (true) {
      Resp page;
      if (int rc = Call(method, req, &page); rc != kOk) return rc;
      std::string next = page.next_page_token();
      page.clear_next_page_token();
      out->MergeFrom(page);
      out->set_next_page_token(next);
      if (!o_.all_pages || next.empty()) return kOk;
      req.set_page_token(next);
    }
  }

  const Options& options() const { return o_; }
  const std::string& last_error() const { return last_error_; }
  // For calls Call() does not cover (client streams).
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  // Prints a call's error, if any, and returns its exit code.
  int Report(const grpc::Status& s);

 private:
  const Options& o_;
  std::shared_ptr<grpc::Channel> channel_;
  std::string server_;
  std::string last_error_;
};

}  // namespace strata::ctl
