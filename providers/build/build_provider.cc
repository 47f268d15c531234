#include "providers/build/build_provider.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <set>

#include "base/file.h"
#include "host/command.h"
#include "netmodel/net_spec.h"
#include "providers/build/build_spec.h"
#include "providers/build/kernel_build.h"
#include "providers/build/script_build.h"
#include "providers/vmm/qemu_driver.h"
#include "reconciler/provider_kit.h"

namespace hyper::providers::build {

namespace {

constexpr size_t kMaxBusyboxBytes = 64u << 20;
// An initramfs is held in memory while it is made: a file taken from an artifact is bounded.
constexpr size_t kMaxArtifactFileBytes = 256u << 20;

// The first line of `TOOL --version` ("gzip 1.12", "tar (GNU tar) 1.34", "kmod version 30").
Result<std::string> firstVersionLine(const std::string& tool) {
  HYPER_ASSIGN_OR_RETURN(std::string out, host::runChecked({tool, "--version"}));
  std::string line = out.substr(0, out.find('\n'));
  if (line.empty()) {
    return Status::error(tool + " --version printed nothing");
  }
  return line;
}

// hyper's guest init and its default modules are part of what an initramfs with hyperInit is made
// of: their digest is an input, so a new hyper whose init changed builds the image again.
std::string hyperInitDigest() {
  std::string text(guest::guestInitScript());
  for (const auto& m : guest::defaultGuestModules()) {
    text += "\n" + m;
  }
  return store::digestOf(text);
}

// spec.initramfs.kernel.build, or "".
// A script's builder Builds: {field, Build name, artifact, input name}; absent ones left out.
struct BuilderRef {
  const char* field;
  std::string build;
  const char* artifact;
  const char* input;
};
std::vector<BuilderRef> builderRefsOf(const Json& spec) {
  std::vector<BuilderRef> out;
  if (spec.value("type", "") != "script") {
    return out;
  }
  const Json builder = spec.value("script", Json::object()).value("builder", Json::object());
  for (const auto& [field, artifact, input] :
       {std::tuple<const char*, const char*, const char*>{"kernel", "vmlinuz", "builderKernel"},
        {"initrd", "initrd", "builderInitrd"},
        {"rootfs", "rootfs", "builderRootfs"}}) {
    auto it = builder.find(field);
    if (it != builder.end() && it->is_object() && it->contains("build")) {
      out.push_back({field, it->value("build", ""), artifact, input});
    }
  }
  return out;
}

// A script's Secrets, by name.
std::vector<std::string> scriptSecretsOf(const Json& spec) {
  std::vector<std::string> out;
  if (spec.value("type", "") != "script") {
    return out;
  }
  for (const auto& s : spec.value("script", Json::object()).value("secrets", Json::array())) {
    std::string name = s.value("secret", "");
    if (std::find(out.begin(), out.end(), name) == out.end()) {
      out.push_back(name);
    }
  }
  return out;
}

// An initramfs's files taken from other Builds' artifacts.
struct ArtifactFile {
  std::string field;  // "spec.initramfs.files[2].artifact"
  std::string path;
  std::string build;
  std::string name;
};
std::vector<ArtifactFile> artifactFilesOf(const Json& spec) {
  std::vector<ArtifactFile> out;
  if (spec.value("type", "") != "initramfs") {
    return out;
  }
  const Json files = spec.value("initramfs", Json::object()).value("files", Json::array());
  for (size_t i = 0; i < files.size(); ++i) {
    auto a = files[i].find("artifact");
    if (a != files[i].end() && a->is_object()) {
      out.push_back({"spec.initramfs.files[" + std::to_string(i) + "].artifact",
                     files[i].value("path", ""), a->value("build", ""), a->value("name", "")});
    }
  }
  return out;
}

// The objects of the request's revision (none when it has none).
const std::vector<std::shared_ptr<const Object>>& revisionOf(const ObserveRequest& req) {
  static const std::vector<std::shared_ptr<const Object>> kNone;
  return req.revision != nullptr ? *req.revision : kNone;
}

// The network of a script Build's builder from the revision: its NetworkPolicy `policy` (no
// selector: the builder is no VM a selector could pick, so the policy must cover the whole
// network) and that policy's Network, which carries no VM (builders take its addresses from the
// top down, VMs from the bottom up; a network for builders only keeps them apart).
// {"policy", "network", "bridge", "cidr", "gateway"}; null with an error in `diags` otherwise.
Json builderNetworkOf(const Object& build, const std::string& policy,
                      const std::vector<std::shared_ptr<const Object>>& revision,
                      Diagnostics& diags) {
  const std::string field = "spec.script.network.policy";
  const Object* policyObject = nullptr;
  for (const auto& o : revision) {
    if (o->id.kind == "NetworkPolicy" && o->id.name == policy) {
      policyObject = o.get();
    }
  }
  if (policyObject == nullptr) {
    diags.error(build.id, field,
                "NetworkPolicy/" + policy + " is not in the revision: expected a NetworkPolicy " +
                    "of that name (its network is the builder's)");
    return nullptr;
  }
  auto p = netmodel::parsePolicySpec(*policyObject);
  if (!p.isOk()) {
    diags.error(build.id, field, "NetworkPolicy/" + policy + ": " + p.status().message());
    return nullptr;
  }
  if (p->matchLabels) {
    diags.error(build.id, field,
                "NetworkPolicy/" + policy +
                    " has a selector: expected a policy without one (a builder is no VM a "
                    "selector picks; the policy of a build network covers all of it)");
    return nullptr;
  }
  const Object* networkObject = nullptr;
  std::vector<std::string> vms;
  for (const auto& o : revision) {
    if (o->id.kind == "Network" && o->id.name == p->network) {
      networkObject = o.get();
    }
    if (o->id.kind == "VM" &&
        o->spec->value("network", Json::object()).value("name", "") == p->network) {
      vms.push_back(o->id.str());
    }
  }
  if (networkObject == nullptr) {
    diags.error(build.id, field,
                "NetworkPolicy/" + policy + "'s Network/" + p->network + " is not in the revision");
    return nullptr;
  }
  if (!vms.empty()) {
    diags.error(build.id, field,
                "Network/" + p->network + " (of NetworkPolicy/" + policy + ") carries " +
                    vms.front() + (vms.size() > 1 ? " and others" : "") +
                    ": expected a network for builders only (a builder's address must not be a "
                    "VM's)");
    return nullptr;
  }
  auto n = netmodel::parseNetworkSpec(*networkObject);
  if (!n.isOk()) {
    diags.error(build.id, field, "Network/" + p->network + ": " + n.status().message());
    return nullptr;
  }
  return Json{{"policy", policy},
              {"network", n->name},
              {"bridge", n->bridge},
              {"cidr", n->cidr.canonical().str()},
              {"gateway", netmodel::formatIpv4(n->gateway)}};
}

// True when the file starts like an ext4 image (its superblock's magic at 1080).
bool isExt4Image(const std::string& path) {
  auto head = readFile(path, 2048);
  return head.isOk() && head->size() >= 1082 && static_cast<unsigned char>((*head)[1080]) == 0x53 &&
         static_cast<unsigned char>((*head)[1081]) == 0xEF;
}

std::string kernelBuildOf(const Json& spec) {
  auto i = spec.find("initramfs");
  if (i == spec.end() || !i->is_object()) {
    return "";
  }
  auto k = i->find("kernel");
  return k != i->end() && k->is_object() ? k->value("build", "") : "";
}

// The artifacts a record names ({"initrd": {"digest", "size"}}), as handles keep them.
const Json& artifactsOf(const Json& handles) {
  static const Json kNone = Json::object();
  auto it = handles.is_object() ? handles.find("artifacts") : handles.end();
  return it != handles.end() && it->is_object() ? *it : kNone;
}

// handles.key: the key the last apply built; "" for none (a create that never completed has no
// handles at all).
std::string keyOf(const Json& handles) {
  return handles.is_object() && handles.contains("key") && handles["key"].is_string()
             ? handles["key"].get<std::string>()
             : "";
}

}  // namespace

std::string buildKey(const Json& spec, const Json& inputs) {
  Json keyed = {{"builder", BuildProvider::kBuilderVersion}, {"spec", spec}, {"inputs", inputs}};
  return store::digestOf(canonicalJson(keyed)).substr(7);  // without "sha256:"
}

BuildProvider::BuildProvider(BuildProviderConfig config)
    : config_(std::move(config)),
      store_(config_.stateDir + "/store"),
      apt_(AptConfig{config_.debCache, config_.buildTimeout}),
      builders_(config_.builderDriver ? config_.builderDriver
                                      : std::make_shared<vmm::QemuDriver>(
                                            vmm::QemuDriverOptions{config_.builderRunRoot})),
      keyRing_(config_.stateDir),
      doneFd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      queue_(
          config_.concurrency, [this](ProgressEvent e) { report(std::move(e)); },
          [this] {
            uint64_t one = 1;
            (void)!::write(doneFd_.get(), &one, sizeof one);
          }) {}

void BuildProvider::validate(const ValidateRequest& req, ValidateResponse& resp) const {
  for (const Object* o : req.objects) {
    parseBuildSpec(o->id, o->spec, resp.diagnostics, o->files);
  }
}

std::vector<Reference> BuildProvider::references(const Object& object) const {
  std::vector<Reference> out;
  std::string kernel = kernelBuildOf(object.spec);
  if (!kernel.empty()) {
    out.push_back({"spec.initramfs.kernel.build", {"Build", kernel}});
  }
  for (const auto& r : builderRefsOf(object.spec)) {
    out.push_back({std::string("spec.script.builder.") + r.field + ".build", {"Build", r.build}});
  }
  for (const auto& f : artifactFilesOf(object.spec)) {
    out.push_back({f.field + ".build", {"Build", f.build}});
  }
  const Json secrets = object.spec->value("script", Json::object()).value("secrets", Json::array());
  for (size_t i = 0; i < secrets.size() && object.spec->value("type", "") == "script"; ++i) {
    out.push_back({"spec.script.secrets[" + std::to_string(i) + "].secret",
                   {"Secret", secrets[i].value("secret", "")}});
  }
  // The builder's policy is applied (and its Network, which it references) before the build.
  const std::string policy = object.spec->value("script", Json::object())
                                 .value("network", Json::object())
                                 .value("policy", "");
  if (!policy.empty() && object.spec->value("type", "") == "script") {
    out.push_back({"spec.script.network.policy", {"NetworkPolicy", policy}});
  }
  return out;
}

Status BuildProvider::scriptInputs(
    const Object& object, Json& inputs, std::string& pending,
    const std::function<Json(const std::string&, const std::string&)>& digestOf, Diagnostics& diags,
    bool inApply) {
  for (const auto& r : builderRefsOf(object.spec)) {
    Json c = digestOf(r.build, r.artifact);
    const std::string field = std::string("spec.script.builder.") + r.field;
    if (c.contains("error")) {
      diags.error(object.id, field, c["error"].get<std::string>());
      return Status::error(c["error"].get<std::string>());
    }
    if (c.value("pending", false)) {
      pending = "Build/" + r.build;
      return Status::ok();
    }
    inputs[r.input] = c["digest"];
  }
  auto e2fs = toolVersion("e2fsprogs");
  if (!e2fs.isOk()) {
    diags.error(object.id, "", e2fs.status().message());
    return e2fs.status();
  }
  inputs["e2fsprogs"] = *e2fs;
  // A followed branch or tag: the commit it is at now is an input, so a new commit on it is a
  // new key. Apply keeps the commit its plan resolved (the caller passes it in `inputs`).
  const Json git = object.spec->value("script", Json::object())
                       .value("source", Json::object())
                       .value("git", Json::object());
  if (git.contains("ref") && !inputs.contains("commit")) {
    auto commit = refCommit(git.value("url", ""), git.value("ref", ""));
    if (!commit.isOk()) {
      diags.error(object.id, "spec.script.source.git.ref", commit.status().message());
      return commit.status();
    }
    inputs["commit"] = *commit;
  }
  (void)inApply;
  return Status::ok();
}

Result<std::string> BuildProvider::refCommit(const std::string& url, const std::string& ref) {
  const std::string cacheKey = url + "\n" + ref;
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = refCommits_.find(cacheKey);
    if (it != refCommits_.end() && now - it->second.second < kRefCommitTtl) {
      return it->second.first;
    }
  }
  BuildSpec spec;
  spec.gitUrl = url;
  spec.gitRef = ref;
  HYPER_ASSIGN_OR_RETURN(std::string commit, resolveSourceCommit(spec, config_.stateDir + "/git",
                                                                 std::chrono::seconds(30)));
  std::lock_guard<std::mutex> lk(mu_);
  if (refCommits_.size() >= 256) {
    refCommits_.clear();
  }
  refCommits_[cacheKey] = {commit, now};
  return commit;
}

