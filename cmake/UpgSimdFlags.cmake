# Compile flags of the CPU kernels' run-time-dispatched SIMD variants, by file name suffix in
# src/kernels/cpu (the rest of the code is built for the x86-64-v3 baseline):
#   *_avx512.cpp      AVX-512 F/BW/VL/DQ      (called when simd_level() >= Avx512)
#   *_avx512vnni.cpp  + AVX-512 VNNI          (>= Avx512Vnni)
#   *_avx512vbmi.cpp  + AVX-512 VNNI, VBMI    (>= Avx512Vnni and CpuFeatures::avx512vbmi)
#   *_amx.cpp         + AMX-TILE, AMX-INT8    (>= Amx)
# Used by the main build and by bench/cuda/standalone: upg_simd_flags(<repository root>).
function(upg_simd_flags root)
  set(avx512 -mavx512f -mavx512bw -mavx512vl -mavx512dq)
  file(GLOB s512 CONFIGURE_DEPENDS ${root}/src/kernels/cpu/*_avx512.cpp)
  file(GLOB svnni CONFIGURE_DEPENDS ${root}/src/kernels/cpu/*_avx512vnni.cpp)
  file(GLOB svbmi CONFIGURE_DEPENDS ${root}/src/kernels/cpu/*_avx512vbmi.cpp)
  file(GLOB samx CONFIGURE_DEPENDS ${root}/src/kernels/cpu/*_amx.cpp)
  set_source_files_properties(${s512} DIRECTORY ${CMAKE_SOURCE_DIR} PROPERTIES COMPILE_OPTIONS "${avx512}")
  set_source_files_properties(${svnni} DIRECTORY ${CMAKE_SOURCE_DIR} PROPERTIES COMPILE_OPTIONS "${avx512};-mavx512vnni")
  set_source_files_properties(${svbmi} DIRECTORY ${CMAKE_SOURCE_DIR} PROPERTIES COMPILE_OPTIONS "${avx512};-mavx512vnni;-mavx512vbmi")
  set_source_files_properties(${samx} DIRECTORY ${CMAKE_SOURCE_DIR} PROPERTIES COMPILE_OPTIONS "${avx512};-mamx-tile;-mamx-int8")
endfunction()
