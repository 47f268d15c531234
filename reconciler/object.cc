#include "reconciler/object.h"

#include <mutex>
#include <unordered_map>

namespace hyper {

namespace {

// The shapes alive in the process, by a hash of their contents. Weak: a shape lives as long as a
// map holds it; expired entries are swept when the table has doubled since the last sweep.
class ShapeTable {
 public:
  std::shared_ptr<SourceMap::Shape> intern(std::shared_ptr<SourceMap::Shape> shape) {
    const size_t key = hashOf(*shape);
    std::lock_guard<std::mutex> lock(mu_);
    auto [begin, end] = shapes_.equal_range(key);
    for (auto it = begin; it != end; ++it) {
      if (auto alive = it->second.lock(); alive && *alive == *shape) {
        return alive;
      }
    }
    if (shapes_.size() >= 2 * sizeAfterSweep_ + 64) {
      std::erase_if(shapes_, [](const auto& kv) { return kv.second.expired(); });
      sizeAfterSweep_ = shapes_.size();
    }
    shapes_.emplace(key, shape);
    return shape;
  }

 private:
  static size_t hashOf(const SourceMap::Shape& shape) {
    size_t h = std::hash<std::string_view>()(shape.paths);
    for (const auto& e : shape.entries) {
      h = h * 1000003 ^ (static_cast<size_t>(e.line) << 20 ^ static_cast<size_t>(e.column));
    }
    return h;
  }

  std::mutex mu_;
  std::unordered_multimap<size_t, std::weak_ptr<SourceMap::Shape>> shapes_;
  size_t sizeAfterSweep_ = 0;
};

ShapeTable& shapeTable() {
  static ShapeTable* table = new ShapeTable();  // never destroyed: maps may outlive statics
  return *table;
}

}  // namespace

void SourceMap::add(std::string_view path, int line, int column) {
  if (shape_ == nullptr) {
    shape_ = std::make_shared<Shape>();
    firstLine_ = line;
  } else if (sealed_ || shape_.use_count() > 1) {
    shape_ = std::make_shared<Shape>(*shape_);  // others may hold it: copy first
  }
  sealed_ = false;
  shape_->paths += path;
  shape_->entries.push_back(
      {static_cast<uint32_t>(shape_->paths.size()), line - firstLine_, column});
}

void SourceMap::seal() {
  if (shape_ != nullptr && !sealed_) {
    shape_->paths.shrink_to_fit();
    shape_->entries.shrink_to_fit();
    shape_ = shapeTable().intern(std::move(shape_));
  }
  sealed_ = true;
}

const std::string& SourceMap::file() const {
  static const std::string empty;
  return file_ ? *file_ : empty;
}

SourceLocation SourceMap::locate(std::string_view path) const {
  if (shape_ == nullptr) {
    return {file(), 0, 0};
  }
  std::string_view paths = shape_->paths;
  std::string_view probe = path;
  while (true) {
    uint32_t begin = 0;
    for (const auto& e : shape_->entries) {
      if (paths.substr(begin, e.pathEnd - begin) == probe) {
        return {file(), firstLine_ + e.line, e.column};
      }
      begin = e.pathEnd;
    }
    if (probe.empty()) {
      break;
    }
    size_t cut = probe.find_last_of(".[");
    probe = cut == std::string_view::npos ? std::string_view() : probe.substr(0, cut);
  }
  return {file(), 0, 0};
}

SourceLocation Object::locate(std::string_view fieldPath) const {
  SourceLocation loc = sourceMap.locate(fieldPath);
  if (loc.line == 0) {
    return where;
  }
  return loc;
}

std::string appendKey(std::string_view path, std::string_view key) {
  if (path.empty()) {
    return std::string(key);
  }
  std::string out(path);
  out += '.';
  out += key;
  return out;
}

std::string appendIndex(std::string_view path, size_t index) {
  std::string out(path);
  out += '[';
  out += std::to_string(index);
  out += ']';
  return out;
}

std::string canonicalJson(const Json& value) {
  // nlohmann::json objects are std::map-backed, so dump() is already key-sorted.
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace hyper
