#pragma once

#include <cstdio>
#include <cstdlib>

// An invariant a fuzz target checks on our own code's output (not on the input): when it fails,
// the process aborts, so libFuzzer saves the input as a crash and the replay test fails. Active in
// every build type (assert() is compiled out of release builds).
#define FUZZ_CHECK(cond)                                                                     \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                          \
    }                                                                                        \
  } while (0)
