// What a SIGHUP reload changes: the live keys of the new file are applied, everything else keeps
// its running value until a restart (config/config.h KeysNeedingRestart lists those keys).
//
// Thread safety: pure functions over values.
#pragma once

#include <string>
#include <vector>

#include "config/config.h"

namespace zaya::daemon {

struct ReloadPlan {
  Config applied;                         // the config to run with after the reload
  std::vector<std::string> live_changes;  // keys whose new value now applies ("rsa.population")
  std::vector<std::string> need_restart;  // keys that changed but only apply after a restart
  // Non-empty: the new live keys do not hold together with the restart-only keys kept from the
  // running config (rsa.budget raised along with model.max_context, say; the new file alone is
  // valid). The reload must then apply nothing; this says why.
  std::string refused;
};

// `running` is the config in use, `next` the freshly loaded file.
ReloadPlan PlanReload(const Config& running, const Config& next);

}  // namespace zaya::daemon
