// hyper_vm_bench: what hyper adds to booting a microVM, and what running VMs cost a reconcile.
//
// 1. apply -> Ready through the engine and the VM provider (observe, plan, tap-less start,
//    readiness on the console, inventory write) against the very QEMU command the driver builds,
//    started by hand and watched for the same console line. Pairs run back to back with the
//    order alternating; the median of the per-pair ratios is the verdict (target: hyper adds
//    under 5%), since a TCG boot varies by seconds between runs.
// 2. A no-op reconcile (unchanged reload + observe + plan) with 1, 5 and 10 VMs running.
//
// Real QEMU (TCG here), the guest kernel and hyper's guest image as Builds (guest_util.h). It
// prints figures; it exits 1 only when something is functionally wrong. Needs root.

#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "host/command.h"
#include "providers/builtin.h"
#include "providers/vmm/qemu_driver.h"
#include "reconciler/engine.h"
#include "reconciler/inventory.h"
#include "reconciler/schema.h"
#include "tests/integration/guest_util.h"

namespace hyper::bench {
namespace {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A file's modification time on the wall clock (the clock file times are on).
std::optional<std::chrono::system_clock::time_point> mtime(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return std::nullopt;
  }
  auto since =
      std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec);
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(since));
}

std::string vmManifest(const std::string& name, const test::GuestImage& image) {
  return "apiVersion: hyper.dev/v1alpha1\nkind: VM\nmetadata: {name: " + name +
         "}\nspec:\n  memoryMiB: 128\n  kernel: {path: " + image.kernel +
         "}\n  initrd: {path: " + image.initrd +
         "}\n  cmdline: \"quiet hyper.ping=0\"\n  readiness: {timeoutSeconds: 600}\n";
}

struct Hyper {
  std::unique_ptr<Engine> engine;
  std::unique_ptr<Inventory> inventory;
};

// Loads `files`, plans and applies them; false (printed) when anything fails.
bool applyAll(Hyper& h, const std::vector<SourceFile>& files) {
  RevisionResult loaded = h.engine->load(files);
  if (!loaded.revision) {
    std::fprintf(stderr, "load: %s", loaded.diagnostics.format().c_str());
    return false;
  }
  auto managed = h.inventory->list();
  if (!managed.isOk()) {
    std::fprintf(stderr, "inventory: %s\n", managed.status().message().c_str());
    return false;
  }
  PlanResult planned = h.engine->plan(*loaded.revision, *managed, PlanOptions{true});
  if (planned.diagnostics.hasErrors()) {
    std::fprintf(stderr, "plan: %s", planned.diagnostics.format().c_str());
    return false;
  }
  ApplyOptions options;
  options.parallelism = 10;
  ApplyReport report =
      h.engine->apply(planned.plan, *loaded.revision, *managed, *h.inventory, options);
  for (const auto& o : report.outcomes) {
    if (!o.status.isOk()) {
      std::fprintf(stderr, "apply %s: %s\n", o.id.str().c_str(), o.status.message().c_str());
      return false;
    }
  }
  return true;
}

