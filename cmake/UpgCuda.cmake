# The CUDA kernels (src/kernels/cuda): static library upg_cuda, its test (tests/unit/test_cuda_*.cpp,
# added by the test loop of CMakeLists.txt only when UPG_CUDA is on) and bench_cuda_gemv.
# UPG_CUDA defaults to ON when CMake finds a CUDA compiler (nvcc on PATH, $CUDACXX, or
# /usr/local/cuda/bin/nvcc); without one the option is off and the rest of the build is unchanged.
# Targets sm_80 and sm_90 (override with -DCMAKE_CUDA_ARCHITECTURES=...). No GPU is needed to build.
include(CheckLanguage)
if(NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
  find_program(UPG_NVCC_ON_PATH nvcc)
  if(NOT UPG_NVCC_ON_PATH AND EXISTS /usr/local/cuda/bin/nvcc)
    set(ENV{CUDACXX} /usr/local/cuda/bin/nvcc)
  endif()
endif()
check_language(CUDA)
if(CMAKE_CUDA_COMPILER)
  set(UPG_CUDA_DEFAULT ON)
else()
  set(UPG_CUDA_DEFAULT OFF)
endif()
option(UPG_CUDA "Build the CUDA kernels (upg_cuda), their tests and benchmark (needs nvcc)" ${UPG_CUDA_DEFAULT})
if(NOT UPG_CUDA)
  if(CMAKE_CUDA_COMPILER)
    message(NOTICE "UPG_CUDA is off: the CUDA kernels are not built")
  else()
    message(NOTICE "UPG_CUDA is off: no CUDA compiler found (install the CUDA toolkit, or set CUDACXX) - the CUDA kernels are not built")
  endif()
  return()
endif()
if(NOT CMAKE_CUDA_COMPILER)
  message(FATAL_ERROR "UPG_CUDA=ON but no CUDA compiler was found: set CUDACXX or CMAKE_CUDA_COMPILER")
endif()
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 80 90)
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
message(STATUS "UPG_CUDA: ${CMAKE_CUDA_COMPILER} (CUDA ${CUDAToolkit_VERSION}), architectures ${CMAKE_CUDA_ARCHITECTURES}")

file(GLOB UPG_CUDA_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/kernels/cuda/*.cu)
add_library(upg_cuda STATIC ${UPG_CUDA_SOURCES})
# The directory's C++ flags (-Wall, -march, sanitizers) are not nvcc flags: start from none.
set_target_properties(upg_cuda PROPERTIES COMPILE_OPTIONS "" CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON
                      POSITION_INDEPENDENT_CODE ON)
target_compile_options(upg_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-fopenmp,-Wall,-Wno-unused-parameter>)
target_include_directories(upg_cuda PUBLIC $<BUILD_INTERFACE:${CMAKE_SOURCE_DIR}/src>)
# The CUDA runtime linked statically (as nvcc does by default): binaries, the Python module and the
# .debs need only the NVIDIA driver (libcuda, loaded at run time) and run without it (no GPU: 0 devices).
target_link_libraries(upg_cuda PUBLIC CUDA::cudart_static OpenMP::OpenMP_CXX ${CMAKE_DL_LIBS})

# The CUDA backend (src/backend/cuda, plain C++ over cuda_ops.h) joins the backend layer (upg_backend,
# cmake/UpgLayers.cmake), which then links upg_cuda; backend_factory.cpp offers --device cuda only in
# such builds.
file(GLOB UPG_CUDA_BACKEND_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/backend/cuda/*.cpp)
target_sources(upg_backend PRIVATE ${UPG_CUDA_BACKEND_SOURCES})
target_link_libraries(upg_backend PUBLIC upg_cuda)
set_source_files_properties(${CMAKE_SOURCE_DIR}/src/backend/backend_factory.cpp PROPERTIES COMPILE_DEFINITIONS UPG_HAVE_CUDA=1)
install(TARGETS upg_cuda EXPORT upgTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev)

# GEMV microbenchmark (bench/cuda/README.md); cuBLAS only here, as the dense peer.
add_executable(bench_cuda_gemv ${CMAKE_SOURCE_DIR}/bench/cuda/bench_cuda_gemv.cu)
set_target_properties(bench_cuda_gemv PROPERTIES COMPILE_OPTIONS "" CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON)
target_link_libraries(bench_cuda_gemv PRIVATE upg_cuda CUDA::cublas)
