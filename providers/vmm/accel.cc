#include "providers/vmm/accel.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

namespace hyper::providers::vmm {

namespace {

// The set of words on the first "flags" line: "vmx" must match a whole word, not "vmxfoo".
Result<bool> cpuHasVirtualisation(const std::string& cpuinfoPath) {
  std::ifstream in(cpuinfoPath);
  if (!in) {
    return Status::error("read " + cpuinfoPath + " <- cannot open");
  }
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) {
      continue;
    }
    size_t colon = line.find(':');
    if (colon == std::string::npos) {
      continue;
    }
    std::istringstream words(line.substr(colon + 1));
    for (std::string w; words >> w;) {
      if (w == "vmx" || w == "svm") {
        return true;
      }
    }
    return false;
  }
  return Status::error("read " + cpuinfoPath + " <- no flags line");
}

Status kvmDeviceOpens(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    return Status::error("open " + path + ": " + std::strerror(errno));
  }
  ::close(fd);
  return Status::ok();
}

}  // namespace

Result<AccelMode> parseAccelMode(std::string_view text) {
  if (text == "auto") {
    return AccelMode::Auto;
  }
  if (text == "kvm") {
    return AccelMode::Kvm;
  }
  if (text == "tcg") {
    return AccelMode::Tcg;
  }
  return Status::error("accel: expected auto, kvm or tcg, got '" + std::string(text) + "'");
}

std::string_view accelName(Accel accel) { return accel == Accel::Kvm ? "kvm" : "tcg"; }

Result<AccelChoice> chooseAccel(AccelMode mode, const AccelProbe& probe) {
  if (mode == AccelMode::Tcg) {
    return AccelChoice{Accel::Tcg, ""};
  }
  std::string why;
  auto flags = cpuHasVirtualisation(probe.cpuinfoPath);
  if (!flags.isOk()) {
    why = flags.status().message();
  } else if (!*flags) {
    why = "the CPU does not advertise vmx or svm in " + probe.cpuinfoPath;
  } else if (Status s = kvmDeviceOpens(probe.kvmDevice); !s.isOk()) {
    why = s.message();
  } else {
    return AccelChoice{Accel::Kvm, ""};
  }
  if (mode == AccelMode::Kvm) {
    return Status::error("accel kvm unavailable <- " + why);
  }
  return AccelChoice{Accel::Tcg, "KVM not used, falling back to TCG (slow) <- " + why};
}

long hostTscKhz(const std::string& cpuinfoPath) {
  std::ifstream in(cpuinfoPath);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("cpu MHz", 0) != 0) {
      continue;
    }
    size_t colon = line.find(':');
    if (colon == std::string::npos) {
      return 0;
    }
    try {
      double mhz = std::stod(line.substr(colon + 1));
      return mhz > 0 ? std::lround(mhz * 1000.0) : 0;
    } catch (const std::exception&) {
      return 0;
    }
  }
  return 0;
}

}  // namespace hyper::providers::vmm
