// The one way the daemon gets an engine: loads the configured model and starts the scheduler.
// Errors say what to fix (a missing model folder, a budget too small, a backend that cannot run).
#pragma once

#include <memory>

#include "base/status.h"
#include "config/config.h"
#include "engine/engine.h"

namespace zaya {

// Also refuses [rsa] defaults that do not fit the loaded model's context: with model.max_context
// = 0 that context comes from the checkpoint, which the config loader never sees, and every solve
// using the defaults would fail with out_of_range.
Result<std::unique_ptr<Engine>> CreateEngine(const Config& config);

// Applies the live-reloadable settings of `config` to an engine made by CreateEngine (SIGHUP),
// after the same [rsa] check against the running model; on an error nothing is applied.
Status ReconfigureEngine(Engine& engine, const Config& config);

}  // namespace zaya
