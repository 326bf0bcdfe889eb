// The zayad process: loads the config, creates the engine, serves protocol v1 on the configured
// endpoint, and speaks systemd's notify protocol (READY/STATUS/WATCHDOG/RELOADING/STOPPING).
//
// Signals (blocked and read from a signalfd in the serving loop, so handlers never run async):
//   SIGHUP          re-read the config file; a bad file keeps the running config (logged).
//   SIGTERM/SIGINT  stop accepting (new work gets "unavailable: shutting down"), drain for
//                   scheduler.drain_timeout, exit 0.
// Client input never ends the process.
#pragma once

#include "daemon/args.h"

namespace zaya::daemon {

// Runs until a stop signal; returns the process exit code (0 clean stop, 1 startup failure).
int RunDaemon(const DaemonArgs& args);

}  // namespace zaya::daemon
