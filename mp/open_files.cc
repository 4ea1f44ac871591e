#include "mp/open_files.h"

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>

#include "grpc/support/log.h"

namespace strata::mp {
namespace {

constexpr int64_t kMinFdReserve = 512;

std::atomic<bool> g_accept_failed{false};

void GrpcLog(gpr_log_func_args* args) {
  if (std::strstr(args->message, "Failed accept4") != nullptr) g_accept_failed = true;
  std::fprintf(stderr, "%s %s:%d] %s\n", gpr_log_severity_string(args->severity), args->file,
               args->line, args->message);
}

}  // namespace

int64_t RaiseOpenFileLimit() {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  rlim_t target = rl.rlim_max;
  if (target == RLIM_INFINITY) {  // setrlimit refuses more than fs.nr_open
    target = 1 << 20;
    if (FILE* f = std::fopen("/proc/sys/fs/nr_open", "r")) {
      unsigned long n = 0;
      if (std::fscanf(f, "%lu", &n) == 1 && n > 0) target = n;
      std::fclose(f);
    }
  }
  if (rl.rlim_cur < target) {
    rlimit raised = rl;
    raised.rlim_cur = target;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  return rl.rlim_cur == RLIM_INFINITY ? int64_t{1} << 20 : static_cast<int64_t>(rl.rlim_cur);
}

int64_t MaxNudgeClients(int64_t open_files) {
  const int64_t reserve = std::min(std::max(kMinFdReserve, open_files / 8), open_files / 4);
  return open_files - reserve;
}

void WatchGrpcLog() { gpr_set_log_function(GrpcLog); }

bool AcceptFailed() { return g_accept_failed.load(); }

}  // namespace strata::mp