Result<uint32_t> BuildProvider::claimBuilderAddress(const std::string& name,
                                                    const std::string& network,
                                                    uint32_t networkAddress, int prefix,
                                                    uint32_t gateway) {
  std::lock_guard<std::mutex> lk(mu_);
  std::set<uint32_t> taken;
  for (const auto& [other, place] : builderAddresses_) {
    if (other != name && place.first == network) {
      taken.insert(place.second);
    }
  }
  const netmodel::Cidr cidr{networkAddress, prefix};
  for (uint32_t ip = cidr.broadcast() - 1; ip > cidr.network(); --ip) {
    if (ip != gateway && taken.count(ip) == 0) {
      builderAddresses_[name] = {network, ip};
      return ip;
    }
  }
  return Status::error("no free address for a builder on Network/" + network + " (" + cidr.str() +
                       "): " + std::to_string(taken.size()) +
                       " builders have one; expected a bigger cidr or fewer builds at once");
}

void BuildProvider::releaseBuilderAddress(const std::string& name) {
  std::lock_guard<std::mutex> lk(mu_);
  builderAddresses_.erase(name);
}

std::string BuildProvider::cachedKey(const std::string& name, const Json& spec,
                                     const Json& inputs) {
  // Comparing the spec and inputs with the ones the key was made of costs a fraction of the
  // canonical JSON and SHA-256 a key takes (hyper_build_bench: the keys were 40% of a no-op
  // observe of 1,000 Builds).
  std::lock_guard<std::mutex> lk(mu_);
  auto it = keys_.find(name);
  if (it != keys_.end() && it->second.spec == spec && it->second.inputs == inputs) {
    return it->second.key;
  }
  std::string key = buildKey(spec, inputs);
  keys_[name] = {spec, inputs, key};
  return key;
}

template <typename T, typename Compute>
Result<T> BuildProvider::remembered(std::map<std::string, T>& cache, const std::string& key,
                                    const std::string& stamp, Compute compute) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!stamp.empty() && stamp != listsStamp_) {
      listsStamp_ = stamp;  // apt's lists moved: what was read from them is read again
      suites_.clear();
      missing_.clear();
    }
    auto it = cache.find(key);
    if (it != cache.end()) {
      return it->second;
    }
  }
  // Computed outside the lock (it runs commands); two observes may both compute it.
  HYPER_ASSIGN_OR_RETURN(T value, compute());
  std::lock_guard<std::mutex> lk(mu_);
  if (stamp.empty() || stamp == listsStamp_) {
    if (cache.size() >= 64) {
      cache.clear();  // a handful of tools, kernels and suites at a time
    }
    cache[key] = value;
  }
  return value;
}

Result<std::string> BuildProvider::toolVersion(const std::string& tool) {
  return remembered<std::string>(toolVersions_, tool, "", [&]() -> Result<std::string> {
    if (tool == "erofs-utils" || tool == "e2fsprogs") {
      // mkfs.erofs has no --version, mke2fs's -V goes to stderr: the package's version says which
      // one makes the image.
      return host::runChecked({"dpkg-query", "-W", "-f=" + tool + " ${Version}", tool});
    }
    return firstVersionLine(tool);
  });
}

Result<SuiteIndex> BuildProvider::suiteIndex(const std::string& mirror, const std::string& suite) {
  return remembered<SuiteIndex>(suites_, mirror + " " + suite, aptListsStamp(), [&] {
    return findSuiteIndex("/var/lib/apt/lists", mirror, suite);
  });
}

