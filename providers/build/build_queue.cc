#include "providers/build/build_queue.h"

namespace hyper::providers::build {

namespace {

// Bounds of build durations and queue waits, in seconds: builds take from under a second (an
// initramfs) to many minutes (a rootfs with many packages).
std::vector<double> buildBuckets() {
  return {0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 3600};
}

double secondsBetween(BuildJob::Clock::time_point a, BuildJob::Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

BuildLog& BuildLog::operator+=(const std::string& text) {
  text_ += text;
  if (onLine_) {
    size_t end;
    while ((end = text_.find('\n', reported_)) != std::string::npos) {
      onLine_(text_.substr(reported_, end - reported_));
      reported_ = end + 1;
    }
  }
  return *this;
}

BuildQueue::BuildQueue(size_t concurrency, std::function<void(ProgressEvent)> report,
                       std::function<void()> onDone)
    : concurrency_(concurrency == 0 ? 1 : concurrency),
      report_(std::move(report)),
      onDone_(std::move(onDone)) {}

BuildQueue::~BuildQueue() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stopping_ = true;
    for (auto& [key, job] : jobs_) {
      job->cancel = true;
    }
  }
  cv_.notify_all();
  doneCv_.notify_all();
  for (auto& t : workers_) {
    t.join();
  }
}

void BuildQueue::leaveLocked(const std::string& owner, const std::string& except,
                             const std::string& why, std::vector<ProgressEvent>& events) {
  for (auto& [k, job] : jobs_) {
    if (k != except && job->state != BuildJob::State::Done && job->owners.erase(owner) > 0 &&
        job->owners.empty()) {
      job->cancel = true;
      ProgressEvent e;
      e.object = {"Build", owner};
      e.type = "build-cancelled";
      e.level = "warning";
      e.message = "build of key " + k.substr(0, 12) + " cancelled: " + why;
      events.push_back(std::move(e));
    }
  }
}

void BuildQueue::leave(const std::string& owner) {
  std::vector<ProgressEvent> events;
  {
    std::lock_guard<std::mutex> lk(mu_);
    leaveLocked(owner, "", "the Build was deleted", events);
  }
  for (auto& e : events) {
    report_(std::move(e));
  }
}

std::shared_ptr<BuildJob> BuildQueue::submit(const std::string& key, const std::string& owner,
                                             const std::string& type, Work work) {
  std::vector<ProgressEvent> events;
  std::shared_ptr<BuildJob> job;
  bool fresh = false;
  {
    std::lock_guard<std::mutex> lk(mu_);
    // Done jobs nobody came back for (their Build left the manifests) go after a while.
    const auto now = BuildJob::Clock::now();
    for (auto it = jobs_.begin(); it != jobs_.end();) {
      const bool stale = it->second->state == BuildJob::State::Done &&
                         now - it->second->doneAt > std::chrono::minutes(10);
      it = stale ? jobs_.erase(it) : std::next(it);
    }
    // The owner's other unfinished job: its spec moved on. Cancelled when nobody else waits.
    leaveLocked(owner, key, "the spec moved on", events);
    auto it = jobs_.find(key);
    // A job being cancelled (everyone had left it) is not joined: a new one replaces it.
    if (it != jobs_.end() && !it->second->cancel) {
      it->second->owners.insert(owner);
      job = it->second;
    } else {
      job = std::make_shared<BuildJob>();
      job->key = key;
      job->type = type;
      job->firstOwner = owner;
      job->owners = {owner};
      job->queuedAt = BuildJob::Clock::now();
      jobs_[key] = job;
      fresh = true;
      ProgressEvent e;
      e.object = {"Build", owner};
      e.type = "build-queued";
      e.message = "queued (" + type + ", key " + key.substr(0, 12) + ", " +
                  std::to_string(pending_.size() + 1) + " waiting)";
      e.samples.push_back({"hyper_build_cache_total",
                           "Build applies by cache result",
                           {{"result", "miss"}, {"type", type}},
                           1,
                           {}});
      events.push_back(std::move(e));
    }
  }
  // Reported before a worker can see the job, so its build-started never comes first. A Build
  // joining meanwhile shares it; one cancelling it meanwhile makes the worker skip the work.
  for (auto& e : events) {
    report_(std::move(e));
  }
  if (fresh) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      pending_.emplace_back(job, std::move(work));
      if (pending_.size() > idle_ && workers_.size() < concurrency_ && !stopping_) {
        workers_.emplace_back([this] { workerLoop(); });
      }
    }
    cv_.notify_one();
  }
  return job;
}

