#pragma once

#include <cstddef>
#include <iterator>
#include <memory>
#include <vector>

#include "reconciler/managed_record.h"

namespace hyper {

// Inventory records as an immutable list whose copies share the records: what the inventory's
// snapshots are, so that the snapshot after a write copies pointers, not every record (at 10k
// records, copying their strings, labels and handles was a tenth of a push-to-converged).
// Read like a const std::vector<ManagedRecord>: size(), [i], iteration by const reference.
class RecordList {
 public:
  using Item = std::shared_ptr<const ManagedRecord>;
  using value_type = ManagedRecord;

  class const_iterator {
   public:
    using iterator_category = std::random_access_iterator_tag;
    using value_type = ManagedRecord;
    using difference_type = std::ptrdiff_t;
    using pointer = const ManagedRecord*;
    using reference = const ManagedRecord&;

    const_iterator() = default;
    explicit const_iterator(std::vector<Item>::const_iterator at) : at_(at) {}
    reference operator*() const { return **at_; }
    pointer operator->() const { return at_->get(); }
    reference operator[](difference_type n) const { return *at_[n]; }
    const_iterator& operator++() {
      ++at_;
      return *this;
    }
    const_iterator operator++(int) { return const_iterator(at_++); }
    const_iterator& operator--() {
      --at_;
      return *this;
    }
    const_iterator operator--(int) { return const_iterator(at_--); }
    const_iterator& operator+=(difference_type n) {
      at_ += n;
      return *this;
    }
    const_iterator& operator-=(difference_type n) {
      at_ -= n;
      return *this;
    }
    friend const_iterator operator+(const_iterator i, difference_type n) { return i += n; }
    friend const_iterator operator+(difference_type n, const_iterator i) { return i += n; }
    friend const_iterator operator-(const_iterator i, difference_type n) { return i -= n; }
    friend difference_type operator-(const const_iterator& a, const const_iterator& b) {
      return a.at_ - b.at_;
    }
    friend bool operator==(const const_iterator& a, const const_iterator& b) {
      return a.at_ == b.at_;
    }
    friend auto operator<=>(const const_iterator& a, const const_iterator& b) {
      return a.at_ <=> b.at_;
    }

   private:
    std::vector<Item>::const_iterator at_;
  };
  using iterator = const_iterator;

  RecordList() = default;
  // Each record moved into an item of its own. Implicit: a list of records is one.
  RecordList(std::vector<ManagedRecord> records) {  // NOLINT(google-explicit-constructor)
    items_.reserve(records.size());
    for (auto& r : records) {
      items_.push_back(std::make_shared<const ManagedRecord>(std::move(r)));
    }
  }
  explicit RecordList(std::vector<Item> items) : items_(std::move(items)) {}

  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  const ManagedRecord& operator[](size_t i) const { return *items_[i]; }
  const ManagedRecord& front() const { return *items_.front(); }
  const ManagedRecord& back() const { return *items_.back(); }
  const_iterator begin() const { return const_iterator(items_.begin()); }
  const_iterator end() const { return const_iterator(items_.end()); }
  const std::vector<Item>& items() const { return items_; }
  // A deep copy, for callers that change records.
  std::vector<ManagedRecord> copy() const {
    std::vector<ManagedRecord> out;
    out.reserve(items_.size());
    for (const auto& item : items_) {
      out.push_back(*item);
    }
    return out;
  }

 private:
  std::vector<Item> items_;
};

}  // namespace hyper
