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

}  // namespace hyper::test
