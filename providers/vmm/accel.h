#pragma once

#include <string>
#include <string_view>

#include "base/status.h"

namespace hyper::providers::vmm {

// What the manifest asks for, and what a VM actually runs with.
enum class AccelMode { Auto, Kvm, Tcg };
enum class Accel { Kvm, Tcg };

Result<AccelMode> parseAccelMode(std::string_view text);  // "auto" | "kvm" | "tcg"
std::string_view accelName(Accel accel);                  // "kvm" | "tcg"

// Where the host is probed; tests point these at fake files.
struct AccelProbe {
  std::string cpuinfoPath = "/proc/cpuinfo";
  std::string kvmDevice = "/dev/kvm";
};

struct AccelChoice {
  Accel accel = Accel::Tcg;
  std::string warning;  // non-empty when auto fell back to TCG: why
};

// KVM only when the CPU advertises hardware virtualisation (vmx or svm in the cpuinfo flags) AND
// the KVM device opens read-write. /dev/kvm alone is not enough: on some hosts it exists without
// vmx/svm (nested, emulated) and a stock guest kernel hangs under it. `auto` falls back to TCG
// with a warning; an explicit `kvm` that is not available is an error saying why.
Result<AccelChoice> chooseAccel(AccelMode mode, const AccelProbe& probe = {});

// The host TSC frequency in kHz from the first "cpu MHz" line of cpuinfo, or 0 when unknown.
// Under TCG the guest TSC ticks at the host's rate, and a microvm guest has no PIT speaker port,
// HPET or PM timer to calibrate it against: without tsc_early_khz= the kernel hangs at boot.
long hostTscKhz(const std::string& cpuinfoPath = "/proc/cpuinfo");

}  // namespace hyper::providers::vmm
