#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "reconciler/provider.h"

namespace hyper::providers::build {

// A build's log as it is written: each complete line goes to `onLine` (the log file, a progress
// event), the whole text is kept for the end.
class BuildLog {
 public:
  explicit BuildLog(std::function<void(const std::string& line)> onLine = nullptr)
      : onLine_(std::move(onLine)) {}
  BuildLog& operator+=(const std::string& text);
  const std::string& text() const { return text_; }

 private:
  std::function<void(const std::string&)> onLine_;
  std::string text_;
  size_t reported_ = 0;  // text_[0, reported_) went to onLine_
};

// One build in the queue: the key it makes, the Builds waiting for it (two Builds with one key
// share one job), its state and, once done, its result.
struct BuildJob {
  using Clock = std::chrono::steady_clock;
  enum class State { Queued, Running, Done };

  std::string key;
  std::string type;        // the Build type, for metrics
  std::string firstOwner;  // the Build that queued it: whose log and events it writes
  std::set<std::string> owners;
  std::atomic<bool> cancel{false};
  State state = State::Queued;
  Status result;  // when Done
  Clock::time_point queuedAt, startedAt, doneAt;
  std::string progress;  // its last log line
};

// Builds run beside the reconcile, not in it: at most `concurrency` at once on the queue's own
// threads, first come first served. That is fair between Build objects: a Build has at most one
// unfinished job of its own (submitting a new key cancels its other one), so no Build can take
// more than one place in the line, each key built once at a time whoever asks, a job its owners all
// left (their spec moved on) cancelled, its process group killed. What happens is reported through
// `report` (events and metrics for hyperd, lines for a waiting hyperctl), and `onDone` is called
// when a job finishes (hyperd's loop is woken to record it).
class BuildQueue {
 public:
  using Work = std::function<Status(BuildJob& job)>;
  BuildQueue(size_t concurrency, std::function<void(ProgressEvent)> report,
             std::function<void()> onDone);
  ~BuildQueue();  // cancels every job and joins the workers
  BuildQueue(const BuildQueue&) = delete;
  BuildQueue& operator=(const BuildQueue&) = delete;

  // The job making `key`: the one queued, running or done and not yet taken (`owner` joins it),
  // or a new one running `work`. Another unfinished job of `owner` that no other Build waits for
  // is cancelled: its spec moved on.
  std::shared_ptr<BuildJob> submit(const std::string& key, const std::string& owner,
                                   const std::string& type, Work work);
  // Waits until `job` is done, `cancel` is set or `deadline` passes. False when it gave up: then
  // `owner` leaves the job, and a job nobody waits for any more is cancelled.
  bool wait(const std::shared_ptr<BuildJob>& job, const std::string& owner,
            const std::atomic<bool>* cancel, BuildJob::Clock::time_point deadline);
  // `owner` leaves every unfinished job (its Build was deleted: pruned); a job nobody else waits
  // for is cancelled, its process group killed, or skipped when it has not started.
  void leave(const std::string& owner);
  // Forgets a done job (its result was taken; the store keeps what it made).
  void forget(const std::shared_ptr<BuildJob>& job);
  // Reads a job's state and progress under the queue's lock.
  BuildJob::State stateOf(const BuildJob& job, std::string* progress = nullptr) const;
  // Sets a running job's progress line.
  void setProgress(BuildJob& job, const std::string& line);

  size_t queued() const;

 private:
  void workerLoop();
  // With mu_ held: `owner` leaves its unfinished jobs but `except`; lone ones are cancelled.
  void leaveLocked(const std::string& owner, const std::string& except, const std::string& why,
                   std::vector<ProgressEvent>& events);

  const size_t concurrency_;
  std::function<void(ProgressEvent)> report_;
  std::function<void()> onDone_;
  mutable std::mutex mu_;
  std::condition_variable cv_;                             // workers: a job was queued, or stopping
  std::condition_variable doneCv_;                         // waiters: a job finished
  std::map<std::string, std::shared_ptr<BuildJob>> jobs_;  // by key, until forgotten
  std::deque<std::pair<std::shared_ptr<BuildJob>, Work>> pending_;
  std::vector<std::thread> workers_;  // started as jobs come, up to concurrency_
  size_t idle_ = 0;
  bool stopping_ = false;
};

}  // namespace hyper::providers::build
