#include "source/source.h"

#include <filesystem>
#include <system_error>

#include "source/dir_source.h"
#include "source/git_source.h"

namespace hyper::controller {
namespace fs = std::filesystem;

namespace {

// A bare repository has these at its top; a working tree keeps them under .git/ and is read as
// a plain directory (the hidden .git is skipped like any hidden entry).
bool isBareRepository(const fs::path& dir) {
  std::error_code ec;
  return fs::exists(dir / "HEAD", ec) && fs::is_directory(dir / "objects", ec) &&
         fs::is_directory(dir / "refs", ec);
}

}  // namespace

Result<std::unique_ptr<Source>> openSource(const SourceSpec& spec) {
  if (spec.location.empty()) {
    return Status::error("open source <- no location given");
  }
  std::error_code ec;
  bool hasScheme = spec.location.find("://") != std::string::npos;
  if (!hasScheme && fs::is_directory(spec.location, ec) && !isBareRepository(spec.location)) {
    auto dir = DirSource::open(spec);
    if (!dir.isOk()) {
      return dir.status();
    }
    return std::unique_ptr<Source>(std::move(dir).value());
  }
  auto git = GitSource::open(spec);
  if (!git.isOk()) {
    return git.status();
  }
  return std::unique_ptr<Source>(std::move(git).value());
}

}  // namespace hyper::controller