Result<std::vector<std::string>> BuildProvider::missingPackages(
    const std::vector<std::string>& packages) {
  std::string name;
  for (const auto& p : packages) {
    name += p + " ";
  }
  return remembered<std::vector<std::string>>(missing_, name, aptListsStamp(),
                                              [&] { return unknownPackages(packages); });
}

Result<std::string> BuildProvider::modulesDep(const std::string& digest) {
  return remembered<std::string>(modulesDeps_, digest, "", [&] {
    host::CommandOptions options;
    options.timeout = std::chrono::seconds(60);
    return readModulesDep(store_.pathOf(digest), options);
  });
}

namespace {

// The digest of a tool file hyper puts in images (busybox, the build agent), read again only when
// its stat stamp moved.
Result<std::string> stampedDigest(const std::string& path, const std::string& what, std::mutex& mu,
                                  std::string& stampCache, std::string& digestCache) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return Status::error(what + " " + path + " is missing");
  }
  std::string stamp = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
                      std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
                      std::to_string(st.st_mtim.tv_nsec);
  {
    std::lock_guard<std::mutex> lk(mu);
    if (stamp == stampCache) {
      return digestCache;
    }
  }
  HYPER_ASSIGN_OR_RETURN(std::string bytes, readFile(path, kMaxBusyboxBytes));
  std::string digest = store::digestOf(bytes);
  std::lock_guard<std::mutex> lk(mu);
  stampCache = stamp;
  digestCache = digest;
  return digest;
}

}  // namespace

Result<std::string> BuildProvider::busyboxDigest() {
  auto d = stampedDigest(config_.busybox, "busybox", mu_, busyboxStamp_, busyboxDigest_);
  if (!d.isOk()) {
    return Status::error(
        d.status().message() +
        " (Debian's busybox-static has it; providers.build.busybox names another)");
  }
  return d;
}

Result<std::string> BuildProvider::buildAgentDigest() const {
  if (config_.buildAgent.empty()) {
    return std::string();
  }
  auto d = stampedDigest(config_.buildAgent, "hyper-build-agent", mu_, agentStamp_, agentDigest_);
  if (!d.isOk()) {
    return Status::error(d.status().message() +
                         " (it is built beside hyperctl and hyperd; providers.build.buildAgent "
                         "names another)");
  }
  return d;
}

// What one observe shares between its Builds: busybox's digest (one file for all) and the index
// of the Builds an initramfs takes its kernel from (made by the first that needs it).
struct BuildProvider::ObserveScope {
  const ObserveRequest* req = nullptr;
  std::optional<std::string> busybox;
  std::optional<store::BuildIndex> builds;
};

std::optional<Json> BuildProvider::resolveInputs(const Object& object, ObserveScope& scope,
                                                 Diagnostics& diags, std::string& pending) {
  const Json& spec = object.spec;
  const std::string type = spec.value("type", "");
  Json inputs = Json::object();
  // A file source's bytes can move under an unchanged spec: each is an input by its digest.
  for (const auto& [source, blob] : object.files) {
    inputs["source:" + source] = blob->digest;
  }
  auto tool = [&](const std::string& name) {
    auto v = toolVersion(name);
    if (!v.isOk()) {
      diags.error(object.id, "", v.status().message());
      return false;
    }
    inputs[name] = *v;
    return true;
  };
  if (type == "debian-kernel") {
    const std::string package =
        spec.value("debianKernel", Json::object()).value("package", "linux-image-amd64");
    auto p = apt_.resolveKernel(package);
    if (!p.isOk()) {
      diags.error(object.id, "spec.debianKernel.package", p.status().message());
      return std::nullopt;
    }
    inputs["package"] = p->name + " " + p->version;
    inputs["deb"] = "sha256:" + p->sha256;
    if (!tool("dpkg-deb") || !tool("depmod") || !tool("tar")) {
      return std::nullopt;
    }
    return inputs;
  }
  if (type == "script") {
    if (!scope.builds) {
      scope.builds = store::BuildIndex::of(scope.req->revision, scope.req->inventory);
    }
    // The builder's Builds must be of the types it boots; its Secrets must have the values.
    for (const auto& r : builderRefsOf(spec)) {
      const std::string want = std::string(r.field) == "kernel"   ? "debian-kernel"
                               : std::string(r.field) == "initrd" ? "initramfs"
                                                                  : "rootfs";
      for (const auto& other : revisionOf(*scope.req)) {
        if (other->id.kind != "Build" || other->id.name != r.build) {
          continue;
        }
        const std::string otherType = other->spec->value("type", "");
        const bool agent =
            other->spec->value("initramfs", Json::object()).value("hyperInit", false);
        if (otherType != want || (want == "initramfs" && !agent)) {
          diags.error(object.id, std::string("spec.script.builder.") + r.field + ".build",
                      "Build/" + r.build + " is " +
                          (otherType == want ? "an initramfs without hyperInit: true"
                                             : "of type " + otherType) +
                          ": expected " +
                          (want == "initramfs" ? "an initramfs Build with hyperInit: true (hyper's "
                                                 "init and build agent boot the builder)"
                                               : "a Build of type " + want));
          return std::nullopt;
        }
      }
    }
    const Json secrets = spec.value("script", Json::object()).value("secrets", Json::array());
    for (size_t i = 0; i < secrets.size(); ++i) {
      const std::string name = secrets[i].value("secret", "");
      const std::string key = secrets[i].value("key", "");
      for (const auto& other : revisionOf(*scope.req)) {
        if (other->id.kind == "Secret" && other->id.name == name) {
          const Json& sealed = other->spec->value("sealed", Json::object());
          const Json& fromFile = other->spec->value("fromFile", Json::object());
          if (!sealed.contains(key) && !fromFile.contains(key)) {
            diags.error(object.id, "spec.script.secrets[" + std::to_string(i) + "].key",
                        "Secret " + name + " has no value \"" + key +
                            "\": expected a key of its spec.sealed or spec.fromFile");
            return std::nullopt;
          }
        }
      }
    }
    // The builder's network: what it is now is an input (a build with another network may
    // fetch other things).
    const std::string policy =
        spec.value("script", Json::object()).value("network", Json::object()).value("policy", "");
    if (!policy.empty()) {
      Json network = builderNetworkOf(object, policy, revisionOf(*scope.req), diags);
      if (network.is_null()) {
        return std::nullopt;
      }
      inputs["network"] = std::move(network);
    }
    auto digestOf = [&](const std::string& build, const std::string& artifact) {
      return store::artifactContext(build, artifact, *scope.builds, store_);
    };
    if (!scriptInputs(object, inputs, pending, digestOf, diags, false).isOk() || !pending.empty()) {
      return std::nullopt;
    }
    return inputs;
  }
  if (type == "rootfs") {
    const Json rootfs = spec.value("rootfs", Json::object());
    const std::string suite = rootfs.value("suite", "");
    const std::string mirror = rootfs.value("mirror", "http://deb.debian.org/debian");
    auto index = suiteIndex(mirror, suite);
    if (!index.isOk()) {
      diags.error(object.id, "spec.rootfs.suite", index.status().message());
      return std::nullopt;
    }
    const auto packages = rootfs.value("packages", std::vector<std::string>{});
    auto missing = missingPackages(packages);
    if (!missing.isOk()) {
      diags.error(object.id, "spec.rootfs.packages", missing.status().message());
      return std::nullopt;
    }
    for (const std::string& name : *missing) {
      size_t i = std::find(packages.begin(), packages.end(), name) - packages.begin();
      diags.error(object.id, "spec.rootfs.packages[" + std::to_string(i) + "]",
                  "package \"" + name +
                      "\" is not in the host's apt lists: expected a Debian package name "
                      "(apt-get update refreshes the lists)");
    }
    if (!missing->empty()) {
      return std::nullopt;
    }
    inputs["index"] = index->digest;
    inputs["indexDate"] = suite + " " + index->date;
    if (!tool("mmdebstrap") ||
        !tool(rootfs.value("format", "erofs") == "ext4" ? "e2fsprogs" : "erofs-utils")) {
      return std::nullopt;
    }
    return inputs;
  }
  if (!tool("gzip")) {
    return std::nullopt;
  }
  const Json initramfs = spec.value("initramfs", Json::object());
  if (initramfs.value("busybox", true)) {
    if (!scope.busybox) {
      auto digest = busyboxDigest();
      if (!digest.isOk()) {
        diags.error(object.id, "spec.initramfs.busybox", digest.status().message());
        return std::nullopt;
      }
      scope.busybox = *digest;
    }
    inputs["busybox"] = *scope.busybox;
  }
  if (initramfs.value("hyperInit", false)) {
    inputs["hyperInit"] = hyperInitDigest();
    auto agent = buildAgentDigest();
    if (!agent.isOk()) {
      diags.error(object.id, "spec.initramfs.hyperInit", agent.status().message());
      return std::nullopt;
    }
    if (!agent->empty()) {
      inputs["buildAgent"] = *agent;
    }
  }
  const std::string kernel = kernelBuildOf(spec);
  if (!kernel.empty()) {
    if (!scope.builds) {
      scope.builds = store::BuildIndex::of(scope.req->revision, scope.req->inventory);
    }
    const std::string artifact = initramfs["kernel"].value("artifact", "modules");
    Json c = store::artifactContext(kernel, artifact, *scope.builds, store_);
    if (c.contains("error")) {
      diags.error(object.id, "spec.initramfs.kernel", c["error"].get<std::string>());
      return std::nullopt;
    }
    if (c.value("pending", false)) {
      pending = "Build/" + kernel;
      return std::nullopt;
    }
    const std::string digest = c["digest"];
    inputs["kernel"] = digest;
    // A module the kernel does not have is the manifest's mistake: say so before any build.
    Diagnostics local;
    BuildSpec parsed = parseBuildSpec(object.id, spec, local);
    auto dep = modulesDep(digest);
    if (!dep.isOk()) {
      diags.error(
          object.id, "spec.initramfs.kernel",
          "Build/" + kernel + "'s " + artifact + " " + digest + " <- " + dep.status().message());
      return std::nullopt;
    }
    bool ok = true;
    for (size_t i = 0; i < parsed.modules.size(); ++i) {
      if (!guest::resolveModules(*dep, {parsed.modules[i]}).isOk()) {
        diags.error(object.id, "spec.initramfs.modules[" + std::to_string(i) + "]",
                    "Build/" + kernel + "'s kernel has no module \"" + parsed.modules[i] +
                        "\": expected a name from its modules.dep (like virtio_net)");
        ok = false;
      }
    }
    if (!ok) {
      return std::nullopt;
    }
  }
  for (const auto& f : artifactFilesOf(spec)) {
    if (!scope.builds) {
      scope.builds = store::BuildIndex::of(scope.req->revision, scope.req->inventory);
    }
    Json c = store::artifactContext(f.build, f.name, *scope.builds, store_);
    if (c.contains("error")) {
      diags.error(object.id, f.field, c["error"].get<std::string>());
      return std::nullopt;
    }
    if (c.value("pending", false)) {
      pending = "Build/" + f.build;
      return std::nullopt;
    }
    inputs[artifactInput(f.path)] = c["digest"];
  }
  return inputs;
}

