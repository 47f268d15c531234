#pragma once

#include <string_view>

namespace hyper {

// Crash points: a test-only switch that proves an apply interrupted anywhere is finished by the
// next one (tests/integration/crash_points_test.cc walks every point of an apply and a prune).
//
// The engine passes a point around each journal step of every action ("journal-begun",
// "host-changed", "recorded", "journal-ended") and providers pass theirs between host changes
// that are not one atomic step (a tap made but QEMU not started yet, a rules file staged but not
// renamed). Each point is named "<where> <Kind>/<name>" or "<where> <what>".
//
// Read once from the environment, by hyperctl and hyperd alike:
//   HYPER_TEST_CRASH_AT=N    the Nth point passed (1-based, counted per process) kills the
//                            process with SIGKILL: no destructor, no flush, no journal update, as
//                            the OOM killer or a power cut would.
//   HYPER_TEST_CRASH_LOG=F   appends one line per point passed to F ("<n> <name>"), and
//                            "killed <n> <name>" just before the kill.
// Neither set (every real run): a point costs one load of a flag.
void crashPoint(std::string_view name);

}  // namespace hyper
