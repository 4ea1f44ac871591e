#pragma once

// Open files of a management point: each held agent connection is one. The
// MP raises its soft limit to the hard one and admits notification streams
// only up to the limit less a reserve (for short calls, the spool, the site
// link, and above all agents' gRPC calls: an agent holds its nudge channel
// always and a gRPC connection while it has work). gRPC 1.51 stops
// accepting connections for good after one accept()
// fails with EMFILE ("Failed accept4: Too many open files"); WatchGrpcLog()
// notices that line so the MP can stop (exit 1) for its supervisor to
// restart it.

#include <cstdint>

namespace strata::mp {

// Raises the soft RLIMIT_NOFILE to the hard one; returns the limit.
int64_t RaiseOpenFileLimit();

// Nudge channels to admit under `open_files`: all but a reserve for the
// agents' gRPC calls, the spool and the site link: an eighth of the limit,
// at least 512, at most a quarter (a small limit).
int64_t MaxNudgeClients(int64_t open_files);

// Routes gRPC's log lines through a function that prints them as gRPC
// would and remembers a failed accept(). Process-wide; call once.
void WatchGrpcLog();
// Whether gRPC reported a failed accept() since WatchGrpcLog().
bool AcceptFailed();

}  // namespace strata::mp
