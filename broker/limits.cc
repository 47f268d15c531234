#include "broker/limits.h"

namespace hyper::broker {

bool UidCounter::tryAdd(uid_t uid, int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  int& n = counts_[uid];
  if (n >= limit) {
    if (n == 0) {
      counts_.erase(uid);
    }
    return false;
  }
  ++n;
  return true;
}

void UidCounter::remove(uid_t uid) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = counts_.find(uid);
  if (it != counts_.end() && --it->second <= 0) {
    counts_.erase(it);
  }
}

int UidCounter::count(uid_t uid) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = counts_.find(uid);
  return it == counts_.end() ? 0 : it->second;
}

}  // namespace hyper::broker
