#include "tests/integration/guest_util.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "host/command.h"

namespace hyper::test {
namespace fs = std::filesystem;

namespace {

constexpr const char* kManifests = R"(apiVersion: hyper.dev/v1alpha1
kind: Build
metadata: {name: guest-kernel}
spec:
  type: debian-kernel
  debianKernel: {package: linux-image-amd64}
---
apiVersion: hyper.dev/v1alpha1
kind: Build
metadata: {name: guest-initrd}
spec:
  type: initramfs
  initramfs:
    kernel: {build: guest-kernel}
    hyperInit: true
)";

// The artifact `artifact` of Build `name` in `get builds -o json` output, as a store path.
std::string artifactPath(const nlohmann::json& list, const std::string& stateDir,
                         const std::string& name, const std::string& artifact) {
  for (const auto& item : list.value("items", nlohmann::json::array())) {
    if (item["metadata"].value("name", "") != name) {
      continue;
    }
    const auto& a = item["status"]["observed"]["artifacts"];
    std::string digest = a.contains(artifact) ? a[artifact].value("digest", "") : "";
    return digest.rfind("sha256:", 0) == 0 ? stateDir + "/store/sha256/" + digest.substr(7) : "";
  }
  return "";
}

}  // namespace

const char* guestBuildManifests() { return kManifests; }

namespace {

GuestImage make() {
  GuestImage g;
  const char* env = std::getenv("HYPER_TEST_GUEST_STATE");
  const std::string state = env && *env ? env : "/var/cache/hyper/test-guest";
  fs::path dir = fs::temp_directory_path() / ("hyper-guest-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "guest.yaml") << kManifests;
  auto apply = host::runCommand(
      {HYPERCTL_PATH, "--state-dir", state, "apply", "-f", (dir / "guest.yaml").string()});
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (!apply.isOk() || apply->exitCode != 0) {
    g.skipReason = "cannot build the guest kernel and image (hyperctl apply in " + state +
                   "): " + (apply.isOk() ? apply->err : apply.status().message());
    return g;
  }
  auto get = host::runCommand({HYPERCTL_PATH, "--state-dir", state, "get", "builds", "-o", "json"});
  nlohmann::json list = get.isOk() ? nlohmann::json::parse(get->out, nullptr, false) : nullptr;
  if (!list.is_object()) {
    g.skipReason = "hyperctl get builds in " + state + " gave no JSON";
    return g;
  }
  g.kernel = artifactPath(list, state, "guest-kernel", "vmlinuz");
  g.initrd = artifactPath(list, state, "guest-initrd", "initrd");
  if (g.kernel.empty() || g.initrd.empty()) {
    g.skipReason = "the guest Builds in " + state + " name no vmlinuz or initrd";
  }
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

std::string hostBookwormMirror() {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/var/lib/apt/lists", ec)) {
    std::string name = e.path().filename().string();
    const std::string suffix = "_dists_bookworm_InRelease";
    if (name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      std::string path = name.substr(0, name.size() - suffix.size());
      std::replace(path.begin(), path.end(), '_', '/');
      return "http://" + path;
    }
  }
  return "";
}

}  // namespace hyper::test
