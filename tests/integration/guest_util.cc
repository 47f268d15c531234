#include "tests/integration/guest_util.h"

#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "guest/initramfs.h"
#include "host/command.h"

namespace hyper::test {
namespace fs = std::filesystem;

namespace {

GuestImage make() {
  GuestImage g;
  auto r = host::runCommand({"bash", std::string(HYPER_SOURCE_DIR) + "/scripts/guest-kernel.sh"});
  if (!r.isOk() || r->exitCode != 0) {
    g.skipReason = "cannot obtain the guest kernel (scripts/guest-kernel.sh): " +
                   (r.isOk() ? r->err : r.status().message());
    return g;
  }
  std::string dir = r->out;
  while (!dir.empty() && dir.back() == '\n') {
    dir.pop_back();
  }
  dir = dir.substr(dir.rfind('\n') == std::string::npos ? 0 : dir.rfind('\n') + 1);
  g.kernel = dir + "/vmlinuz";
  guest::InitramfsSpec spec;
  spec.kernelModulesDir = dir + "/modules";
  auto image = guest::buildInitramfs(spec);
  if (!image.isOk()) {
    g.skipReason = "cannot build the guest image: " + image.status().message();
    return g;
  }
  fs::path out = fs::temp_directory_path() / ("hyper-guest-" + std::to_string(::getpid()));
  fs::create_directories(out);
  g.initrd = (out / "guest.cpio.gz").string();
  std::ofstream(g.initrd, std::ios::binary) << *image;
  // Removed at exit: the image is per process.
  static const std::string kDir = out.string();
  std::atexit([] {
    std::error_code ec;
    fs::remove_all(kDir, ec);
  });
  return g;
}

}  // namespace

const GuestImage& guestImage() {
  static const GuestImage image = make();
  return image;
}

void killQemusUnder(const std::string& runDir) {
  std::error_code ec;
  if (!fs::is_directory(runDir, ec)) {
    return;
  }
  for (const auto& d : fs::directory_iterator(runDir, ec)) {
    std::ifstream in(d.path() / "qemu.pid");
    long pid = 0;
    if (in >> pid && pid > 1) {
      ::kill(static_cast<pid_t>(pid), SIGKILL);
    }
  }
}

}  // namespace hyper::test
