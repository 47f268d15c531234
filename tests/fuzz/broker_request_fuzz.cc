// The broker's request line parser (broker/request.h) and the client's frame codec
// (broker/client_wire.h) on arbitrary bytes. Public functions only: broker/ is not changed here.
// Invariants: no crash; a request that parses re-encodes (runRequestToJson, and the client's own
// encodeRunRequest to the same bytes) to a line that parses back to the same request.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "broker/client_wire.h"
#include "broker/request.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

bool sameRun(const hyper::broker::RunRequest& a, const hyper::broker::RunRequest& b) {
  return a.requestId == b.requestId && a.command == b.command && a.args == b.args &&
         a.cwd == b.cwd && a.timeoutSec == b.timeoutSec && a.env == b.env;
}

bool validUtf8(const std::string& s) {
  try {
    (void)nlohmann::json(s).dump();
    return true;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

bool allValidUtf8(const hyper::broker::RunRequest& r) {
  bool ok = validUtf8(r.requestId) && validUtf8(r.command) && validUtf8(r.cwd);
  for (const auto& a : r.args) {
    ok = ok && validUtf8(a);
  }
  for (const auto& [k, v] : r.env) {
    ok = ok && validUtf8(k) && validUtf8(v);
  }
  return ok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string line(reinterpret_cast<const char*>(data), size);

  auto request = hyper::broker::parseRequest(line);
  if (request.isOk() && request->run) {
    const hyper::broker::RunRequest& run = *request->run;
    std::string encoded = hyper::broker::encodeRunRequest(run);
    std::string reference = hyper::broker::runRequestToJson(run).dump(
        -1, ' ', false, nlohmann::json::error_handler_t::replace);
    FUZZ_CHECK(encoded == reference);
    if (allValidUtf8(run)) {
      auto back = hyper::broker::parseRequest(encoded);
      FUZZ_CHECK(back.isOk());
      FUZZ_CHECK(back->run.has_value());
      FUZZ_CHECK(sameRun(*back->run, run));
    }
  } else if (!request.isOk()) {
    (void)request.status().message();
  }

  auto frame = hyper::broker::parseClientFrame(std::string_view(line));
  if (frame.isOk()) {
    auto bytes = hyper::broker::clientFrameData(*frame);
    (void)bytes;
  }
  return 0;
}
