// jemalloc's settings for hyperd, read by jemalloc at its start (only linked with HYPER_JEMALLOC;
// MALLOC_CONF in the environment still overrides them).
//
// - background_thread: a thread of jemalloc's purges unused pages on its own schedule, so an
//   idle hyperd hands back what its last reconcile freed without allocating again;
// - dirty_decay_ms:1000 and muzzy_decay_ms:0: pages freed for a second go straight back to the
//   kernel (MADV_DONTNEED), rather than lingering as "muzzy" (MADV_FREE) pages that still count
//   in RSS until the machine runs short.
// hyperd also purges every arena at once after a reconcile that observed (releaseFreeMemory).
extern "C" {
extern const char* malloc_conf;
const char* malloc_conf = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0";
}
