#pragma once

#include <memory>
#include <ostream>
#include <utility>

#include <nlohmann/json.hpp>

namespace hyper {

using Json = nlohmann::json;

// A JSON value that its copies share rather than copy: what an object's spec is held as, so that
// a revision's object, the inventory record made when it was applied, the record of the same
// spec read back at start (Inventory::shareSpecs) and every copy of them hold one tree in memory.
// A spec tree is most of what hyperd keeps per object (hyper_net_apply_bench: about 1 KB of a
// NetworkPolicy's); before this, the revision and the record held one each, and every snapshot
// of the records copied them.
//
// Reading goes through get(), `->` and `*`, or the implicit const Json&. Writing goes through
// mut(), which first gives this holder a tree of its own when another shares it (copy on write),
// so a change never shows through another holder. Like a Json, one holder is not to be written
// by one thread while another thread reads it; distinct holders of one tree may be used by any
// threads, since a shared tree is never written.
class SharedJson {
 public:
  SharedJson() = default;                                                      // null
  SharedJson(Json value) : tree_(std::make_shared<Json>(std::move(value))) {}  // NOLINT: as Json
  SharedJson& operator=(Json value) {
    tree_ = std::make_shared<Json>(std::move(value));
    return *this;
  }

  const Json& get() const { return tree_ ? *tree_ : null(); }
  operator const Json&() const { return get(); }  // NOLINT(google-explicit-constructor)
  const Json& operator*() const { return get(); }
  const Json* operator->() const { return &get(); }
  // A member of an object (or element of an array) that is there, as Json's const operator[].
  template <typename Key>
  const Json& operator[](const Key& key) const {
    return get()[key];
  }

  // The value to change, this holder's own.
  Json& mut() {
    if (!tree_) {
      tree_ = std::make_shared<Json>();
    } else if (tree_.use_count() > 1) {
      tree_ = std::make_shared<Json>(*tree_);
    }
    return *tree_;
  }

  // True when both hold the very same tree, not merely equal values.
  bool sharesWith(const SharedJson& other) const { return tree_ && tree_ == other.tree_; }
  // Holds `other`'s tree when the values are equal, so the two keep one; true when it does.
  bool shareIfEqual(const SharedJson& other) {
    if (sharesWith(other)) {
      return true;
    }
    if (!other.tree_ || get() != other.get()) {
      return false;
    }
    tree_ = other.tree_;
    return true;
  }

  friend bool operator==(const SharedJson& a, const SharedJson& b) {
    return a.sharesWith(b) || a.get() == b.get();
  }
  friend bool operator!=(const SharedJson& a, const SharedJson& b) { return !(a == b); }
  friend bool operator==(const SharedJson& a, const Json& b) { return a.get() == b; }
  friend bool operator!=(const SharedJson& a, const Json& b) { return a.get() != b; }
  friend bool operator==(const Json& a, const SharedJson& b) { return a == b.get(); }
  friend bool operator!=(const Json& a, const SharedJson& b) { return a != b.get(); }
  friend std::ostream& operator<<(std::ostream& out, const SharedJson& value) {
    return out << value.get();
  }

 private:
  static const Json& null() {
    static const Json* value = new Json();  // never destroyed: read at exit too
    return *value;
  }

  std::shared_ptr<Json> tree_;
};

}  // namespace hyper
