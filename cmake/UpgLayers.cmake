# The layers of src/ (docs/ARCHITECTURE.md), described once here: each folder src/<layer>/ is one
# static library upg_<layer> that links (PUBLIC) exactly the layers named in its DEPS, each of which
# must be declared before it (so the graph has no cycle). DEPS lists every layer whose headers the
# folder includes; tests/scripts/test_layering.sh (ctest script.test_layering) fails on a file in
# src/<layer>/ that includes a header of any other layer, on an archive that uses a symbol of a layer
# it does not link, and on a docs/ARCHITECTURE.md table that says otherwise. It reads the graph from
# ${CMAKE_BINARY_DIR}/upg_layers.tsv, written from these calls at configure time.
#
# upg_core, the target every consumer links (tools, tests, benchmarks, the Python module, and
# upg::upg_core of the installed CMake package), is an INTERFACE library linking every layer but
# those declared SEPARATE (the server: only what serves links cpp-httplib).
#
# Sources: src/<layer>/**/*.cpp, except src/<layer>/cuda/ (cmake/UpgCuda.cmake adds src/backend/cuda
# with UPG_CUDA; src/kernels/cuda holds the .cu sources of upg_cuda). The headers of a layer are
# those under src/<layer>/, src/kernels/cuda included.

include(GNUInstallDirs)
set_property(GLOBAL PROPERTY UPG_LAYERS "")
set_property(GLOBAL PROPERTY UPG_CORE_LAYER_TARGETS "")

# upg_layer(<name> [SEPARATE] [DEPS <layer>...])
function(upg_layer name)
  cmake_parse_arguments(PARSE_ARGV 1 L "SEPARATE" "" "DEPS")
  if(L_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "upg_layer(${name}): unexpected arguments ${L_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT IS_DIRECTORY ${CMAKE_SOURCE_DIR}/src/${name})
    message(FATAL_ERROR "upg_layer(${name}): no folder src/${name}")
  endif()
  get_property(declared GLOBAL PROPERTY UPG_LAYERS)
  set(dep_targets "")
  foreach(dep IN LISTS L_DEPS)
    if(NOT dep IN_LIST declared)
      message(FATAL_ERROR "upg_layer(${name}): DEPS names '${dep}', which is not a layer declared before it")
    endif()
    list(APPEND dep_targets upg_${dep})
  endforeach()

  file(GLOB_RECURSE sources CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/${name}/*.cpp)
  list(FILTER sources EXCLUDE REGEX "/src/${name}/cuda/")
  add_library(upg_${name} STATIC ${sources})
  target_include_directories(upg_${name} PUBLIC $<BUILD_INTERFACE:${CMAKE_SOURCE_DIR}/src>
                                                $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}/upg>)
  # Position-independent, so that the Python module (a shared object) links these same libraries.
  # With -fno-semantic-interposition calls inside the library are bound and inlined as in -fPIE code
  # (what Debian's GCC compiles executables as anyway); TLS descriptors (-mtls-dialect=gnu2) keep the
  # kernels' thread_local buffers as cheap to reach as in an executable. Cost: README, section Install.
  set_target_properties(upg_${name} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  target_compile_options(upg_${name} PRIVATE -fno-semantic-interposition -mtls-dialect=gnu2)
  target_link_libraries(upg_${name} PUBLIC ${dep_targets} OpenMP::OpenMP_CXX nlohmann_json::nlohmann_json
                        PkgConfig::PCRE2 PkgConfig::SECCOMP ${XXHASH_LIB} ICU::uc BZip2::BZip2 ZLIB::ZLIB)
  target_compile_definitions(upg_${name} PUBLIC UPG_VERSION="${PROJECT_VERSION}")

  list(JOIN L_DEPS " " deps_text)
  if(L_SEPARATE)
    set(kind separate)
  else()
    set(kind core)
    set_property(GLOBAL APPEND PROPERTY UPG_CORE_LAYER_TARGETS upg_${name})
  endif()
  set_property(GLOBAL APPEND PROPERTY UPG_LAYERS ${name})
  set_property(GLOBAL APPEND_STRING PROPERTY UPG_LAYER_GRAPH
               "${name}\t${deps_text}\t${kind}\t$<TARGET_FILE:upg_${name}>\n")
endfunction()

# The graph, bottom to top.
upg_layer(base)
upg_layer(kernels DEPS base)
upg_layer(codecs DEPS kernels base)
upg_layer(format DEPS codecs base)
upg_layer(tokenizer DEPS format base)
upg_layer(models DEPS format kernels base)
upg_layer(backend DEPS codecs kernels base)
upg_layer(runtime DEPS backend models tokenizer format codecs kernels base)
upg_layer(convert DEPS runtime models tokenizer format codecs base)
upg_layer(eval DEPS runtime tokenizer base)
upg_layer(server SEPARATE DEPS runtime tokenizer base)

# Every folder of src/ is a layer.
file(GLOB src_entries LIST_DIRECTORIES true RELATIVE ${CMAKE_SOURCE_DIR}/src ${CMAKE_SOURCE_DIR}/src/*)
get_property(UPG_LAYERS GLOBAL PROPERTY UPG_LAYERS)
foreach(entry IN LISTS src_entries)
  if(IS_DIRECTORY ${CMAKE_SOURCE_DIR}/src/${entry} AND NOT entry IN_LIST UPG_LAYERS)
    message(FATAL_ERROR "src/${entry} is not a layer: declare it with upg_layer() in cmake/UpgLayers.cmake")
  endif()
endforeach()

# upg_core: every layer but the separate ones.
get_property(UPG_CORE_LAYER_TARGETS GLOBAL PROPERTY UPG_CORE_LAYER_TARGETS)
add_library(upg_core INTERFACE)
target_link_libraries(upg_core INTERFACE ${UPG_CORE_LAYER_TARGETS})

# The graph for tests/scripts/test_layering.sh and python/tests/test_packaging.py: one line per
# layer, "<layer> TAB <deps, space-separated> TAB core|separate TAB <its archive>".
get_property(graph GLOBAL PROPERTY UPG_LAYER_GRAPH)
file(GENERATE OUTPUT ${CMAKE_BINARY_DIR}/upg_layers.tsv CONTENT "${graph}")
