zaya_fuzz(tokenizer_json
  SOURCES ${PROJECT_SOURCE_DIR}/tests/engine/tokenizer/tokenizer_json_fuzz.cc
  DEPS zaya_tokenizer)