std::optional<Json> BuildProvider::keptRecord(const Object& object, const std::string& key,
                                              const std::string& kernelDigest) const {
  std::optional<Json> record = store_.lookupKey(key);
  if (!record || !record->contains("inputs") || !(*record)["inputs"].is_object()) {
    return std::nullopt;  // gone from the store (gc), or not a record hyper wrote
  }
  const Json& inputs = (*record)["inputs"];
  // The spec that made it: the key is of the spec and the inputs together.
  if (buildKey(object.spec, inputs) != key) {
    return std::nullopt;
  }
  // An initramfs takes the modules of the kernel its kernel Build has now, never others.
  if (!kernelDigest.empty() && inputs.value("kernel", "") != kernelDigest) {
    return std::nullopt;
  }
  // Nor another hyper's guest init: it speaks with this hyper (readiness, the secrets channel),
  // so an image made by an older hyper is not kept, unlike one whose packages moved.
  if (inputs.contains("hyperInit") && inputs["hyperInit"] != hyperInitDigest()) {
    return std::nullopt;
  }
  // Nor another build agent than this hyper's (the builder channel's other end).
  if (inputs.contains("hyperInit")) {
    auto agent = buildAgentDigest();
    if (!agent.isOk() || inputs.value("buildAgent", "") != *agent) {
      return std::nullopt;
    }
  }
  return record;
}

bool BuildProvider::keepKey(const Object& object, const ManagedRecord* record, ObservedState& s,
                            ObserveScope& scope) {
  const ObserveRequest& req = *scope.req;
  if (req.keptKeys == nullptr) {
    return false;
  }
  auto kept = req.keptKeys->find(object.id.str());
  if (kept == req.keptKeys->end() || kept->second.empty()) {
    return false;
  }
  // Built from this spec and in force already: the common case of a converged reconcile,
  // decided with no store lookup.
  const bool sameSpec = record != nullptr && record->spec == object.spec;
  const bool withHyperInit = object.spec->contains("initramfs") &&
                             object.spec["initramfs"].is_object() &&
                             object.spec["initramfs"].value("hyperInit", false);
  const std::vector<ArtifactFile> artifactFiles = artifactFilesOf(object.spec);
  if (sameSpec && s.exists && keyOf(record->handles) == kept->second.front() && !withHyperInit &&
      artifactFiles.empty()) {
    s.context = {{"key", kept->second.front()}, {"kept", true}};
    return true;
  }
  std::string kernelDigest;
  const std::string kernel = kernelBuildOf(object.spec);
  if (!kernel.empty()) {
    if (!scope.builds) {
      scope.builds = store::BuildIndex::of(req.revision, req.inventory);
    }
    const std::string artifact =
        object.spec["initramfs"]["kernel"].value("artifact", std::string("modules"));
    Json c = store::artifactContext(kernel, artifact, *scope.builds, store_);
    if (c.contains("error")) {
      return false;  // resolveInputs says what is wrong
    }
    if (c.value("pending", false)) {
      // Known once that Build is applied: apply looks at these keys again then.
      s.context = {{"pending", "Build/" + kernel}, {"keptKeys", kept->second}};
      return true;
    }
    kernelDigest = c["digest"];
  }
  // Files taken from other Builds' artifacts: only a key made from what they have now is kept.
  Json fileDigests = Json::object();
  for (const auto& f : artifactFiles) {
    if (!scope.builds) {
      scope.builds = store::BuildIndex::of(req.revision, req.inventory);
    }
    Json c = store::artifactContext(f.build, f.name, *scope.builds, store_);
    if (c.contains("error")) {
      return false;
    }
    if (c.value("pending", false)) {
      s.context = {{"pending", "Build/" + f.build}, {"keptKeys", kept->second}};
      return true;
    }
    fileDigests[artifactInput(f.path)] = c["digest"];
  }
  for (const std::string& key : kept->second) {
    if (sameSpec && s.exists && keyOf(record->handles) == key && !withHyperInit &&
        artifactFiles.empty()) {
      s.context = {{"key", key}, {"kept", true}};
      return true;
    }
    std::optional<Json> found = keptRecord(object, key, kernelDigest);
    for (const auto& [input, digest] : fileDigests.items()) {
      if (found && (*found)["inputs"].value(input, "") != digest) {
        found.reset();
      }
    }
    if (found) {
      s.context = {{"key", key}, {"inputs", (*found)["inputs"]}, {"cached", true}, {"kept", true}};
      return true;
    }
  }
  return false;
}