void BuildQueue::workerLoop() {
  std::unique_lock<std::mutex> lk(mu_);
  while (true) {
    ++idle_;
    cv_.wait(lk, [this] { return stopping_ || !pending_.empty(); });
    --idle_;
    if (stopping_) {
      return;
    }
    auto [job, work] = std::move(pending_.front());
    pending_.pop_front();
    job->state = BuildJob::State::Running;
    job->startedAt = BuildJob::Clock::now();
    const std::string owner = job->firstOwner;
    lk.unlock();

    ProgressEvent started;
    started.object = {"Build", owner};
    started.type = "build-started";
    const double waited = secondsBetween(job->queuedAt, job->startedAt);
    started.message =
        "started after " + std::to_string(static_cast<int>(waited * 1000)) + " ms in the queue";
    started.samples.push_back({"hyper_build_queue_wait_seconds",
                               "time Builds waited in the queue",
                               {{"type", job->type}},
                               waited,
                               buildBuckets()});
    report_(std::move(started));

    Status result = job->cancel ? Status::error("cancelled before it started") : work(*job);
    const auto doneAt = BuildJob::Clock::now();
    const double took = secondsBetween(job->startedAt, doneAt);
    const std::string outcome = result.isOk() ? "ok" : job->cancel ? "cancelled" : "failed";

    // Reported before the job is marked done, so whoever sees it done finds its end reported.
    ProgressEvent done;
    done.object = {"Build", owner};
    done.type = result.isOk() ? "build-finished" : "build-failed";
    done.level = result.isOk() ? "info" : "error";
    done.message = (result.isOk() ? "built in " : outcome + " after ") +
                   std::to_string(static_cast<int>(took * 1000)) + " ms" +
                   (result.isOk() ? "" : ": " + result.message());
    done.details = {{"seconds", took}, {"result", outcome}, {"buildType", job->type}};
    done.samples.push_back({"hyper_build_duration_seconds",
                            "Build durations by type and result",
                            {{"result", outcome}, {"type", job->type}},
                            took,
                            buildBuckets()});
    report_(std::move(done));

    lk.lock();
    job->state = BuildJob::State::Done;
    job->doneAt = doneAt;
    job->result = result;
    lk.unlock();
    doneCv_.notify_all();
    if (onDone_) {
      onDone_();
    }
    lk.lock();
  }
}

bool BuildQueue::wait(const std::shared_ptr<BuildJob>& job, const std::string& owner,
                      const std::atomic<bool>* cancel, BuildJob::Clock::time_point deadline) {
  std::unique_lock<std::mutex> lk(mu_);
  while (job->state != BuildJob::State::Done) {
    const bool gaveUp =
        stopping_ || (cancel && cancel->load()) || BuildJob::Clock::now() >= deadline;
    if (gaveUp) {
      job->owners.erase(owner);
      if (job->owners.empty()) {
        job->cancel = true;
      }
      return false;
    }
    // Wakes at least every 100 ms to look at the cancel flag.
    auto until = std::min(deadline, BuildJob::Clock::now() + std::chrono::milliseconds(100));
    doneCv_.wait_until(lk, until);
  }
  return true;
}

void BuildQueue::forget(const std::shared_ptr<BuildJob>& job) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = jobs_.find(job->key);
  if (it != jobs_.end() && it->second == job && job->state == BuildJob::State::Done) {
    jobs_.erase(it);
  }
}

BuildJob::State BuildQueue::stateOf(const BuildJob& job, std::string* progress) const {
  std::lock_guard<std::mutex> lk(mu_);
  if (progress) {
    *progress = job.progress;
  }
  return job.state;
}

void BuildQueue::setProgress(BuildJob& job, const std::string& line) {
  std::lock_guard<std::mutex> lk(mu_);
  job.progress = line;
}

size_t BuildQueue::queued() const {
  std::lock_guard<std::mutex> lk(mu_);
  return pending_.size();
}

}  // namespace hyper::providers::build
