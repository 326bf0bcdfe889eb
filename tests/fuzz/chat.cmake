zaya_fuzz(chat_template
  SOURCES ${PROJECT_SOURCE_DIR}/tests/engine/chat/chat_template_fuzz.cc
  DEPS zaya_chat)
