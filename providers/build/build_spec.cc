#include "providers/build/build_spec.h"

#include <map>
#include <set>

#include "guest/cpio_archive.h"
#include "host/command.h"

namespace hyper::providers::build {

namespace {

// Paths busybox takes when it is on.
const std::set<std::string>& busyboxPaths() {
  static const std::set<std::string> paths = {"/bin/busybox", "/bin/sh"};
  return paths;
}

// Paths hyper's guest init takes when it is on.
const std::set<std::string>& hyperInitPaths() {
  static const std::set<std::string> paths = {"/init", "/etc/hyper/modules"};
  return paths;
}

void parseScript(const ObjectId& id, const Json& script, BuildSpec& out, Diagnostics& diags,
                 const std::map<std::string, std::shared_ptr<const SourceBlob>>& sources) {
  const Json source = script.value("source", Json::object());
  const Json git = source.value("git", Json::object());
  out.gitUrl = git.value("url", "");
  out.gitCommit = git.value("commit", "");
  out.gitRef = git.value("ref", "");
  out.gitPath = git.value("path", "");
  out.sourcePath = source.value("path", "");
  if (script.contains("source") && source.contains("git") == source.contains("path")) {
    diags.error(id, "spec.script.source",
                source.contains("git")
                    ? "has both git and path: expected one (a git repository, or a directory "
                      "of the manifests' own tree)"
                    : "has neither git nor path: expected {git: {url, commit or ref}} or "
                      "{path: DIR} (a directory beside the manifest)");
  }
  if (!out.sourcePath.empty()) {
    auto blob = sources.find(out.sourcePath);
    if (blob == sources.end() || !blob->second) {
      diags.error(id, "spec.script.source.path",
                  "\"" + out.sourcePath + "\" was not read (expected the loader to read it " +
                      "from the manifest's directory)");
    } else {
      out.sourceTree = blob->second;
    }
  }
  if (source.contains("git") && out.gitCommit.empty() == out.gitRef.empty()) {
    diags.error(id, "spec.script.source.git",
                out.gitCommit.empty()
                    ? "has neither commit nor ref: expected the 40-hex commit to build, or a "
                      "branch or tag (ref) to follow"
                    : "has both commit and ref: expected one (a commit pins the source, a ref "
                      "follows a branch or tag)");
  }
  if (!out.gitRef.empty() && out.gitRef.size() >= 5 &&
      out.gitRef.compare(out.gitRef.size() - 5, 5, ".lock") == 0) {
    diags.error(id, "spec.script.source.git.ref",
                "\"" + out.gitRef + "\" ends in .lock: expected a branch or tag name git allows");
  }
  if (out.gitUrl.find('@') != std::string::npos && out.gitUrl.find("://") != std::string::npos &&
      out.gitUrl.find('@') < out.gitUrl.find('/', out.gitUrl.find("://") + 3)) {
    diags.error(id, "spec.script.source.git.url",
                "has credentials in it (user@ or user:token@): expected a URL without them; "
                "a manifest and a build's provenance are read by anyone");
  }
  for (const std::string& segment : {std::string("/") + out.gitPath + "/"}) {
    if (segment.find("/../") != std::string::npos || segment.find("/./") != std::string::npos) {
      diags.error(id, "spec.script.source.git.path",
                  "\"" + out.gitPath + "\" has a \".\" or \"..\" segment: expected a plain path");
    }
  }
  const Json builder = script.value("builder", Json::object());
  auto buildOf = [&](const char* field) {
    auto it = builder.find(field);
    return it != builder.end() && it->is_object() ? it->value("build", "") : std::string();
  };
  out.builderKernel = buildOf("kernel");
  out.builderInitrd = buildOf("initrd");
  out.builderRootfs = buildOf("rootfs");
  out.builderVcpus = builder.value("vcpus", out.builderVcpus);
  out.builderMemoryMiB = builder.value("memoryMiB", out.builderMemoryMiB);
  out.steps = script.value("steps", std::vector<std::vector<std::string>>{});
  const Json env = script.value("env", Json::object());
  for (const auto& [name, value] : env.items()) {
    bool fixed = false;
    for (const char* f : kScriptFixedEnv) {
      fixed = fixed || name == f;
    }
    if (fixed) {
      diags.error(id, "spec.script.env." + name,
                  "is set by hyper (SOURCE_DATE_EPOCH=0, HOME=/build, TZ=UTC, LC_ALL=C.UTF-8), so "
                  "that the build gives the same bytes anywhere: expected another variable");
      continue;
    }
    out.env[name] = value.is_string() ? value.get<std::string>() : "";
  }
  std::set<std::string> names, paths;
  const Json outputs = script.value("outputs", Json::array());
  for (size_t i = 0; i < outputs.size(); ++i) {
    const std::string field = "spec.script.outputs[" + std::to_string(i) + "]";
    ScriptOutput o{outputs[i].value("name", ""), outputs[i].value("path", "")};
    if (("/" + o.path + "/").find("/../") != std::string::npos ||
        ("/" + o.path + "/").find("/./") != std::string::npos) {
      diags.error(id, field + ".path",
                  "\"" + o.path + "\" has a \".\" or \"..\" segment: expected a plain path");
      continue;
    }
    if (!names.insert(o.name).second) {
      diags.error(id, field + ".name", "\"" + o.name + "\" is given twice");
      continue;
    }
    if (!paths.insert(o.path).second) {
      diags.error(id, field + ".path", "\"" + o.path + "\" is given twice");
      continue;
    }
    out.outputs.push_back(std::move(o));
  }
  out.outputSizeMiB = script.value("outputSizeMiB", out.outputSizeMiB);
  std::set<std::string> ids;
  const Json secrets = script.value("secrets", Json::array());
  for (size_t i = 0; i < secrets.size(); ++i) {
    ScriptSecret g{secrets[i].value("secret", ""), secrets[i].value("key", ""), ""};
    g.id = secrets[i].value("id", g.secret + "-" + g.key);
    if (!ids.insert(g.id).second) {
      diags.error(id, "spec.script.secrets[" + std::to_string(i) + "].id",
                  "\"" + g.id + "\" is given twice: expected one file name per value");
      continue;
    }
    out.secrets.push_back(std::move(g));
  }
  out.timeoutSeconds = script.value("timeoutSeconds", out.timeoutSeconds);
  out.keepFailed = script.value("keepFailed", false);
  out.networkPolicy = script.value("network", Json::object()).value("policy", "");
}

}  // namespace

std::map<std::string, std::string> scriptEnvironment(const BuildSpec& spec) {
  std::map<std::string, std::string> env = {
      {"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}};
  for (const auto& [k, v] : spec.env) {
    env[k] = v;
  }
  env["SOURCE_DATE_EPOCH"] = "0";
  env["HOME"] = "/build";
  env["TZ"] = "UTC";
  env["LC_ALL"] = "C.UTF-8";
  return env;
}

BuildSpec parseBuildSpec(const ObjectId& id, const Json& spec, Diagnostics& diags,
                         const std::map<std::string, std::shared_ptr<const SourceBlob>>& sources) {
  BuildSpec out;
  out.type = spec.value("type", "");
  // Each type reads its own section; another type's section is a mistake worth naming.
  const std::map<std::string, std::string> sections = {{"initramfs", "initramfs"},
                                                       {"debian-kernel", "debianKernel"},
                                                       {"rootfs", "rootfs"},
                                                       {"script", "script"}};
  for (const auto& [type, section] : sections) {
    if (type != out.type && spec.contains(section)) {
      auto own = sections.find(out.type);
      diags.error(id, "spec." + section,
                  "is for type " + type + ", and this Build's type is " + out.type +
                      (own == sections.end() ? std::string()
                                             : ": expected spec." + own->second + " instead"));
    }
  }
  const Json debianKernel = spec.value("debianKernel", Json::object());
  out.package = debianKernel.value("package", out.package);
  const Json initramfs = spec.value("initramfs", Json::object());
  out.busybox = initramfs.value("busybox", true);
  out.hyperInit = initramfs.value("hyperInit", false);
  if (initramfs.contains("kernel")) {
    out.kernel = initramfs["kernel"].value("build", "");
    out.kernelArtifact = initramfs["kernel"].value("artifact", out.kernelArtifact);
  }
  out.modules = initramfs.value("modules", std::vector<std::string>{});
  if (!out.modules.empty() && out.kernel.empty()) {
    diags.error(id, "spec.initramfs.modules",
                "modules come from a kernel: expected spec.initramfs.kernel: {build: NAME} "
                "naming a debian-kernel Build");
  }
  const Json rootfs = spec.value("rootfs", Json::object());
  out.suite = rootfs.value("suite", out.suite);
  out.mirror = rootfs.value("mirror", out.mirror);
  out.variant = rootfs.value("variant", out.variant);
  out.packages = rootfs.value("packages", std::vector<std::string>{});
  out.format = rootfs.value("format", out.format);
  out.sizeMiB = rootfs.value("sizeMiB", 0u);
  if (out.sizeMiB != 0 && out.format != "ext4") {
    diags.error(id, "spec.rootfs.sizeMiB",
                "an " + out.format +
                    " image is as big as its contents: expected sizeMiB only with format: ext4");
  }
  parseScript(id, spec.value("script", Json::object()), out, diags, sources);
  if (out.type != "initramfs") {
    out.busybox = false;  // busybox and hyper's init are the initramfs's
    out.hyperInit = false;
  }
  // Files: an initramfs's or a rootfs's, checked alike.
  const std::string section = out.type == "rootfs" ? "rootfs" : "initramfs";
  std::set<std::string> seen;
  const Json files = spec.value(section, Json::object()).value("files", Json::array());
  for (size_t i = 0; i < files.size(); ++i) {
    const Json& f = files[i];
    const std::string field = "spec." + section + ".files[" + std::to_string(i) + "]";
    ImageFile file;
    file.path = f.value("path", "");
    // Exactly one, said at the entry (valijson's words for a oneOf are not a person's).
    const int given = (f.contains("content") ? 1 : 0) + (f.contains("source") ? 1 : 0) +
                      (f.contains("artifact") ? 1 : 0);
    if (given != 1) {
      const bool artifacts = section == "initramfs";
      std::vector<std::string> named;
      for (const char* k : {"content", "source", "artifact"}) {
        if (f.contains(k)) {
          named.push_back(k);
        }
      }
      std::string what = given == 0   ? (artifacts ? "has none of content, source and artifact"
                                                   : "has neither content nor source")
                         : given == 2 ? "has both " + named[0] + " and " + named[1]
                                      : "has content, source and artifact";
      diags.error(id, field,
                  what + ": expected exactly one of " +
                      (artifacts ? "content: TEXT, source: PATH and artifact: {build, name}"
                                 : "content: TEXT and source: PATH"));
      continue;
    }
    if (f.contains("artifact") && f["artifact"].is_object()) {
      file.artifactBuild = f["artifact"].value("build", "");
      file.artifactName = f["artifact"].value("name", "");
    }
    file.content = f.value("content", "");
    file.source = f.value("source", "");
    if (!file.source.empty()) {
      auto blob = sources.find(file.source);
      if (blob == sources.end() || !blob->second) {
        diags.error(id, field + ".source",
                    "\"" + file.source + "\" was not read (expected the loader to read it " +
                        "from the manifest's directory)");
        continue;
      }
      file.content = blob->second->bytes;
    }
    file.mode = static_cast<uint32_t>(std::stoul(f.value("mode", "0644"), nullptr, 8));
    bool dotted = false;
    for (size_t start = 1; start <= file.path.size();) {
      size_t end = file.path.find('/', start);
      end = end == std::string::npos ? file.path.size() : end;
      std::string segment = file.path.substr(start, end - start);
      dotted = dotted || segment == "." || segment == "..";
      start = end + 1;
    }
    if (dotted) {
      diags.error(id, field + ".path",
                  "\"" + file.path + "\" has a \".\" or \"..\" segment: expected a plain path");
      continue;
    }
    if (!seen.insert(file.path).second) {
      diags.error(id, field + ".path", "\"" + file.path + "\" is given twice");
      continue;
    }
    if (out.hyperInit && hyperInitPaths().count(file.path) > 0) {
      diags.error(id, field + ".path",
                  "\"" + file.path + "\" is hyper's init's (hyperInit: true); set hyperInit: " +
                      "false to provide your own");
      continue;
    }
    if (out.busybox && busyboxPaths().count(file.path) > 0) {
      diags.error(id, field + ".path",
                  "\"" + file.path + "\" is busybox's (busybox: true); set busybox: false to " +
                      "provide it yourself");
      continue;
    }
    out.files.push_back(std::move(file));
  }
  return out;
}

std::vector<std::string> wantedModules(const BuildSpec& spec) {
  if (spec.modules.empty() && spec.hyperInit && !spec.kernel.empty()) {
    return guest::defaultGuestModules();
  }
  return spec.modules;
}

Result<std::string> buildInitramfsImage(const BuildSpec& spec, const std::string& busybox,
                                        const std::string& modulesDir,
                                        const std::vector<guest::ModuleFile>& modules,
                                        const std::string& buildAgent) {
  guest::CpioArchive cpio;
  for (const char* dir : {"dev", "proc", "sys", "tmp"}) {
    cpio.addDirectory(dir);
  }
  if (spec.busybox) {
    cpio.addFile("bin/busybox", busybox, 0755);
    cpio.addSymlink("bin/sh", "busybox");
  }
  if (spec.hyperInit) {
    cpio.addFile("init", std::string(guest::guestInitScript()), 0755);
    if (!buildAgent.empty()) {
      cpio.addFile("bin/hyper-build-agent", buildAgent, 0755);
    }
  }
  if (!spec.kernel.empty() || spec.hyperInit) {
    // Without a kernel the list is empty: the init then loads nothing.
    HYPER_RETURN_IF_ERROR(guest::addModules(cpio, modulesDir, modules));
  }
  for (const auto& f : spec.files) {
    cpio.addFile(f.path, f.content, f.mode);
  }
  // gzip -n: no name and no timestamp in the header; the version is one of the build's inputs.
  auto gz = host::runChecked({"gzip", "-n", "-9", "-c"}, cpio.serialize());
  if (!gz.isOk()) {
    return gz.status().withContext("compress the initramfs");
  }
  return std::move(*gz);
}

}  // namespace hyper::providers::build
