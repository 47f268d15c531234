// The Build provider's registration (providers/builtin.cc lists it).

#include <cstdlib>

#include "base/file.h"
#include "providers/build/build_provider.h"
#include "reconciler/kind_registry.h"

namespace hyper::providers {

ProviderRecord provider_build() {
  KindRecord b;
  b.kind = "Build";
  b.plural = "builds";
  b.schema = embeddedSchemaText("build.schema.json");
  // From what the last apply recorded (handles): the key it built, the first artifact's digest,
  // whether the store already had it.
  auto handle = [](const GetRow& row, const char* name) -> const Json* {
    const Json& h = row.record->handles;
    auto it = h.is_object() ? h.find(name) : h.end();
    return it == h.end() ? nullptr : &*it;
  };
  auto firstArtifact = [handle](const GetRow& row, const char* field) -> std::string {
    const Json* artifacts = handle(row, "artifacts");
    if (artifacts == nullptr || !artifacts->is_object() || artifacts->empty()) {
      return "-";
    }
    const Json& a = artifacts->begin().value();
    return a.contains(field)
               ? (a[field].is_string() ? a[field].get<std::string>() : a[field].dump())
               : "-";
  };
  b.columns = {
      fieldColumn("TYPE", "type"),
      {"KEY",
       [handle](const GetRow& row) {
         const Json* key = handle(row, "key");
         return key && key->is_string() ? key->get<std::string>().substr(0, 12) : "-";
       }},
      {"DIGEST",
       [firstArtifact](const GetRow& row) {
         std::string d = firstArtifact(row, "digest");
         return d.size() > 19 ? d.substr(0, 19) : d;  // "sha256:" and 12 hex
       }},
      {"CACHED",
       [handle](const GetRow& row) {
         const Json* c = handle(row, "cached");
         return c && c->is_boolean() ? (c->get<bool>() ? "true" : "false") : "-";
       }},
      {"SIZE", [firstArtifact](const GetRow& row) { return firstArtifact(row, "size"); },
       /*wide=*/true},
  };
  // A file's bytes from the manifests' tree instead of the manifest (build_spec.h).
  b.fileSources = {"initramfs.files[*].source", "rootfs.files[*].source"};
  // A script build's source from the manifests' own tree (script_build.h).
  b.directorySources = {"script.source.path"};
  b.reproducible = true;
  b.logs = [](const std::string& name, const std::string& stateDir) {
    return LogFiles{{stateDir + "/builds/" + name + ".log"},
                    "written by the build's last apply in this state dir"};
  };

  ProviderRecord record;
  record.name = "build";
  record.kinds = {std::move(b)};
  record.settingsSchema = R"json({
    "type": "object",
    "additionalProperties": false,
    "description": "a mapping with busybox, buildAgent, debCache, concurrency, timeoutSeconds",
    "properties": {
      "busybox": {"type": "string", "minLength": 1, "description": "the static busybox initramfs builds put in their images (default /bin/busybox)"},
      "buildAgent": {"type": "string", "minLength": 1, "pattern": "^/", "description": "hyper-build-agent, put in images with hyperInit so they boot builder VMs (default: beside this program)"},
      "debCache": {"type": "string", "minLength": 1, "pattern": "^/", "description": "where downloaded .debs are kept, checked by their SHA256 (default /var/cache/hyper/debs)"},
      "concurrency": {"type": "string", "pattern": "^([1-9]|1[0-6])$", "description": "builds that run at once, 1 to 16 (default 2)"},
      "timeoutSeconds": {"type": "string", "pattern": "^[1-9][0-9]{0,4}$", "description": "seconds one build may take before its processes are killed, 1 to 99999 (default 1200)"}
    }
  })json";
  record.make = [](const Json& settings,
                   const std::string& stateDir) -> Result<std::unique_ptr<Provider>> {
    build::BuildProviderConfig config;
    config.stateDir = stateDir;
    config.busybox = settings.value("busybox", config.busybox);
    // Built beside hyperctl and hyperd (and installed beside them).
    config.buildAgent = settings.value("buildAgent", siblingOfSelf("hyper-build-agent"));
    config.debCache = settings.value("debCache", config.debCache);
    // Builder VMs' run dirs, like the VMs' (HYPER_VM_RUN_DIR): tests keep theirs apart.
    if (const char* dir = std::getenv("HYPER_BUILDER_RUN_DIR"); dir != nullptr && *dir != '\0') {
      config.builderRunRoot = dir;
    }
    // Schema-checked digits: the settings are strings, since each is also a flag.
    if (settings.contains("concurrency")) {
      config.concurrency = std::stoul(settings["concurrency"].get<std::string>());
    }
    if (settings.contains("timeoutSeconds")) {
      config.buildTimeout =
          std::chrono::seconds(std::stol(settings["timeoutSeconds"].get<std::string>()));
    }
    return std::unique_ptr<Provider>(std::make_unique<build::BuildProvider>(config));
  };
  return record;
}

}  // namespace hyper::providers
