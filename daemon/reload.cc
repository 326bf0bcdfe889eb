#include "daemon/reload.h"

namespace zaya::daemon {

ReloadPlan PlanReload(const Config& running, const Config& next) {
  ReloadPlan plan;
  plan.applied = running;
  plan.applied.source = next.source;
  plan.need_restart = KeysNeedingRestart(running, next);
  auto live = [&plan](bool changed, const char* key) {
    if (changed) plan.live_changes.emplace_back(key);
  };
  live(running.log.level != next.log.level, "log.level");
  plan.applied.log.level = next.log.level;
  live(!(running.rsa == next.rsa), "rsa");
  plan.applied.rsa = next.rsa;
  live(running.scheduler.max_queue != next.scheduler.max_queue, "scheduler.max_queue");
  plan.applied.scheduler.max_queue = next.scheduler.max_queue;
  live(running.ipc.max_message != next.ipc.max_message, "ipc.max_message");
  plan.applied.ipc.max_message = next.ipc.max_message;
  live(running.ipc.max_json_depth != next.ipc.max_json_depth, "ipc.max_json_depth");
  plan.applied.ipc.max_json_depth = next.ipc.max_json_depth;
  live(running.ipc.max_requests_per_client != next.ipc.max_requests_per_client,
       "ipc.max_requests_per_client");
  plan.applied.ipc.max_requests_per_client = next.ipc.max_requests_per_client;
  // The mix is checked as a file would be: the cross-key rules (budget < max_context, ...) span
  // live and restart-only keys. Unchanged restart-only keys cannot be the cause of a failure, so
  // only a mix with some kept key is checked.
  if (!plan.need_restart.empty()) {
    auto mixed = ParseConfig(FormatConfig(plan.applied),
                             next.source + " (its live keys with the running restart-only keys)");
    if (!mixed.ok()) plan.refused = mixed.status().message();
  }
  return plan;
}

}  // namespace zaya::daemon
