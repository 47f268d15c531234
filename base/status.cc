#include "base/status.h"

namespace hyper {

const std::string& Status::message() const {
  static const std::string empty;
  return message_ ? *message_ : empty;
}

Status Status::withContext(const std::string& outer) const {
  if (isOk()) {
    return *this;
  }
  return Status(outer + " <- " + *message_);
}

}  // namespace hyper
