// What a debian-kernel build reads from tools: apt-cache's control paragraphs (the package a name
// means, its version and SHA256) and a kernel's modules.dep (which module files an initramfs
// takes). Input: the text. Invariants: no crash or hang; at most 200 fields; a kernel dependency
// found is one linux-image-<digit>... name; every module resolved is named in the text, once.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

#include "guest/initramfs.h"
#include "providers/build/debian_package.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto fields = hyper::providers::build::parseControlParagraph(text);
  FUZZ_CHECK(fields.size() <= 200);
  for (const auto& [name, value] : fields) {
    FUZZ_CHECK(!name.empty());
    FUZZ_CHECK(text.find(name) != std::string::npos);
  }
  for (const std::string& depends : {text, fields.count("Depends") ? fields["Depends"] : ""}) {
    std::string image = hyper::providers::build::kernelImageDependency(depends);
    if (!image.empty()) {
      FUZZ_CHECK(image.rfind("linux-image-", 0) == 0 && image.size() > 12 &&
                 std::isdigit(static_cast<unsigned char>(image[12])));
      FUZZ_CHECK(depends.find(image) != std::string::npos);
    }
  }
  // The same text as a modules.dep, asked for the first word of each of its first lines.
  std::vector<std::string> wanted;
  for (size_t start = 0; start < text.size() && wanted.size() < 4;) {
    size_t end = text.find('\n', start);
    end = end == std::string::npos ? text.size() : end;
    std::string line = text.substr(start, end - start);
    size_t slash = line.rfind('/', line.find(':'));
    std::string base = line.substr(slash == std::string::npos ? 0 : slash + 1);
    base = base.substr(0, base.find_first_of(".: "));
    if (!base.empty()) {
      wanted.push_back(base);
    }
    start = end + 1;
  }
  auto modules = hyper::guest::resolveModules(text, wanted);
  if (modules.isOk()) {
    std::set<std::string> seen;
    for (const auto& m : *modules) {
      FUZZ_CHECK(seen.insert(m.name).second);
      FUZZ_CHECK(text.find(m.relativePath) != std::string::npos);
    }
  }
  return 0;
}
