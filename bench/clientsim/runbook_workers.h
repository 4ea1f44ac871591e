#pragma once

// Simulated runbook workers (bench/runbooks): each client exchanges
// RunbookWork with its MP as the agent's worker does, and "runs" every job
// it is given at once (a job that prints a line and exits): the next
// exchange reports it completed with its line of output. Idle, a worker
// waits for a WORK_WAITING nudge on its channel (or polls every second);
// holding or finishing jobs, it exchanges again at once. What is measured
// is the hierarchy's path, not the jobs.

#include <string>
#include <vector>

#include "bench/clientsim/nudge_fleet.h"
#include "bench/clientsim/sim_client.h"

namespace strata::sim {

// Runs every client in `clients` as a worker with `slots` job slots until
// `seconds` pass with no job given to any of them after the first one (or
// `seconds` in all when none ever comes). One result line:
// "runbooks started=N completed=N exchanges=N failed=N seconds=S".
std::string RunWorkers(const std::vector<SimClient*>& clients, NudgeFleet* fleet, int seconds,
                       int slots);

}  // namespace strata::sim
