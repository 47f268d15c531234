# Sanitizer builds, in the manner of osquery's cmake/options.cmake.
option(HYPER_ASAN "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)
option(HYPER_TSAN "Build with ThreadSanitizer" OFF)
if(HYPER_ASAN AND HYPER_TSAN)
  message(FATAL_ERROR "HYPER_ASAN and HYPER_TSAN cannot be combined")
endif()
if(HYPER_ASAN)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
if(HYPER_TSAN)
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
endif()
# libFuzzer targets (tests/fuzz/, scripts/fuzz.sh): needs clang. Everything is instrumented for
# coverage and built with ASan+UBSan; only the fuzz targets link libFuzzer's main. Without it the
# same targets are built with a replay main and run their corpora under ctest (label fuzz-replay).
option(HYPER_FUZZ "Build the libFuzzer targets (clang only)" OFF)
if(HYPER_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "HYPER_FUZZ needs clang (CXX=clang++), not ${CMAKE_CXX_COMPILER_ID}")
  endif()
  if(HYPER_ASAN OR HYPER_TSAN)
    message(FATAL_ERROR "HYPER_FUZZ already builds with ASan+UBSan; do not combine it with HYPER_ASAN or HYPER_TSAN")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
    -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