void BuildProvider::observe(const ObserveRequest& req, ObserveResponse& resp) {
  auto fromRecord = [&](const ManagedRecord* r, ObservedState& s) {
    if (r == nullptr) {
      return;
    }
    const Json& artifacts = artifactsOf(r->handles);
    s.exists = !artifacts.empty();
    for (const auto& [name, a] : artifacts.items()) {
      std::string digest = a.value("digest", "");
      if (!store_.has(digest)) {
        s.exists = false;
        s.note = "artifact " + name + " (" + digest + ") is gone from the store";
      }
    }
    s.fields = {{"key", keyOf(r->handles)}, {"artifacts", artifacts}};
    s.fingerprint = s.exists ? r->fingerprint : "";
  };
  std::map<ObjectId, const ManagedRecord*> records;
  for (const ManagedRecord* r : req.managed) {
    records[r->id] = r;
  }
  // Inputs are resolved once per observe, not once per Build: busybox is one file for all.
  ObserveScope scope;
  scope.req = &req;
  for (const Object* o : req.desired) {
    ObservedState& s = resp.observed[o->id];
    auto rec = records.find(o->id);
    fromRecord(rec == records.end() ? nullptr : rec->second, s);
    guarded(resp.diagnostics, o->id, "observe", [&] {
      const ManagedRecord* record = rec == records.end() ? nullptr : rec->second;
      if (keepKey(*o, record, s, scope)) {
        return;
      }
      std::string pending;
      auto inputs = resolveInputs(*o, scope, resp.diagnostics, pending);
      if (!pending.empty()) {
        s.context = {{"pending", pending}};
        // A builder's network is known while it waits (resolveInputs checked it): apply takes it
        // from the plan, since it sees no revision.
        const std::string policy = o->spec->value("script", Json::object())
                                       .value("network", Json::object())
                                       .value("policy", "");
        if (!policy.empty() && o->spec->value("type", "") == "script") {
          Diagnostics ignored;
          Json network = builderNetworkOf(*o, policy, revisionOf(req), ignored);
          if (network.is_object()) {
            s.context["network"] = std::move(network);
          }
        }
        return;
      }
      if (!inputs) {
        return;  // the diagnostics say why
      }
      std::string key = cachedKey(o->id.name, o->spec, *inputs);
      // Whether the store already has this key's artifacts, and the inputs apply builds with,
      // matter only when there is something to build: a built object whose key is unchanged, the
      // common case of a no-op reconcile, needs neither (plan returns at once), so the store is
      // not looked up and the inputs are not copied (hyper_build_bench: the lookups were 40% of
      // it).
      const bool built = rec != records.end() && s.exists && keyOf(rec->second->handles) == key;
      s.context = {{"key", key}};
      if (!built) {
        s.context["inputs"] = std::move(*inputs);
        s.context["cached"] = store_.lookupKey(key).has_value();
      }
    });
  }
  for (const ManagedRecord* r : req.managed) {
    if (resp.observed.count(r->id) == 0) {
      fromRecord(r, resp.observed[r->id]);
    }
  }
}

void BuildProvider::plan(const PlanRequest& req, PlanResponse& resp) const {
  if (planPrune(req, resp)) {
    return;
  }
  guarded(resp.diagnostics, req.id, "plan", [&] {
    if (req.observed == nullptr) {
      return;
    }
    const Json& context = req.observed->context;
    if (context.contains("pending")) {
      // Its inputs are known once the Build it takes from is built, earlier in the same apply.
      const std::string waits = context["pending"];
      PlanAction a;
      a.type = req.managed == nullptr ? ActionType::Create : ActionType::Update;
      a.reason = "waits for " + waits + ": an artifact of it is an input";
      if (req.managed == nullptr) {
        diffJson("spec", Json(), req.desired->spec, a.changes);
      } else {
        diffJson("spec", req.managed->spec, req.desired->spec, a.changes);
      }
      a.changes.push_back({"key", req.managed ? Json(keyOf(req.managed->handles)) : Json(),
                           "(after " + waits + ")"});
      if (context.contains("keptKeys")) {
        a.privateData = {{"keptKeys", context["keptKeys"]}};
      }
      if (context.contains("network")) {
        a.privateData["network"] = context["network"];
      }
      resp.action = std::move(a);
      return;
    }
    if (!context.contains("key")) {
      return;  // observe said why
    }
    const std::string key = context["key"];
    const bool cached = context.value("cached", false);
    PlanAction a;
    const Json inputs = context.value("inputs", Json::object());  // absent: built, nothing to do
    a.privateData = {{"key", key}, {"inputs", inputs}};
    if (req.managed == nullptr) {
      a.type = ActionType::Create;
      a.reason = cached ? "not built here yet (its key is in the store: no work)" : "not built";
      diffJson("spec", Json(), req.desired->spec, a.changes);
      a.changes.push_back({"key", Json(), key});
    } else {
      const Json& handles = req.managed->handles;
      const std::string oldKey = keyOf(handles);
      if (oldKey == key && req.observed->exists) {
        return;  // built, and its artifacts are in the store
      }
      a.type = ActionType::Update;
      if (oldKey == key) {
        a.drift = true;
        a.reason =
            req.observed->note.empty() ? "artifacts gone from the store" : req.observed->note;
      } else {
        std::vector<FieldChange> changes;
        diffJson("spec", req.managed->spec, req.desired->spec, changes);
        const Json inputsThen =
            handles.is_object() && handles.contains("inputs") ? handles["inputs"] : Json::object();
        diffJson("inputs", inputsThen, inputs, changes);
        a.reason = context.value("kept", false)
                       ? "this content was applied before with key " + key.substr(0, 12) +
                             ": its artifacts are taken again (no build)"
                   : changes.empty() ? "the builder changed"
                   : changes.front().path.rfind("inputs", 0) == 0
                       ? "an input changed (" + changes.front().path + ")"
                       : "spec changed";
        a.changes = std::move(changes);
      }
      a.changes.push_back({"key", oldKey, key});
    }
    resp.action = std::move(a);
  });
}

void BuildProvider::writeLog(const std::string& name, const std::string& text) const {
  std::string dir = config_.stateDir + "/builds";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  (void)writeFileAtomically(dir + "/" + name + ".log", text, 0644);
}

Status BuildProvider::writeProvenance(const std::string& key, const Json& spec, const Json& record,
                                      bool always) {
  std::vector<store::ProvenanceSubject> subjects;
  bool missing = always;
  for (const auto& [name, a] : record["artifacts"].items()) {
    subjects.push_back({name, a.value("digest", "")});
    missing = missing || !store_.provenanceOf(subjects.back().digest).isOk();
  }
  if (!missing) {
    return Status::ok();
  }
  std::lock_guard<std::mutex> lk(mu_);
  if (!hostKey_) {
    HYPER_ASSIGN_OR_RETURN(hostKey_, store::HostKey::loadOrCreate(config_.stateDir));
  }
  const std::string type = record.value("type", "");
  Json statement =
      store::provenanceStatement(subjects, "https://hyper.dev/build/" + type + "/v1", spec,
                                 record.value("inputs", Json::object()), kBuilderVersion, key);
  HYPER_ASSIGN_OR_RETURN(Json envelope, store::signEnvelope(statement, *hostKey_));
  for (const auto& s : subjects) {
    HYPER_RETURN_IF_ERROR(store_.putProvenance(s.digest, envelope));
  }
  return Status::ok();
}

host::CommandOptions BuildProvider::commandOptions(const BuildContext& ctx) const {
  host::CommandOptions options;
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(ctx.deadline - BuildJob::Clock::now());
  options.timeout = std::max(left, std::chrono::milliseconds(1));  // past it: fail at once
  options.cancel = ctx.cancel;
  return options;
}

