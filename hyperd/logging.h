#pragma once

#include <string>

#include "base/status.h"

namespace hyper::controller {

// hyperd's log lines (spdlog, to stderr, which journald keeps). Every line names the reconcile it
// belongs to (base/log_context.h), "-" outside one.
//   text: 2026-11-29T19:40:01.123+0000 info [r-6f1c…] Network/lab: created (revision git:…)
//   json: {"time":"…","level":"info","reconcileId":"r-6f1c…","msg":"Network/lab: created …"}
// one JSON object per line, for log shippers. `format` is "text" or "json"; `level` one of
// spdlog's names (trace, debug, info, warn, error, critical, off).
Status setupLogging(const std::string& format, const std::string& level);

}  // namespace hyper::controller
