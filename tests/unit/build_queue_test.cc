// The Build provider's queue (providers/build/build_queue.h): one job per key whoever asks, at
// most `concurrency` at once, a job its owners all left cancelled, a waiter that gives up, and
// the events (with their metrics) it reports.

#include "providers/build/build_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

namespace hyper::providers::build {
namespace {

using namespace std::chrono_literals;

// Work that runs until released (or its job is cancelled), counting how many run at once.
struct Gate {
  std::atomic<bool> open{false};
  std::atomic<int> running{0};
  std::atomic<int> maxRunning{0};
  std::atomic<int> runs{0};
  BuildQueue::Work work() {
    return [this](BuildJob& job) {
      ++runs;
      int now = ++running;
      int seen = maxRunning.load();
      while (now > seen && !maxRunning.compare_exchange_weak(seen, now)) {
      }
      while (!open.load() && !job.cancel.load()) {
        std::this_thread::sleep_for(2ms);
      }
      --running;
      return job.cancel.load() ? Status::error("cancelled") : Status::ok();
    };
  }
};

class BuildQueueTest : public ::testing::Test {
 protected:
  std::unique_ptr<BuildQueue> queue(size_t concurrency) {
    return std::make_unique<BuildQueue>(
        concurrency,
        [this](ProgressEvent e) {
          std::lock_guard<std::mutex> lk(mu_);
          events_.push_back(std::move(e));
        },
        [this] { ++done_; });
  }
  std::vector<std::string> types(const std::string& owner) {
    std::lock_guard<std::mutex> lk(mu_);
    std::vector<std::string> out;
    for (const auto& e : events_) {
      if (e.object.name == owner) {
        out.push_back(e.type);
      }
    }
    return out;
  }
  std::mutex mu_;
  std::vector<ProgressEvent> events_;
  std::atomic<int> done_{0};
};

TEST_F(BuildQueueTest, OneJobPerKeyWhoeverAsks) {
  Gate gate;
  auto q = queue(2);
  auto a = q->submit("k1", "a", "initramfs", gate.work());
  auto b = q->submit("k1", "b", "initramfs", gate.work());
  EXPECT_EQ(a, b) << "two Builds with one key share one job";
  gate.open = true;
  ASSERT_TRUE(q->wait(a, "a", nullptr, BuildJob::Clock::now() + 10s));
  EXPECT_TRUE(a->result.isOk());
  EXPECT_EQ(gate.runs.load(), 1);
  // onDone (hyperd's loop is woken) follows the job's end.
  for (int i = 0; i < 500 && done_.load() == 0; ++i) {
    std::this_thread::sleep_for(2ms);
  }
  EXPECT_EQ(done_.load(), 1);
  EXPECT_EQ(types("a"),
            (std::vector<std::string>{"build-queued", "build-started", "build-finished"}));
  // The end carries the duration metric.
  std::lock_guard<std::mutex> lk(mu_);
  ASSERT_FALSE(events_.back().samples.empty());
  EXPECT_EQ(events_.back().samples[0].name, "hyper_build_duration_seconds");
}

TEST_F(BuildQueueTest, NoMoreThanTheConcurrencyAtOnce) {
  Gate gate;
  auto q = queue(2);
  std::vector<std::shared_ptr<BuildJob>> jobs;
  for (int i = 0; i < 5; ++i) {
    jobs.push_back(
        q->submit("k" + std::to_string(i), "o" + std::to_string(i), "rootfs", gate.work()));
  }
  // Two start; three wait in the queue.
  for (int i = 0; i < 500 && gate.running.load() < 2; ++i) {
    std::this_thread::sleep_for(2ms);
  }
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(gate.running.load(), 2);
  EXPECT_EQ(q->queued(), 3u);
  gate.open = true;
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(q->wait(jobs[i], "o" + std::to_string(i), nullptr, BuildJob::Clock::now() + 10s));
  }
  EXPECT_EQ(gate.maxRunning.load(), 2);
  EXPECT_EQ(gate.runs.load(), 5);
}

TEST_F(BuildQueueTest, AJobItsOwnerMovedOnFromIsCancelled) {
  Gate gate;
  auto q = queue(1);
  auto old = q->submit("old-key", "web", "rootfs", gate.work());
  for (int i = 0; i < 500 && gate.running.load() < 1; ++i) {
    std::this_thread::sleep_for(2ms);
  }
  // The spec changed: a new key for the same Build. The old job is cancelled, the new one runs.
  auto next = q->submit("new-key", "web", "rootfs", gate.work());
  ASSERT_TRUE(q->wait(old, "web", nullptr, BuildJob::Clock::now() + 10s));
  EXPECT_FALSE(old->result.isOk());
  EXPECT_TRUE(old->cancel.load());
  gate.open = true;
  ASSERT_TRUE(q->wait(next, "web", nullptr, BuildJob::Clock::now() + 10s));
  EXPECT_TRUE(next->result.isOk());
  auto seen = types("web");
  EXPECT_NE(std::find(seen.begin(), seen.end(), "build-cancelled"), seen.end());

  // A job another Build still waits for is not cancelled when one owner moves on.
  Gate shared;
  auto s1 = q->submit("shared", "x", "rootfs", shared.work());
  q->submit("shared", "y", "rootfs", shared.work());
  q->submit("x-new", "x", "rootfs", shared.work());
  EXPECT_FALSE(s1->cancel.load()) << "y still waits for it";
  shared.open = true;
  ASSERT_TRUE(q->wait(s1, "y", nullptr, BuildJob::Clock::now() + 10s));
  EXPECT_TRUE(s1->result.isOk());
}

TEST_F(BuildQueueTest, ADeletedBuildLeavesItsJobsAndOnlyLoneOnesAreCancelled) {
  Gate gate;
  auto q = queue(1);
  auto running = q->submit("k1", "gone", "script", gate.work());
  for (int i = 0; i < 500 && gate.running.load() < 1; ++i) {
    std::this_thread::sleep_for(2ms);
  }
  auto queued = q->submit("k2", "other", "script", gate.work());
  auto shared = q->submit("k2", "gone-too", "script", gate.work());
  ASSERT_EQ(queued, shared);
  q->leave("gone");      // its running job is cancelled
  q->leave("gone-too");  // "other" still waits for k2: it stays
  EXPECT_TRUE(running->cancel.load());
  EXPECT_FALSE(queued->cancel.load());
  ASSERT_TRUE(q->wait(running, "gone", nullptr, BuildJob::Clock::now() + 10s));
  EXPECT_FALSE(running->result.isOk());
  gate.open = true;
  ASSERT_TRUE(q->wait(queued, "other", nullptr, BuildJob::Clock::now() + 10s));
  EXPECT_TRUE(queued->result.isOk());
  auto seen = types("gone");
  EXPECT_NE(std::find(seen.begin(), seen.end(), "build-cancelled"), seen.end());
  EXPECT_EQ(gate.runs.load(), 2);
}

TEST_F(BuildQueueTest, AWaiterThatGivesUpLeavesAndTheLoneJobIsCancelled) {
  Gate gate;
  auto q = queue(1);
  auto job = q->submit("k", "a", "debian-kernel", gate.work());
  std::atomic<bool> cancel{false};
  std::thread canceller([&] {
    std::this_thread::sleep_for(100ms);
    cancel = true;
  });
  auto started = BuildJob::Clock::now();
  EXPECT_FALSE(q->wait(job, "a", &cancel, BuildJob::Clock::now() + 30s));
  canceller.join();
  EXPECT_LT(BuildJob::Clock::now() - started, 5s);
  EXPECT_TRUE(job->cancel.load()) << "nobody waits for it any more";
  // The deadline, too.
  auto other = q->submit("k2", "b", "debian-kernel", gate.work());
  EXPECT_FALSE(q->wait(other, "b", nullptr, BuildJob::Clock::now() + 50ms));
  EXPECT_TRUE(other->cancel.load());
}

TEST(BuildLogTest, EachCompleteLineGoesOutOnce) {
  std::vector<std::string> lines;
  BuildLog log([&](const std::string& line) { lines.push_back(line); });
  log += "one\ntw";
  log += "o\n";
  log += "three";
  EXPECT_EQ(lines, (std::vector<std::string>{"one", "two"}));
  EXPECT_EQ(log.text(), "one\ntwo\nthree");
}

}  // namespace
}  // namespace hyper::providers::build
