#include "providers/build/build_spec.h"

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

}  // namespace

BuildSpec parseBuildSpec(const ObjectId& id, const Json& spec, Diagnostics& diags,
                         const std::map<std::string, std::shared_ptr<const SourceBlob>>& sources) {
  BuildSpec out;
  out.type = spec.value("type", "");
  const Json initramfs = spec.value("initramfs", Json::object());
  out.busybox = initramfs.value("busybox", true);
  std::set<std::string> seen;
  const Json files = initramfs.value("files", Json::array());
  for (size_t i = 0; i < files.size(); ++i) {
    const Json& f = files[i];
    const std::string field = "spec.initramfs.files[" + std::to_string(i) + "]";
    ImageFile file;
    file.path = f.value("path", "");
    // Exactly one of the two, said at the entry (valijson's words for a oneOf are not a person's).
    if (f.contains("content") == f.contains("source")) {
      diags.error(id, field,
                  std::string(f.contains("content") ? "has both content and source"
                                                    : "has neither content nor source") +
                      ": expected exactly one of content: TEXT and source: PATH");
      continue;
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

Result<std::string> buildInitramfsImage(const BuildSpec& spec, const std::string& busybox) {
  guest::CpioArchive cpio;
  for (const char* dir : {"dev", "proc", "sys", "tmp"}) {
    cpio.addDirectory(dir);
  }
  if (spec.busybox) {
    cpio.addFile("bin/busybox", busybox, 0755);
    cpio.addSymlink("bin/sh", "busybox");
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