Result<Json> BuildProvider::buildInitramfs(const BuildContext& ctx, BuildLog& log) {
  const Json& inputs = ctx.inputs;
  Diagnostics diags;
  BuildSpec spec = parseBuildSpec(ctx.id, ctx.spec, diags, ctx.files);
  if (diags.hasErrors()) {
    return Status::error(diags.items().front().summary);
  }
  std::string busybox;
  if (spec.busybox) {
    HYPER_ASSIGN_OR_RETURN(busybox, readFile(config_.busybox, kMaxBusyboxBytes));
    if (store::digestOf(busybox) != inputs.value("busybox", "")) {
      // Planned with other bytes: the key would lie. The next plan sees the new input.
      return Status::error("busybox " + config_.busybox + " changed since the plan");
    }
  }
  std::string scratch;
  std::vector<guest::ModuleFile> modules;
  RemoveTreeOnExit cleanup;
  if (!spec.kernel.empty()) {
    const std::string digest = inputs.value("kernel", "");
    const std::string tar = store_.pathOf(digest);
    HYPER_ASSIGN_OR_RETURN(std::string dep, modulesDep(digest));
    auto resolved = guest::resolveModules(dep, wantedModules(spec));
    if (!resolved.isOk()) {
      return resolved.status().withContext("Build/" + spec.kernel + "'s modules");
    }
    modules = std::move(*resolved);
    HYPER_ASSIGN_OR_RETURN(scratch, store_.makeScratchDir("initramfs"));
    cleanup.reset(scratch);
    HYPER_RETURN_IF_ERROR(extractModules(tar, modules, scratch, commandOptions(ctx)));
    std::string names;
    for (const auto& m : modules) {
      names += " " + m.name;
    }
    log += "modules from Build/" + spec.kernel + " " + digest + ":" + names + "\n";
  }
  for (auto& f : spec.files) {
    if (f.artifactBuild.empty()) {
      continue;
    }
    const std::string digest = inputs.value(artifactInput(f.path), "");
    if (digest.empty() || !store_.has(digest)) {
      return Status::error(f.path + ": Build/" + f.artifactBuild + "'s " + f.artifactName + " " +
                           digest + " is not in the store");
    }
    HYPER_ASSIGN_OR_RETURN(f.content, readFile(store_.pathOf(digest), kMaxArtifactFileBytes));
    log += f.path + " from Build/" + f.artifactBuild + "'s " + f.artifactName + " " + digest + "\n";
  }
  log += "initramfs: " + std::to_string(spec.files.size()) + " files" +
         (spec.busybox ? ", busybox " + inputs.value("busybox", "") : "") +
         (spec.hyperInit ? ", hyper's init" : "") + "\n";
  std::string agent;
  if (spec.hyperInit && inputs.contains("buildAgent")) {
    HYPER_ASSIGN_OR_RETURN(agent, readFile(config_.buildAgent, kMaxBusyboxBytes));
    if (store::digestOf(agent) != inputs.value("buildAgent", "")) {
      return Status::error("hyper-build-agent " + config_.buildAgent + " changed since the plan");
    }
  }
  HYPER_ASSIGN_OR_RETURN(std::string image,
                         buildInitramfsImage(spec, busybox, scratch, modules, agent));
  HYPER_ASSIGN_OR_RETURN(std::string digest, store_.put(image));
  log += "initrd " + digest + " (" + std::to_string(image.size()) + " bytes)\n";
  return Json{{"artifacts", {{"initrd", {{"digest", digest}, {"size", image.size()}}}}}};
}

Result<Json> BuildProvider::buildDebianKernel(const BuildContext& ctx, BuildLog& log) {
  const Json& inputs = ctx.inputs;
  // "linux-image-6.1.0-57-amd64 6.1.192-3" and "sha256:<hex>", as observe resolved them.
  const std::string package = inputs.value("package", "");
  const std::string deb = inputs.value("deb", "");
  DebianPackage p;
  p.name = package.substr(0, package.find(' '));
  p.version = package.find(' ') == std::string::npos ? "" : package.substr(package.find(' ') + 1);
  p.sha256 = deb.rfind("sha256:", 0) == 0 ? deb.substr(7) : "";
  if (p.name.empty() || p.version.empty() || p.sha256.empty()) {
    return Status::error("planned without a resolved package (inputs.package, inputs.deb)");
  }
  log += "package " + p.name + " " + p.version + " (" + deb + ")\n";
  HYPER_ASSIGN_OR_RETURN(
      std::string debPath,
      apt_.fetch(p, ctx.cancel, [&](const std::string& line) { log += line + "\n"; }));
  HYPER_ASSIGN_OR_RETURN(std::string scratch, store_.makeScratchDir("debian-kernel"));
  RemoveTreeOnExit cleanup(scratch);
  HYPER_ASSIGN_OR_RETURN(KernelOutputs out,
                         unpackDebianKernel(debPath, scratch, commandOptions(ctx), log));
  Json artifacts = Json::object();
  for (const auto& [name, path] :
       {std::pair<std::string, std::string>{"vmlinuz", out.vmlinuz}, {"modules", out.modulesTar}}) {
    std::error_code ec;
    const uint64_t size = std::filesystem::file_size(path, ec);
    HYPER_ASSIGN_OR_RETURN(std::string digest, store_.adopt(path));
    artifacts[name] = {{"digest", digest}, {"size", size}};
    log += name + " " + digest + " (" + std::to_string(size) + " bytes)\n";
  }
  return Json{{"artifacts", artifacts}, {"kernelVersion", out.version}};
}

Result<Json> BuildProvider::buildRootfs(const BuildContext& ctx, BuildLog& log) {
  const Json& inputs = ctx.inputs;
  Diagnostics diags;
  BuildSpec spec = parseBuildSpec(ctx.id, ctx.spec, diags, ctx.files);
  if (diags.hasErrors()) {
    return Status::error(diags.items().front().summary);
  }
  HYPER_ASSIGN_OR_RETURN(SuiteIndex index,
                         findSuiteIndex("/var/lib/apt/lists", spec.mirror, spec.suite));
  if (index.digest != inputs.value("index", "")) {
    // Planned with other lists: the key would lie. The next plan sees the new index.
    return Status::error("the host's apt lists for " + spec.suite + " changed since the plan");
  }
  HYPER_ASSIGN_OR_RETURN(std::string scratch, store_.makeScratchDir("rootfs"));
  RemoveTreeOnExit cleanup(scratch);
  // The filesystem's UUID comes from the key: the same build, the same UUID, on any host.
  HYPER_ASSIGN_OR_RETURN(
      std::string image,
      buildRootfsImage(spec, index, scratch, uuidFromHex(ctx.key), commandOptions(ctx), log));
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(image, ec);
  HYPER_ASSIGN_OR_RETURN(std::string digest, store_.adopt(image));
  log += "rootfs " + digest + " (" + std::to_string(size) + " bytes)\n";
  return Json{{"artifacts", {{"rootfs", {{"digest", digest}, {"size", size}}}}},
              {"format", spec.format}};
}

