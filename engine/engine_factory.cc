#include "engine/engine_factory.h"

#include "engine/scheduler/engine_core.h"

namespace zaya {

Result<std::unique_ptr<Engine>> CreateEngine(const Config& config) {
  auto core = EngineCore::Create(config);
  if (!core.ok()) return core.status();
  return std::unique_ptr<Engine>(std::move(*core));
}

void ReconfigureEngine(Engine& engine, const Config& config) {
  if (auto* core = dynamic_cast<EngineCore*>(&engine)) core->Reconfigure(config);
}

}  // namespace zaya
