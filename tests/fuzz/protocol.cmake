zaya_fuzz(protocol
  SOURCES ${PROJECT_SOURCE_DIR}/tests/ipc/protocol_fuzz.cc
  DEPS zaya_ipc)
