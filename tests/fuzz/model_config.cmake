zaya_fuzz(model_config
  SOURCES ${PROJECT_SOURCE_DIR}/tests/engine/weights/model_config_fuzz.cc
  DEPS zaya_weights)
