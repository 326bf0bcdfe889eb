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
  return plan;
}

}  // namespace zaya::daemon
