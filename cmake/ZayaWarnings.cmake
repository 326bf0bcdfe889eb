# Warnings for the project's own targets (not for third-party headers, which come in as SYSTEM).
add_library(zaya_warnings INTERFACE)
target_compile_options(zaya_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX,C>:-Wall -Wextra -Wpedantic $<$<CXX_COMPILER_ID:GNU>:-Wshadow=local> -Wnon-virtual-dtor
  -Wcast-align -Wformat=2 -Wimplicit-fallthrough>)

# zaya_component_library(name SOURCES ... DEPS ...): a static library with the repo root on the
# include path, so headers are included as "engine/tokenizer/tokenizer.h".
function(zaya_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS} PRIVATE zaya_warnings)
endfunction()

# zaya_test(name SOURCES ... DEPS ... LABELS ...): one GoogleTest binary registered with CTest.
function(zaya_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;LABELS" ${ARGN})
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gtest_main GTest::gmock zaya_warnings)
  target_compile_definitions(${name} PRIVATE
    ZAYA_SOURCE_DIR="${PROJECT_SOURCE_DIR}" ZAYA_BINARY_DIR="${PROJECT_BINARY_DIR}")
  gtest_discover_tests(${name} PROPERTIES LABELS "${ARG_LABELS}" DISCOVERY_TIMEOUT 60)
endfunction()