Result<Json> BuildProvider::buildScript(const BuildContext& ctx, BuildLog& log) {
  Diagnostics diags;
  BuildSpec spec = parseBuildSpec(ctx.id, ctx.spec, diags, ctx.files);
  if (diags.hasErrors()) {
    return Status::error(diags.items().front().summary);
  }
  if (!spec.gitRef.empty()) {
    spec.gitCommit = ctx.inputs.value("commit", "");  // resolved when it was planned
  }
  ScriptRun run;
  run.buildName = ctx.id.name;
  run.key = ctx.key;
  auto artifactPath = [&](const char* input) -> Result<std::string> {
    const std::string digest = ctx.inputs.value(input, "");
    if (digest.empty()) {
      return std::string();
    }
    if (!store_.has(digest)) {
      return Status::error("the builder's " + std::string(input) + " " + digest +
                           " is gone from the store");
    }
    return store_.pathOf(digest);
  };
  HYPER_ASSIGN_OR_RETURN(run.kernel, artifactPath("builderKernel"));
  HYPER_ASSIGN_OR_RETURN(run.initrd, artifactPath("builderInitrd"));
  HYPER_ASSIGN_OR_RETURN(run.rootfs, artifactPath("builderRootfs"));
  run.rootfsWritable = !run.rootfs.empty() && isExt4Image(run.rootfs);
  // The values are opened now, for this build only, and live in locked memory until it ends.
  if (!spec.secrets.empty()) {
    auto lock = keyRing_.lock();
    HYPER_ASSIGN_OR_RETURN(const store::KeyRing* ring, keyRing_.get());
    for (const auto& s : spec.secrets) {
      auto secretSpec = ctx.secretSpecs.find(s.secret);
      if (secretSpec == ctx.secretSpecs.end()) {
        return Status::error("Secret/" + s.secret + " is not applied");
      }
      HYPER_ASSIGN_OR_RETURN(store::SecretBytes value,
                             store::openSecretValue(*ring, s.secret, secretSpec->second, s.key));
      run.secrets.push_back({s.id, std::move(value)});
    }
  }
  HYPER_ASSIGN_OR_RETURN(run.scratch, store_.makeScratchDir("script"));
  RemoveTreeOnExit cleanup(run.scratch);
  run.gitCacheDir = config_.stateDir + "/git";
  run.driver = builders_;
  run.cancel = ctx.cancel;
  run.deadline = ctx.deadline;
  // Every delivery is audited (an event naming the value and the build, never the value).
  if (ctx.inputs.contains("network")) {
    const Json& n = ctx.inputs["network"];
    if (!n.is_object()) {
      return Status::error("planned with a builder network that is not an object: " + n.dump());
    }
    auto cidr = netmodel::Cidr::parse(n.value("cidr", ""));
    auto gateway = netmodel::parseIpv4(n.value("gateway", ""));
    if (!cidr.isOk() || !gateway.isOk() || n.value("bridge", "").empty()) {
      return Status::error("planned with a builder network that does not parse: " + n.dump());
    }
    BuilderNetwork network;
    network.policy = n.value("policy", "");
    network.network = n.value("network", "");
    network.bridge = n.value("bridge", "");
    network.prefix = cidr->prefix;
    network.gateway = *gateway;
    HYPER_ASSIGN_OR_RETURN(
        network.ip,
        claimBuilderAddress(ctx.id.name, network.network, cidr->network(), cidr->prefix, *gateway));
    run.network = network;
  }
  run.onSecretDelivery = [&](const std::vector<std::string>& stored, const Status& result) {
    auto idOf = [&](const std::string& fileId) {
      for (const auto& s : spec.secrets) {
        if (s.id == fileId) {
          return s.secret + "/" + s.key;
        }
      }
      return fileId;
    };
    for (const std::string& id : stored) {
      ProgressEvent e;
      e.object = ctx.id;
      e.type = "secret-delivered";
      e.message = "secret " + idOf(id) + " delivered to " + ctx.id.str() + " at /run/secrets/" +
                  id + " for the build";
      e.details = {{"secret", idOf(id)}, {"path", "/run/secrets/" + id}};
      e.samples.push_back({"hyper_build_secret_deliveries_total",
                           "Secret values delivered to script builds, by result",
                           {{"result", "delivered"}}});
      report(std::move(e));
    }
    if (!result.isOk()) {
      ProgressEvent e;
      e.object = ctx.id;
      e.type = "secret-delivery-failed";
      e.level = "warn";
      e.message = "secrets not delivered to " + ctx.id.str() + ": " + result.message();
      e.samples.push_back({"hyper_build_secret_deliveries_total",
                           "Secret values delivered to script builds, by result",
                           {{"result", "failed"}},
                           static_cast<double>(spec.secrets.size() - stored.size())});
      report(std::move(e));
    }
  };
  ScriptTimings timings;
  auto ran = runScriptBuild(spec, run, log, &timings);
  if (run.network) {
    // A kept builder keeps its address; the next build of the name takes it again.
    auto kept = builders_->find(builderVmName(ctx.id.name));
    if (!kept.isOk() || !kept->has_value()) {
      releaseBuilderAddress(ctx.id.name);
    }
  }
  HYPER_ASSIGN_OR_RETURN(std::vector<ScriptArtifact> outputs, std::move(ran));
  ProgressEvent boot;
  boot.object = ctx.id;
  boot.type = "builder-boot";
  boot.message = "builder booted in " + std::to_string(timings.bootSeconds) + " s";
  boot.samples.push_back({"hyper_build_builder_boot_seconds",
                          "time from a builder VM's start until its agent said hello",
                          {},
                          timings.bootSeconds,
                          {0.5, 1, 2, 5, 10, 20, 30, 60, 120}});
  report(std::move(boot));
  Json artifacts = Json::object();
  for (const auto& o : outputs) {
    std::error_code ec;
    const uint64_t size = std::filesystem::file_size(o.path, ec);
    HYPER_ASSIGN_OR_RETURN(std::string digest, store_.adopt(o.path));
    artifacts[o.name] = {{"digest", digest}, {"size", size}};
    log += o.name + " " + digest + " (" + std::to_string(size) + " bytes)\n";
  }
  return Json{{"artifacts", artifacts}, {"commit", spec.gitCommit}};
}

Result<bool> BuildProvider::releaseBuilder(const std::string& buildName) {
  return build::releaseBuilder(*builders_, buildName);
}

