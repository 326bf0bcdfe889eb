#include "engine/engine_factory.h"

#include "engine/scheduler/engine_core.h"

namespace zaya {
namespace {

// Where the engine's context came from, for messages: model.max_context when it set the limit,
// else the checkpoint's own.
std::string ContextOrigin(const Config& config, int64_t context) {
  if (config.model.max_context > 0 && config.model.max_context == context) {
    return "model.max_context";
  }
  return "max_position_embeddings of " + config.model.path + "/config.json" +
         (config.model.max_context > 0 ? ", below model.max_context"
                                       : "; model.max_context = 0 takes the model's limit");
}

}  // namespace

Result<std::unique_ptr<Engine>> CreateEngine(const Config& config) {
  auto core = EngineCore::Create(config);
  if (!core.ok()) return core.status();
  const int64_t context = (*core)->max_context();
  ZAYA_RETURN_IF_ERROR(CheckRsaFitsContext(config.rsa, context, ContextOrigin(config, context)));
  return std::unique_ptr<Engine>(std::move(*core));
}

Status ReconfigureEngine(Engine& engine, const Config& config) {
  auto* core = dynamic_cast<EngineCore*>(&engine);
  if (core == nullptr) return Status::Ok();
  const int64_t context = core->max_context();
  ZAYA_RETURN_IF_ERROR(CheckRsaFitsContext(config.rsa, context, ContextOrigin(config, context)));
  core->Reconfigure(config);
  return Status::Ok();
}

}  // namespace zaya