// The driver's own QEMU command, started by hand; ms until `hyper-ready` is on the console.
double byHand(const std::string& root, const std::string& name, const test::GuestImage& image) {
  providers::vmm::VmSpec spec;
  spec.name = name;
  spec.memoryMiB = 128;
  spec.kernel = image.kernel;
  spec.initrd = image.initrd;
  spec.cmdline = "quiet hyper.ping=0";
  auto accel = providers::vmm::chooseAccel(providers::vmm::AccelMode::Auto);
  if (!accel.isOk()) {
    return -1;
  }
  long tsc = accel->accel == providers::vmm::Accel::Tcg ? providers::vmm::hostTscKhz() : 0;
  const std::string dir = root + "/" + name;
  fs::create_directories(dir);
  auto argv =
      providers::vmm::QemuDriver::buildArgv("qemu-system-x86_64", spec, accel->accel, dir, tsc);
  auto start = Clock::now();
  auto run = host::runCommand(argv);
  if (!run.isOk() || run->exitCode != 0) {
    std::fprintf(stderr, "qemu by hand: %s\n", run.isOk() ? run->err.c_str() : "not started");
    return -1;
  }
  while (readFile(dir + "/console.log").find("hyper-ready") == std::string::npos) {
    if (Clock::now() - start > std::chrono::minutes(10)) {
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  double took = ms(Clock::now() - start);
  std::string pid = readFile(dir + "/qemu.pid");
  if (!pid.empty()) {
    ::kill(std::stoi(pid), SIGKILL);
  }
  return took;
}

int run(int rounds) {
  if (::geteuid() != 0) {
    std::printf("hyper_vm_bench: skipped (needs root)\n");
    return 0;
  }
  const auto& image = test::guestImage();
  if (!image.skipReason.empty()) {
    std::printf("hyper_vm_bench: skipped (%s)\n", image.skipReason.c_str());
    return 0;
  }
  std::string tmpl = "/tmp/hvb-XXXXXX";  // short: Unix socket paths under it
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return 1;
  }
  const std::string root = tmpl;
  ::setenv("HYPER_VM_RUN_DIR", (root + "/run").c_str(), 1);
  auto kinds = providers::builtinKinds();
  auto inventory = Inventory::open(root + "/state");
  if (!kinds.isOk() || !inventory.isOk()) {
    return 1;
  }
  auto made = (*kinds)->makeProviders(Json::object());
  if (!made.isOk()) {
    return 1;
  }
  Hyper h{std::make_unique<Engine>(std::move(*made), (*kinds)->schemas()), std::move(*inventory)};
  providers::vmm::QemuDriver driver({root + "/run"});
  int status = 0;

  // 1. apply -> Ready against the same QEMU by hand. A TCG boot varies by seconds with what else
  // the machine does, hyper's part is milliseconds: so the two run in pairs, back to back, the
  // order alternating, and the verdict is on the median of the per-pair ratios.
  std::vector<double> hyperMs, handMs, ratios, diffs, ownMs, ownShare;
  for (int round = 0; round < rounds && status == 0; ++round) {
    double hand = -1, viaHyper = -1;
    double own = -1;
    auto timeHyper = [&] {
      auto wallStart = std::chrono::system_clock::now();
      auto start = Clock::now();
      bool ok = applyAll(h, {{"vm.yaml", vmManifest("b" + std::to_string(round), image)}});
      viaHyper = ok ? ms(Clock::now() - start) : -1;
      auto wallEnd = std::chrono::system_clock::now();
      // hyper's own part, without the boot: from the apply to vm.json (written just before QEMU
      // is spawned), and from the console's last write (the ready line: hyper.ping=0, so the
      // guest writes nothing after it) to the end of the apply.
      const std::string dir = root + "/run/b" + std::to_string(round);
      auto spawned = mtime(dir + "/vm.json"), readyAt = mtime(dir + "/console.log");
      if (ok && spawned && readyAt) {
        own = ms(*spawned - wallStart) + ms(wallEnd - *readyAt);
      }
    };
    auto timeHand = [&] { hand = byHand(root + "/hand", "h" + std::to_string(round), image); };
    if (round % 2 == 0) {
      timeHand();
      timeHyper();
    } else {
      timeHyper();
      timeHand();
    }
    if (viaHyper < 0 || hand < 0) {
      status = 1;
      break;
    }
    handMs.push_back(hand);
    hyperMs.push_back(viaHyper);
    ratios.push_back(viaHyper / hand);
    diffs.push_back(viaHyper - hand);
    if (own >= 0) {
      ownMs.push_back(own);
      ownShare.push_back(own / viaHyper);
    }
    std::printf(
        "round %d (%s first): by hand %.0f ms, hyper apply -> Ready %.0f ms (%+.0f ms), of which "
        "hyper's own part %.1f ms\n",
        round, round % 2 == 0 ? "hand" : "hyper", hand, viaHyper, viaHyper - hand, own);
    std::fflush(stdout);
    // The next round's apply prunes this VM (stopping it is not timed: it is in the next apply,
    // so stop it here first).
    (void)driver.stop("b" + std::to_string(round));
  }
  if (status == 0) {
    double ratio = median(ratios);
    std::printf(
        "apply -> Ready over %d pairs: median %.0f ms by hand, %.0f ms through hyper; per pair: "
        "median difference %+.0f ms, median ratio %.3f (target < 1.05: %s)\n",
        rounds, median(handMs), median(hyperMs), median(diffs), ratio,
        ratio < 1.05 ? "PASS" : "MISS");
    std::printf(
        "hyper's own part of an apply (load, observe, plan, tap, spawn; ready seen -> inventory "
        "written): median %.1f ms = %.2f%% of apply -> Ready\n",
        median(ownMs), 100 * median(ownShare));
  }

  // 2. A no-op reconcile with 1, 5 and 10 VMs running.
  std::vector<SourceFile> files;
  for (int n : {1, 5, 10}) {
    if (status != 0) {
      break;
    }
    while (static_cast<int>(files.size()) < n) {
      std::string name = "n" + std::to_string(files.size());
      files.push_back({name + ".yaml", vmManifest(name, image)});
    }
    auto boot = Clock::now();
    if (!applyAll(h, files)) {
      status = 1;
      break;
    }
    std::printf("%d VMs running (booting the new ones took %.1f s)\n", n,
                ms(Clock::now() - boot) / 1000);
    std::vector<double> noop;
    for (int i = 0; i < 20; ++i) {
      auto t = Clock::now();
      RevisionResult loaded = h.engine->load(files);
      auto managed = h.inventory->list();
      PlanResult planned = h.engine->plan(*loaded.revision, *managed, PlanOptions{true});
      noop.push_back(ms(Clock::now() - t));
      if (!planned.plan.empty()) {
        std::fprintf(stderr, "a no-op plan has %zu actions:\n%s", planned.plan.actions.size(),
                     planned.plan.render().c_str());
        status = 1;
        break;
      }
    }
    std::printf("no-op reconcile with %2d VMs: median %.2f ms\n", n, median(noop));
  }

  auto vms = driver.list();
  if (vms.isOk()) {
    for (const auto& vm : *vms) {
      (void)driver.stop(vm.name);
    }
  }
  std::error_code ec;
  fs::remove_all(root, ec);
  return status;
}

}  // namespace
}  // namespace hyper::bench

// hyper_vm_bench [ROUNDS]: pairs of apply -> Ready (default 9).
int main(int argc, char** argv) {
  int rounds = argc > 1 ? std::atoi(argv[1]) : 9;
  return hyper::bench::run(rounds < 1 ? 9 : rounds);
}
