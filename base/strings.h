#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace hyper {

// "a, b, c" from {"a", "b", "c"} with sep ", ".
inline std::string join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) {
      out += sep;
    }
    out += items[i];
  }
  return out;
}

}  // namespace hyper
