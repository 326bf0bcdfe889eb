// The one way the daemon gets an engine: loads the configured model and starts the scheduler.
// Errors say what to fix (a missing model folder, a budget too small, a backend that cannot run).
#pragma once

#include <memory>

#include "base/status.h"
#include "config/config.h"
#include "engine/engine.h"

namespace zaya {

Result<std::unique_ptr<Engine>> CreateEngine(const Config& config);

// Applies the live-reloadable settings of `config` to an engine made by CreateEngine (SIGHUP).
void ReconfigureEngine(Engine& engine, const Config& config);

}  // namespace zaya
