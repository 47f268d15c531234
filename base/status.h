#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace hyper {

// The one error model: a Status is either ok or carries a message. Causes chain outward as
// "outer <- inner" (osquery's utils/error): "create bridge hb-lab <- ip link add: File exists".
// Nothing in hyper throws across a module boundary; wrappers around libraries that throw catch
// and return a Status.
class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status ok() { return Status(); }
  static Status error(std::string message) { return Status(std::move(message)); }

  bool isOk() const { return !message_.has_value(); }
  explicit operator bool() const { return isOk(); }
  const std::string& message() const;

  // Returns a new error "outer <- this"; ok stays ok.
  Status withContext(const std::string& outer) const;

 private:
  explicit Status(std::string message) : message_(std::move(message)) {}
  std::optional<std::string> message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}         // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {}  // NOLINT(google-explicit-constructor)

  bool isOk() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return isOk(); }
  const Status& status() const {
    static const Status okStatus;
    return isOk() ? okStatus : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace hyper

#define HYPER_CONCAT_INNER(a, b) a##b
#define HYPER_CONCAT(a, b) HYPER_CONCAT_INNER(a, b)

#define HYPER_RETURN_IF_ERROR(expr)                  \
  do {                                               \
    ::hyper::Status hyper_status_ = (expr);          \
    if (!hyper_status_.isOk()) return hyper_status_; \
  } while (false)

#define HYPER_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.isOk()) return tmp.status();             \
  lhs = std::move(tmp).value()

#define HYPER_ASSIGN_OR_RETURN(lhs, expr) \
  HYPER_ASSIGN_OR_RETURN_IMPL(HYPER_CONCAT(hyper_result_, __LINE__), lhs, expr)
