#pragma once

#include <functional>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace hyper::controller {

// Where a running hyperd leaves its address and token, so hyperctl finds it through --state-dir.
constexpr const char* kEndpointFile = "hyperd.json";  // {"url": "...", "pid": N}
constexpr const char* kTokenFile = "hyperd.token";    // 0600, one line
// The largest /v1/plan request hyperd reads (its manifests and base64 file sources): a
// `hyperctl diff` past it plans locally instead of being refused.
constexpr size_t kPlanBodyMax = size_t{32} << 20;

// Writes both files (token 0600, created before it is written; endpoint written atomically).
Status writeEndpoint(const std::string& stateDir, const std::string& url, const std::string& token);
void removeEndpoint(const std::string& stateDir);
std::string newToken();  // 32 random bytes, hex

struct Endpoint {
  std::string url;  // http://127.0.0.1:PORT
  std::string token;
};

// --server URL (token from --token-file, or the state dir's) wins; otherwise the state dir's
// endpoint file when its pid is alive. nullopt: no hyperd is running for this state dir.
Result<std::optional<Endpoint>> discoverEndpoint(const std::string& stateDir,
                                                 const std::string& server,
                                                 const std::string& tokenFile);

// A small client of hyperd's API. Errors say what failed and where ("GET http://.../v1/status:
// connection refused"); a non-2xx answer carries the server's error message.
class ApiClient {
 public:
  explicit ApiClient(Endpoint endpoint) : endpoint_(std::move(endpoint)) {}

  Result<nlohmann::json> get(const std::string& path) const;
  Result<nlohmann::json> post(const std::string& path, int timeoutSeconds = 10,
                              const nlohmann::json& body = nullptr) const;
  // Follows /v1/events as Server-Sent Events; `onEvent` returns false to stop.
  Status follow(int64_t after, size_t limit,
                const std::function<bool(const nlohmann::json&)>& onEvent) const;
  // Any Server-Sent Events stream of hyperd's (`path` with its query), each frame's data as JSON.
  Status followStream(const std::string& path,
                      const std::function<bool(const nlohmann::json&)>& onEvent) const;

 private:
  Endpoint endpoint_;
};

}  // namespace hyper::controller
