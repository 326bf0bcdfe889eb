zaya_fuzz(safetensors
  SOURCES ${PROJECT_SOURCE_DIR}/tests/engine/weights/safetensors_fuzz.cc
  DEPS zaya_weights)
