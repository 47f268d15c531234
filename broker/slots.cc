#include "broker/slots.h"

#include <algorithm>
#include <chrono>

namespace hyper::broker {

void RuleSlots::setLimit(int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  limit_ = limit;
  cv_.notify_all();
}

SlotWait RuleSlots::acquire(std::chrono::steady_clock::time_point deadline,
                            const std::function<bool()>& abandoned,
                            const std::function<bool()>& onQueued) {
  std::unique_lock<std::mutex> lock(mu_);
  uint64_t ticket = nextTicket_++;
  bool notified = false;
  auto leave = [&](SlotWait why) {
    // Leave the line: if we are at its head, the next ticket moves up; otherwise our ticket is
    // skipped when the head reaches it.
    if (ticket == serving_) {
      advance();
    } else {
      skipped_.insert(ticket);
    }
    cv_.notify_all();
    return why;
  };
  while (!(ticket == serving_ && running_ < limit_)) {
    if (!notified) {
      notified = true;
      lock.unlock();
      bool wait = onQueued();
      lock.lock();
      if (!wait) {
        return leave(SlotWait::Refused);
      }
      continue;
    }
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      return leave(SlotWait::TimedOut);
    }
    // The wake-up interval only bounds how late a hang-up of a waiting client is noticed.
    cv_.wait_for(lock, std::min<std::chrono::steady_clock::duration>(std::chrono::milliseconds(200),
                                                                     deadline - now));
    if (ticket == serving_ && running_ < limit_) {
      break;
    }
    lock.unlock();
    bool gone = abandoned();
    lock.lock();
    if (gone) {
      return leave(SlotWait::Abandoned);
    }
  }
  ++running_;
  advance();
  cv_.notify_all();
  return SlotWait::Acquired;
}

void RuleSlots::advance() {
  ++serving_;
  while (skipped_.erase(serving_) > 0) {
    ++serving_;
  }
}

void RuleSlots::release() {
  std::lock_guard<std::mutex> lock(mu_);
  --running_;
  cv_.notify_all();
}

int RuleSlots::running() const {
  std::lock_guard<std::mutex> lock(mu_);
  return running_;
}

std::shared_ptr<RuleSlots> SlotTable::forRule(const std::string& name, int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = slots_[name];
  if (!slot) {
    slot = std::make_shared<RuleSlots>(limit);
  } else {
    slot->setLimit(limit);
  }
  return slot;
}

}  // namespace hyper::broker
