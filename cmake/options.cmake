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
# hyperd and hyperctl run on jemalloc (hyperd's settings: hyperd/jemalloc_conf.cc). hyperd is a
# long-lived daemon whose first apply allocates some 28 KB of temporaries per object among what
# it keeps: glibc's arenas kept the holes between the kept objects resident (RSS twice the live
# heap), jemalloc's size-class slabs and decay purging do not. Its allocations are also cheaper:
# hyperctl's first apply of 1,000 networks + policies took 0.67 s instead of 0.81. Not with a
# sanitizer, which brings its own allocator.
option(HYPER_JEMALLOC "Link hyperd and hyperctl against jemalloc (libjemalloc-dev)" ON)
if(HYPER_ASAN OR HYPER_TSAN OR HYPER_FUZZ)
  set(HYPER_JEMALLOC OFF)
endif()
