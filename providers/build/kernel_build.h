#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "guest/initramfs.h"
#include "host/command.h"
#include "providers/build/build_queue.h"

namespace hyper::providers::build {

// What a debian-kernel build makes from a kernel package's .deb, in a scratch directory for the
// store to adopt:
//   vmlinuz      boot/vmlinuz-<version>, as packaged
//   modules.tar  lib/modules/<version>/ with the modules.dep (and the rest) that depmod makes
//                for it, as a GNU tar: entries sorted by name, mtime 0, uid/gid 0, modes
//                normalised (go-w, a+rX), so umask and time leave no trace.
struct KernelOutputs {
  std::string vmlinuz;     // path
  std::string modulesTar;  // path
  std::string version;     // "6.1.0-57-amd64"
};

// dpkg-deb -x, depmod -b, tar: each within `options` (timeout, cancel; cwd is ignored). `log`
// gets a line per step.
Result<KernelOutputs> unpackDebianKernel(const std::string& deb, const std::string& scratch,
                                         const host::CommandOptions& options, BuildLog& log);

// modules.dep of a modules archive (what unpackDebianKernel's modules.tar holds).
Result<std::string> readModulesDep(const std::string& modulesTar,
                                   const host::CommandOptions& options);

// Extracts `modules` (paths relative to the archive's root, as modules.dep names them) into
// `dir`, laid out as in the archive, for guest::addModules.
Status extractModules(const std::string& modulesTar, const std::vector<guest::ModuleFile>& modules,
                      const std::string& dir, const host::CommandOptions& options);

}  // namespace hyper::providers::build
