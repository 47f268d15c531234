#pragma once

#include <string>
#include <vector>

#include "reconciler/object.h"

namespace hyper::ctl {

// A plain text table: a header row and aligned columns, like `kubectl get`.
std::string renderTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows);

// JSON to block-style YAML (yaml-cpp's emitter), for `-o yaml`.
std::string toYaml(const Json& value);

// "5s", "3m", "2h", "4d" since `unixSeconds`.
std::string age(int64_t unixSeconds, int64_t now);

}  // namespace hyper::ctl
