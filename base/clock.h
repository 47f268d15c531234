#pragma once

#include <chrono>
#include <cstdint>

namespace hyper {

// Seconds since the Unix epoch, by the wall clock: for records people read (appliedAt, journal
// times, `hyperctl get`'s AGE). Durations and deadlines use std::chrono::steady_clock instead.
inline int64_t nowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace hyper
