#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "guest/initramfs.h"
#include "reconciler/diagnostic.h"
#include "reconciler/object.h"

namespace hyper::providers::build {

// One file an initramfs Build puts in its image.
struct ImageFile {
  std::string path;  // "/init": absolute, no "." or ".." segment (the schema's pattern)
  uint32_t mode = 0644;
  std::string content;  // as written, or the bytes of `source`
  std::string source;   // the file source as written ("web/init.sh"); "" for content
  // artifact: {build, name}: another Build's artifact (content filled in by the build from the
  // store); both "" otherwise.
  std::string artifactBuild;
  std::string artifactName;
};

// The input name of an initramfs file taken from an artifact: "artifact:/bin/app".
inline std::string artifactInput(const std::string& path) { return "artifact:" + path; }

// A file a script build leaves under /out that becomes an artifact.
struct ScriptOutput {
  std::string name;  // the artifact's name
  std::string path;  // "/out/usr/bin/app"
};

// A Secret's value a script build's steps read at /run/secrets/<id> while it runs.
struct ScriptSecret {
  std::string secret;
  std::string key;
  std::string id;  // default "<secret>-<key>"
};

// The environment hyper gives a script build's steps, whatever the spec says: a build's output
// must not depend on the host's or the time's.
inline constexpr const char* kScriptFixedEnv[] = {"SOURCE_DATE_EPOCH", "HOME", "TZ", "LC_ALL"};

// A Build's spec, as the provider uses it (schemas/build.schema.json has the syntax).
struct BuildSpec {
  std::string type;  // "initramfs" | "debian-kernel" | "rootfs" | "script"

  // initramfs
  bool busybox = true;     // the static busybox as /bin/busybox, /bin/sh a link to it
  bool hyperInit = false;  // hyper's guest init (guest/initramfs.h) as /init
  std::string kernel;      // the debian-kernel Build whose modules it takes; "" = none
  std::string kernelArtifact = "modules";
  std::vector<std::string> modules;  // names, resolved with their dependencies from modules.dep
  std::vector<ImageFile> files;

  // debian-kernel
  std::string package = "linux-image-amd64";

  // rootfs (files above are its files too)
  std::string suite;
  std::string mirror = "http://deb.debian.org/debian";
  std::string variant = "minbase";
  std::vector<std::string> packages;
  std::string format = "erofs";  // "erofs" | "ext4"
  uint32_t sizeMiB = 0;          // ext4: the image's size; 0 = from the tree

  // script
  std::string gitUrl;
  std::string gitCommit;  // 40 hex; "" with gitRef (the provider resolves it)
  std::string gitRef;     // a branch or tag to follow, instead of gitCommit
  std::string gitPath;    // "" = the top
  // Or the source from the manifests' own tree: source.path as written ("app/") and the
  // directory archive the loader read from it (Object::files; reconciler/directory_archive.h).
  std::string sourcePath;
  std::shared_ptr<const SourceBlob> sourceTree;
  std::string builderKernel;  // Build names: debian-kernel, initramfs (with hyperInit), rootfs
  std::string builderInitrd;
  std::string builderRootfs;  // "" = the initrd's busybox
  int builderVcpus = 1;
  int builderMemoryMiB = 512;
  std::vector<std::vector<std::string>> steps;
  std::map<std::string, std::string> env;  // the spec's, without hyper's fixed ones
  std::vector<ScriptOutput> outputs;
  uint32_t outputSizeMiB = 256;
  std::vector<ScriptSecret> secrets;
  std::string networkPolicy;  // script.network.policy; "" = no network device at all
  int timeoutSeconds = 900;
  bool keepFailed = false;
};

// The environment a script build's steps get: PATH (the spec's or Debian's default), the spec's
// variables, and hyper's fixed ones (SOURCE_DATE_EPOCH=0, HOME=/build, TZ=UTC, LC_ALL=C.UTF-8).
std::map<std::string, std::string> scriptEnvironment(const BuildSpec& spec);

// Parses a schema-valid spec. Semantic errors (a path that is "." or "..", given twice, or that
// busybox or hyper's init already takes; modules without a kernel; a section the type does not
// use) go to `diags` with the field path ("spec.initramfs.files[1].path"). A file's `source`
// takes its bytes from `sources` (Object::files, read by the loader), and so does a script's
// source.path (its directory archive); one not there is an error.
BuildSpec parseBuildSpec(
    const ObjectId& id, const Json& spec, Diagnostics& diags,
    const std::map<std::string, std::shared_ptr<const SourceBlob>>& sources = {});

// The initramfs image: a newc cpio (entries sorted, mtime 0, uid/gid 0, modes as given,
// parents implied) compressed by `gzip -n -9`. `busybox` is the binary's bytes (used when
// spec.busybox); `modulesDir` holds the resolved `modules` laid out as in lib/modules/<version>/
// (used when spec.kernel). The same spec and inputs give the same bytes on any host, at any time,
// under any umask or TZ. `buildAgent`, when not empty, is hyper-build-agent's bytes, put at
// /bin/hyper-build-agent (with spec.hyperInit: the image can boot a builder VM).
Result<std::string> buildInitramfsImage(const BuildSpec& spec, const std::string& busybox,
                                        const std::string& modulesDir,
                                        const std::vector<guest::ModuleFile>& modules,
                                        const std::string& buildAgent = "");

// The modules an initramfs asks for: spec.modules, or hyper's guest modules when it has hyper's
// init and names none.
std::vector<std::string> wantedModules(const BuildSpec& spec);

}  // namespace hyper::providers::build