void BuildProvider::apply(const ApplyRequest& req, ApplyResponse& resp) {
  const PlanAction& action = *req.action;
  guarded(resp.diagnostics, action.id, "apply", [&] {
    if (action.type == ActionType::Delete) {
      // Its build, queued or running, stops unless another Build waits for the same key.
      queue_.leave(action.id.name);
      // The artifacts stay: other builds may share them, and gc decides.
      std::error_code ec;
      std::filesystem::remove(config_.stateDir + "/builds/" + action.id.name + ".log", ec);
      return;
    }
    const Json& spec = req.desired->spec;
    Json inputs =
        action.privateData.is_object() ? action.privateData.value("inputs", Json()) : Json();
    const std::string kernel = kernelBuildOf(spec);
    const std::vector<ArtifactFile> artifactFiles = artifactFilesOf(spec);
    if (!kernel.empty() || !artifactFiles.empty()) {
      // The Builds it takes from were applied before this one: their records as they are now
      // say which modules and artifacts, whatever plan saw (it may have been waiting for them).
      std::string kernelDigest;
      if (!kernel.empty()) {
        const std::string artifact = spec["initramfs"]["kernel"].value("artifact", "modules");
        auto digest = store::artifactDigest(kernel, artifact, req.references, store_);
        if (!digest.isOk()) {
          resp.diagnostics.error(action.id, "spec.initramfs.kernel", digest.status().message());
          resp.retryAfter = std::chrono::seconds(5);
          return;
        }
        kernelDigest = *digest;
      }
      Json fileDigests = Json::object();
      for (const auto& f : artifactFiles) {
        auto digest = store::artifactDigest(f.build, f.name, req.references, store_);
        if (!digest.isOk()) {
          resp.diagnostics.error(action.id, f.field, digest.status().message());
          resp.retryAfter = std::chrono::seconds(5);
          return;
        }
        fileDigests[artifactInput(f.path)] = *digest;
      }
      if (!inputs.is_object() && action.privateData.is_object() &&
          action.privateData.contains("keptKeys")) {
        // Planned while waiting, with keys this content was applied with: one made from the
        // kernel's modules as they are now is taken again.
        for (const auto& key : action.privateData["keptKeys"]) {
          if (std::optional<Json> found =
                  key.is_string() ? keptRecord(*req.desired, key, kernelDigest) : std::nullopt) {
            inputs = (*found)["inputs"];
            break;
          }
        }
      }
      if (!inputs.is_object()) {
        // Planned while waiting: the other inputs are resolved now.
        inputs = Json::object();
        for (const auto& [source, blob] : req.desired->files) {
          inputs["source:" + source] = blob->digest;
        }
        auto gzip = toolVersion("gzip");
        if (!gzip.isOk()) {
          resp.diagnostics.error(action.id, "", gzip.status().message());
          return;
        }
        inputs["gzip"] = *gzip;
        if (spec["initramfs"].value("hyperInit", false)) {
          inputs["hyperInit"] = hyperInitDigest();
          auto agent = buildAgentDigest();
          if (!agent.isOk()) {
            resp.diagnostics.error(action.id, "spec.initramfs.hyperInit", agent.status().message());
            return;
          }
          if (!agent->empty()) {
            inputs["buildAgent"] = *agent;
          }
        }
        if (spec["initramfs"].value("busybox", true)) {
          auto busybox = busyboxDigest();
          if (!busybox.isOk()) {
            resp.diagnostics.error(action.id, "spec.initramfs.busybox", busybox.status().message());
            return;
          }
          inputs["busybox"] = *busybox;
        }
      }
      if (!kernel.empty()) {
        inputs["kernel"] = kernelDigest;
      }
      for (const auto& [input, digest] : fileDigests.items()) {
        inputs[input] = digest;
      }
    }
    if (spec.value("type", "") == "script") {
      // The builder's Builds were applied before this one: their records as they are now say
      // which artifacts boot the builder, whatever plan saw (it may have waited for them).
      Json now = Json::object();
      if (inputs.is_object() && inputs.contains("commit")) {
        now["commit"] = inputs["commit"];  // the commit plan resolved a ref to
      }
      if (!inputs.is_object()) {
        // Planned while waiting: what observe knew beside the builder's artifacts.
        for (const auto& [source, blob] : req.desired->files) {
          now["source:" + source] = blob->digest;
        }
        if (action.privateData.is_object() && action.privateData.contains("network") &&
            action.privateData["network"].is_object()) {
          now["network"] = action.privateData["network"];
        }
      }
      std::string pending;
      auto digestOf = [&](const std::string& build, const std::string& artifact) -> Json {
        auto d = store::artifactDigest(build, artifact, req.references, store_);
        return d.isOk() ? Json{{"digest", *d}} : Json{{"error", d.status().message()}};
      };
      if (!scriptInputs(*req.desired, now, pending, digestOf, resp.diagnostics, true).isOk()) {
        resp.retryAfter = std::chrono::seconds(5);
        return;
      }
      if (!inputs.is_object()) {
        inputs = now;
      } else {
        for (const auto& [k, v] : now.items()) {
          inputs[k] = v;
        }
      }
    }
    if (!inputs.is_object()) {
      resp.diagnostics.error(action.id, "", "planned without the build's inputs");
      return;
    }
    const std::string key = buildKey(spec, inputs);
    const std::string type = spec.value("type", "");
    const std::string name = action.id.name;
    std::optional<Json> record = store_.lookupKey(key);
    bool cached = record.has_value();
    if (cached) {
      reportCached(action.id, type, key);
    } else {
      // Built by the queue, beside the reconcile: hyperctl waits for it here, hyperd's loop
      // comes back when it is done (the EventSource wakes it).
      BuildContext ctx;
      ctx.id = action.id;
      ctx.spec = spec;
      ctx.inputs = inputs;
      ctx.key = key;
      ctx.files = req.desired->files;
      for (const std::string& secret : scriptSecretsOf(spec)) {
        auto ref = req.references.find(ObjectId{"Secret", secret});
        if (ref == req.references.end()) {
          resp.diagnostics.error(action.id, "spec.script.secrets",
                                 "Secret/" + secret +
                                     " is not applied (expected it applied "
                                     "before the Build that reads it)");
          resp.retryAfter = std::chrono::seconds(5);
          return;
        }
        ctx.secretSpecs[secret] = ref->second.spec;
      }
      auto job = queue_.submit(key, name, type,
                               [this, ctx](BuildJob& job) mutable { return runBuild(ctx, job); });
      if (!req.mayDefer) {
        if (!queue_.wait(job, name, req.cancel, req.deadline)) {
          resp.diagnostics.error(action.id, "",
                                 req.cancelled() ? "cancelled while building (its process group "
                                                   "killed)"
                                                 : "the action's time ran out while building");
          return;
        }
      } else if (std::string progress; queue_.stateOf(*job, &progress) != BuildJob::State::Done) {
        resp.inProgress = true;
        resp.progress = progress.empty() ? "queued" : progress;
        resp.retryAfter = std::chrono::seconds(30);  // the EventSource wakes the loop sooner
        return;
      }
      queue_.forget(job);
      if (!job->result.isOk()) {
        resp.diagnostics.error(action.id, "", job->result.message());
        resp.retryAfter = std::chrono::seconds(5);
        return;
      }
      record = store_.lookupKey(key);
      if (!record) {
        resp.diagnostics.error(
            action.id, "",
            "the build of key " + key + " finished but the store has no record of it");
        return;
      }
    }
    if (Status s = writeProvenance(key, spec, *record, /*always=*/false); !s.isOk()) {
      resp.diagnostics.error(action.id, "", "provenance <- " + s.message());
      return;
    }
    if (cached) {
      // The log of the build that made these artifacts stays; a cache hit says so at its end.
      appendLog(name, "apply: cached (the store has key " + key.substr(0, 12) + ")\n");
    }
    resp.handles = {{"key", key},
                    {"type", (*record).value("type", "")},
                    {"inputs", inputs},
                    {"artifacts", (*record)["artifacts"]},
                    {"cached", cached}};
    if (record->contains("kernelVersion")) {
      resp.handles["kernelVersion"] = (*record)["kernelVersion"];
    }
    std::string fingerprint;
    for (const auto& [artifact, a] : (*record)["artifacts"].items()) {
      fingerprint += artifact + "=" + a.value("digest", "") + ";";
    }
    resp.fingerprint = fingerprint;
  });
}

Status BuildProvider::runBuild(const BuildContext& base, BuildJob& job) {
  BuildContext ctx = base;
  ctx.cancel = &job.cancel;
  ctx.deadline = BuildJob::Clock::now() + config_.buildTimeout;
  const std::string name = ctx.id.name;
  const std::string type = ctx.spec.value("type", "");
  auto started = std::chrono::steady_clock::now();
  // Each line of the log is appended to the log file (started afresh: GET /v1/builds/NAME/events
  // follows it) as it comes, and out as a progress event, except a step's output (the log and the
  // build's event stream have it; the host's event log would drown in it).
  writeLog(name, "");
  Fd file(::open((config_.stateDir + "/builds/" + name + ".log").c_str(),
                 O_WRONLY | O_APPEND | O_CLOEXEC));
  BuildLog log([&](const std::string& line) {
    if (file.valid()) {
      const std::string text = line + "\n";
      (void)!::write(file.get(), text.data(), text.size());
    }
    if (!line.empty() && line[0] == '[') {
      return;
    }
    queue_.setProgress(job, line);
    ProgressEvent e;
    e.object = ctx.id;
    e.type = "build-step";
    e.message = line;
    report(std::move(e));
  });
  log += "build " + name + " (" + type + ") key " + ctx.key + "\n";
  Result<Json> built = type == "debian-kernel" ? buildDebianKernel(ctx, log)
                       : type == "rootfs"      ? buildRootfs(ctx, log)
                       : type == "script"      ? buildScript(ctx, log)
                                               : buildInitramfs(ctx, log);
  if (!built.isOk()) {
    log += "failed: " + built.status().message() + "\n";
    return built.status();
  }
  Json record = *built;
  record["type"] = type;
  record["inputs"] = ctx.inputs;
  HYPER_RETURN_IF_ERROR(writeProvenance(ctx.key, ctx.spec, record, /*always=*/true));
  // Recorded last: the key's record is what makes the next lookup a hit.
  HYPER_RETURN_IF_ERROR(store_.recordKey(ctx.key, record));
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  started)
                .count();
  log += "built in " + std::to_string(ms) + " ms\n";
  return Status::ok();
}

void BuildProvider::reportCached(const ObjectId& id, const std::string& type,
                                 const std::string& key) {
  ProgressEvent e;
  e.object = id;
  e.type = "build-cached";
  e.message = "cached: the store has key " + key.substr(0, 12) + "; nothing built";
  e.samples.push_back({"hyper_build_cache_total",
                       "Build applies by cache result",
                       {{"result", "hit"}, {"type", type}},
                       1,
                       {}});
  report(std::move(e));
}

void BuildProvider::report(ProgressEvent event) {
  std::lock_guard<std::mutex> lk(progressMu_);
  if (progress_.size() >= kMaxProgress) {
    progress_.pop_front();
  }
  progress_.push_back(std::move(event));
}

std::vector<ProgressEvent> BuildProvider::takeProgress() {
  std::lock_guard<std::mutex> lk(progressMu_);
  std::vector<ProgressEvent> out(std::make_move_iterator(progress_.begin()),
                                 std::make_move_iterator(progress_.end()));
  progress_.clear();
  return out;
}

Result<int> BuildProvider::startWatching() {
  if (!doneFd_.valid()) {
    return Status::error("eventfd <- " + std::string(std::strerror(errno)));
  }
  return doneFd_.get();
}

bool BuildProvider::drainEvents() {
  uint64_t n = 0;
  return ::read(doneFd_.get(), &n, sizeof n) == sizeof n && n > 0;
}

void BuildProvider::appendLog(const std::string& name, const std::string& text) const {
  const std::string path = config_.stateDir + "/builds/" + name + ".log";
  auto old = readFile(path, 16u << 20);
  writeLog(name, (old.isOk() ? *old : std::string()) + text);
}

}  // namespace hyper::providers::build
