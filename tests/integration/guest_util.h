#pragma once

#include <string>

namespace hyper::test {

// The guest kernel and hyper's guest image, made the way a user makes them: Builds
// (debian-kernel, and an initramfs with hyperInit and its modules) applied by the real hyperctl
// into a state directory shared by the test processes (/var/cache/hyper/test-guest, or
// $HYPER_TEST_GUEST_STATE), so only the first process builds and the rest are cache hits. The
// paths are the artifacts in that state directory's store. Made once per process; `skipReason`
// is set instead when they cannot be built (no Debian package access).
struct GuestImage {
  std::string kernel;
  std::string initrd;
  std::string skipReason;
};
const GuestImage& guestImage();
// The Builds guestImage() applies (guest-kernel, guest-initrd): a manifest file's text, for a
// test or benchmark that gives them to hyperd itself (the same specs: the same cache keys).
const char* guestBuildManifests();

// SIGKILLs the QEMU of every VM run dir under `runDir` (its qemu.pid): what a failed test left
// running goes before the namespace and the directory it uses.
void killQemusUnder(const std::string& runDir);

// The mirror this host's apt lists hold bookworm from ("http://deb.debian.org/debian"), for
// rootfs Builds; "" when they hold none.
std::string hostBookwormMirror();

}  // namespace hyper::test
