#pragma once

#include <string>

namespace hyper {

// Which malloc the process runs on: "jemalloc" when the program links it (hyperd does; see
// cmake/options.cmake, HYPER_JEMALLOC), otherwise "glibc".
std::string allocatorName();

// Hands the pages that freed memory still holds back to the kernel, now rather than at the
// allocator's leisure: after a reconcile whose observe or apply allocated in bulk (link and
// ruleset listings, JSON trees, the plan) and freed it again. jemalloc purges its arenas' dirty
// pages; glibc trims its arenas (malloc_trim).
void releaseFreeMemory();

}  // namespace hyper
