#include "base/memory.h"

#include <malloc.h>

#include <cstddef>

// jemalloc's control interface. Weak: null unless the program links jemalloc, so one build of
// this room serves hyperd (jemalloc) and everything else (glibc, or a sanitizer's allocator).
extern "C" int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen)
    __attribute__((weak));

namespace hyper {

std::string allocatorName() { return mallctl != nullptr ? "jemalloc" : "glibc"; }

void releaseFreeMemory() {
  if (mallctl != nullptr) {
    // "arena.<MALLCTL_ARENAS_ALL>.purge": every arena's unused dirty pages, at once.
    mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);
    return;
  }
  malloc_trim(0);
}

}  // namespace hyper
