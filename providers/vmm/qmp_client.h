#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace hyper::providers::vmm {

// A QEMU Machine Protocol client over a Unix socket: one JSON object per line each way.
// connect() reads the greeting and negotiates capabilities (`qmp_capabilities`); execute() sends
// one command and returns its "return" value, or an error with QEMU's class and description.
// Asynchronous events (SHUTDOWN, POWERDOWN, ...) may arrive before a reply; they are kept, in
// order, for the caller (events()).
//
// QEMU serves one QMP client at a time on a socket: hold a client only for the calls at hand.
// Not thread-safe; one caller at a time.
class QmpClient {
 public:
  using Json = nlohmann::json;
  using Millis = std::chrono::milliseconds;

  static Result<std::unique_ptr<QmpClient>> connect(const std::string& socketPath,
                                                    Millis timeout = Millis(5000));
  ~QmpClient();
  QmpClient(const QmpClient&) = delete;
  QmpClient& operator=(const QmpClient&) = delete;

  Result<Json> execute(const std::string& command, const Json& arguments = Json(),
                       Millis timeout = Millis(5000));

  // Waits until an event of that name arrives (or was already seen since the last call).
  Result<Json> waitEvent(const std::string& name, Millis timeout);

  const Json& greeting() const { return greeting_; }
  const std::vector<Json>& events() const { return events_; }

 private:
  QmpClient(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  // The next complete message, or an error at the deadline / end of stream / bad JSON.
  Result<Json> readMessage(std::chrono::steady_clock::time_point deadline);
  Status writeAll(const std::string& data, std::chrono::steady_clock::time_point deadline);

  int fd_ = -1;
  std::string path_;
  std::string buffer_;  // bytes read and not yet consumed
  Json greeting_;
  std::vector<Json> events_;
  size_t eventsConsumed_ = 0;  // events before this index were returned by waitEvent
  long nextId_ = 1;
};

}  // namespace hyper::providers::vmm
