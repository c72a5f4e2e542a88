# flatfleet_test(NAME SOURCES a.cc b.cc LIBS lib1 lib2 [LABELS l1 l2])
# Builds a GoogleTest binary and registers each of its tests with ctest. Tests find the shared
# fixtures through the FLATFLEET_SHARED_DIR environment variable.
function(flatfleet_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gtest_main GTest::gmock)
  target_compile_definitions(${name} PRIVATE FLATFLEET_SHARED_DIR="${FLATFLEET_SHARED_DIR}"
                                             FLATFLEET_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60
                       PROPERTIES ENVIRONMENT "FLATFLEET_SHARED_DIR=${FLATFLEET_SHARED_DIR}"
                                  LABELS "${ARG_LABELS}")
endfunction()

# flatfleet_library(NAME GLOB_DIR dir LIBS ...): a static library of every .cc file directly in dir.
# Globbing keeps module owners out of each other's CMake files.
function(flatfleet_library name)
  cmake_parse_arguments(ARG "" "DIR" "LIBS;EXCLUDE" ${ARGN})
  file(GLOB sources CONFIGURE_DEPENDS ${ARG_DIR}/*.cc)
  foreach(ex ${ARG_EXCLUDE})
    list(FILTER sources EXCLUDE REGEX "${ex}")
  endforeach()
  if(sources)
    add_library(${name} STATIC ${sources})
    target_include_directories(${name} PUBLIC ${CMAKE_SOURCE_DIR})
    target_link_libraries(${name} PUBLIC ${ARG_LIBS})
  else()  # header-only (or not yet written)
    add_library(${name} INTERFACE)
    target_include_directories(${name} INTERFACE ${CMAKE_SOURCE_DIR})
    target_link_libraries(${name} INTERFACE ${ARG_LIBS})
  endif()
endfunction()
include(GoogleTest OPTIONAL)
