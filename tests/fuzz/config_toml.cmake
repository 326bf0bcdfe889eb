zaya_fuzz(config_toml
  SOURCES ${PROJECT_SOURCE_DIR}/tests/config/config_toml_fuzz.cc
  DEPS zaya_config)
