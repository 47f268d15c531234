#pragma once

#include <string>

namespace hyper::test {

// The guest kernel (scripts/guest-kernel.sh, cached under /var/cache/hyper/guest) and an
// initramfs built from its modules with hyper's guest image code, written under a directory of
// the test process. Made once per process; `skipReason` is set instead when the kernel cannot be
// obtained (no Debian package access).
struct GuestImage {
  std::string kernel;
  std::string initrd;
  std::string skipReason;
};
const GuestImage& guestImage();

// SIGKILLs the QEMU of every VM run dir under `runDir` (its qemu.pid): what a failed test left
// running goes before the namespace and the directory it uses.
void killQemusUnder(const std::string& runDir);

}  // namespace hyper::test
