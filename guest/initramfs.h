#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace hyper::guest {

// The kernel modules a Debian kernel needs as modules to reach hyper's VMs over virtio-mmio
// (QEMU microvm) and to power off on an ACPI power button (graceful stop): button and evdev let
// the init notice `system_powerdown`; virtio_console gives it the virtio-serial readiness channel;
// virtio_blk, erofs and ext4 let it mount a rootfs Build's image as its disk (crc32c_generic
// first: erofs needs libcrc32c and ext4 crc32c, which need an implementation, a softdep
// modules.dep omits).
const std::vector<std::string>& defaultGuestModules();

// One module file to put in the image, in load order.
struct ModuleFile {
  std::string name;          // "virtio_net"
  std::string relativePath;  // "kernel/drivers/net/virtio_net.ko", as modules.dep names it
};

// Resolves `wanted` module names (dashes and underscores are equivalent, as for modprobe) against
// the text of a modules.dep, and returns every module needed in an order insmod can load them:
// each module after all of its dependencies, each once. Pure. Errors name the missing module.
Result<std::vector<ModuleFile>> resolveModules(std::string_view modulesDep,
                                               const std::vector<std::string>& wanted);

class CpioArchive;

// Adds resolved `modules`, read from `modulesDir` (lib/modules/<version>/ or a tree laid out like
// it; .ko.xz decompressed, because busybox insmod does not read them), as lib/modules/NAME.ko,
// and their load order, one name a line, as etc/hyper/modules: what guestInitScript() loads.
Status addModules(CpioArchive& cpio, const std::string& modulesDir,
                  const std::vector<ModuleFile>& modules);

// The /init of hyper's guest image (a busybox shell script). It mounts proc, sys and dev, loads
// the modules listed in /etc/hyper/modules, configures eth0 from the kernel command line, prints
// the readiness line and then keeps reporting whether the gateway answers:
//   hyper.ip=10.77.0.10/24  address of eth0          hyper.gw=10.77.0.1  default route
//   hyper.ping=2            seconds between pings of the gateway (0: never)
//   hyper.ready=LINE        the readiness line (default hyper-ready)
//   hyper.channel=NAME      write the readiness line to the virtio-serial port NAME instead of
//                           the console (which then says "hyper-init: readiness sent on channel")
//   hyper.targets=A,B       ping these instead of the gateway, from each of the guest's
//                           addresses: "hyper-ping A from 10.77.0.10 ok|fail" per ping
//   hyper.disk=/mnt         mount the VM's disk (/dev/vda) read-only there and print
//                           "hyper-disk /dev/vda on /mnt: <its /etc/debian_version>"
// For tests of the host's guard, a guest that misbehaves:
//   hyper.mac=MAC           set eth0's MAC to this instead of the one hyper gave
//   hyper.addr=A/P          add a second address to eth0 (pinged from too, with hyper.targets)
// Console lines: "hyper-ready" (without a channel), then "hyper-ping-ok" / "hyper-ping-fail" each
// ping, and "hyper-poweroff" when the ACPI power button is pressed (it then powers off).
std::string_view guestInitScript();

}  // namespace hyper::guest
