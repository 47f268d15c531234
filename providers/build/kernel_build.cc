#include "providers/build/kernel_build.h"

#include <filesystem>

namespace hyper::providers::build {

namespace {

constexpr size_t kMaxModulesDepBytes = 16u << 20;

host::CommandOptions inside(host::CommandOptions options, const std::string& cwd) {
  options.cwd = cwd;
  options.maxOutputBytes = options.maxOutputBytes == 0 ? (1u << 20) : options.maxOutputBytes;
  return options;
}

}  // namespace

Result<KernelOutputs> unpackDebianKernel(const std::string& deb, const std::string& scratch,
                                         const host::CommandOptions& options, BuildLog& log) {
  namespace fs = std::filesystem;
  const std::string root = scratch + "/root";
  HYPER_RETURN_IF_ERROR(
      host::runChecked({"dpkg-deb", "-x", deb, root}, "", inside(options, scratch)).status());
  log += "unpacked " + deb + "\n";
  // One kernel per package: lib/modules/<version>/ and boot/vmlinuz-<version>.
  std::vector<std::string> versions;
  std::error_code ec;
  for (fs::directory_iterator it(root + "/lib/modules", ec), end; !ec && it != end;
       it.increment(ec)) {
    versions.push_back(it->path().filename().string());
  }
  if (versions.size() != 1) {
    return Status::error(deb + " holds " + std::to_string(versions.size()) +
                         " kernel versions under lib/modules: expected one kernel image package");
  }
  KernelOutputs out;
  out.version = versions.front();
  const std::string image = root + "/boot/vmlinuz-" + out.version;
  if (!fs::is_regular_file(image, ec)) {
    return Status::error(deb + " has no boot/vmlinuz-" + out.version +
                         ": expected a kernel image package (linux-image-*)");
  }
  // Debian runs depmod when the package is installed; the .deb has no modules.dep.
  HYPER_RETURN_IF_ERROR(
      host::runChecked({"depmod", "-b", root, out.version}, "", inside(options, scratch)).status());
  log += "depmod " + out.version + "\n";
  out.modulesTar = scratch + "/modules.tar";
  HYPER_RETURN_IF_ERROR(
      host::runChecked({"tar", "--sort=name", "--mtime=@0", "--owner=0", "--group=0",
                        "--numeric-owner", "--mode=go-w,a+rX,u+w", "--format=gnu", "-C",
                        root + "/lib/modules/" + out.version, "-cf", out.modulesTar, "."},
                       "", inside(options, scratch))
          .status());
  log += "archived lib/modules/" + out.version + "\n";
  out.vmlinuz = scratch + "/vmlinuz";
  fs::rename(image, out.vmlinuz, ec);
  if (ec) {
    return Status::error("move " + image + " <- " + ec.message());
  }
  fs::remove_all(root, ec);  // the unpacked tree is not needed any more
  return out;
}

Result<std::string> readModulesDep(const std::string& modulesTar,
                                   const host::CommandOptions& options) {
  host::CommandOptions o = options;
  o.maxOutputBytes = kMaxModulesDepBytes;
  return host::runChecked({"tar", "-xOf", modulesTar, "./modules.dep"}, "", o);
}

Status extractModules(const std::string& modulesTar, const std::vector<guest::ModuleFile>& modules,
                      const std::string& dir, const host::CommandOptions& options) {
  if (modules.empty()) {
    return Status::ok();
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  std::vector<std::string> argv = {"tar", "-xf", modulesTar, "-C", dir};
  for (const auto& m : modules) {
    argv.push_back("./" + m.relativePath);
  }
  return host::runChecked(argv, "", inside(options, dir)).status();
}

}  // namespace hyper::providers::build
