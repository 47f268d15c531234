// hyper-guest-image: writes hyper's guest initramfs (busybox, virtio modules, /init) to a file.
//   hyper-guest-image --kernel-modules /var/cache/hyper/guest/modules --out guest.cpio.gz
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "guest/initramfs.h"

int main(int argc, char** argv) {
  CLI::App app{"Build hyper's reproducible guest initramfs"};
  hyper::guest::InitramfsSpec spec;
  std::string out;
  std::vector<std::string> extraModules;
  app.add_option("--kernel-modules", spec.kernelModulesDir,
                 "lib/modules/<version> of the guest kernel (see scripts/guest-kernel.sh)")
      ->required();
  app.add_option("--out", out, "where to write the gzip-compressed cpio")->required();
  app.add_option("--busybox", spec.busybox, "a static busybox binary")->capture_default_str();
  app.add_option("--module", extraModules, "an extra kernel module to load (repeatable)");
  CLI11_PARSE(app, argc, argv);
  spec.modules.insert(spec.modules.end(), extraModules.begin(), extraModules.end());

  auto image = hyper::guest::buildInitramfs(spec);
  if (!image.isOk()) {
    std::fprintf(stderr, "hyper-guest-image: %s\n", image.status().message().c_str());
    return 1;
  }
  // Written beside the target and renamed, so a reader never sees half an image.
  std::string tmp = out + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f.write(image->data(), static_cast<std::streamsize>(image->size()));
    if (!f) {
      std::fprintf(stderr, "hyper-guest-image: write %s failed\n", tmp.c_str());
      return 1;
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, out, ec);
  if (ec) {
    std::fprintf(stderr, "hyper-guest-image: rename %s to %s <- %s\n", tmp.c_str(), out.c_str(),
                 ec.message().c_str());
    return 1;
  }
  return 0;
}
