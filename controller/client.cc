#include "controller/client.h"

#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <sodium.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/file.h"

namespace hyper::controller {

namespace {

// Endpoint and token files are small; a symlink planted in their place is refused, not followed
// (O_NOFOLLOW), and no descriptor leaks to a child (O_CLOEXEC).
Result<std::string> readSmallFile(const std::string& path) {
  return readFile(path, 64 * 1024, Symlinks::Refuse);
}

// Creates `path` afresh (a file or symlink there is removed first; O_EXCL|O_NOFOLLOW then never
// writes through a link planted in between), with `mode` and `text`.
Status writeNewFile(const std::string& path, const std::string& text, mode_t mode) {
  unlink(path.c_str());
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) {
    return Status::error("write " + path + ": " + strerror(errno));
  }
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  if (!ok) {
    return Status::error("write " + path + ": short write");
  }
  return Status::ok();
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) {
    s.pop_back();
  }
  return s;
}

// "http://127.0.0.1:7400" -> client; only plain http on loopback is expected.
std::unique_ptr<httplib::Client> makeClient(const std::string& url, int timeoutSeconds) {
  auto client = std::make_unique<httplib::Client>(url);
  client->set_connection_timeout(2, 0);
  client->set_read_timeout(timeoutSeconds, 0);
  return client;
}

// httplib's error names ("Connection") are terse; say what they mean.
std::string errorText(httplib::Error e) {
  switch (e) {
    case httplib::Error::Connection:
      return "cannot connect (is hyperd running?)";
    case httplib::Error::ConnectionTimeout:
      return "connection timed out";
    case httplib::Error::Read:
      return "connection closed while reading the answer (timeout or hyperd stopped)";
    case httplib::Error::Write:
      return "connection closed while sending the request";
    default:
      return "request failed (" + httplib::to_string(e) + ")";
  }
}

// A writer holds the state dir's lock (see reconciler/state_lock.h) while hyperd runs; an endpoint
// file without it was left by a hyperd that was killed.
bool lockHeld(const std::string& stateDir) {
  int fd = open((stateDir + "/lock").c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    return false;
  }
  bool held = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  close(fd);
  return held;
}

Result<nlohmann::json> decode(const std::string& what, const httplib::Result& r) {
  if (!r) {
    return Status::error(what + ": " + errorText(r.error()));
  }
  nlohmann::json body = nlohmann::json::parse(r->body, nullptr, /*allow_exceptions=*/false);
  if (r->status < 200 || r->status >= 300) {
    std::string message = body.is_object() && body.contains("error") && body["error"].is_string()
                              ? body["error"].get<std::string>()
                              : trim(r->body);
    return Status::error(what + ": HTTP " + std::to_string(r->status) + ": " + message);
  }
  if (body.is_discarded()) {
    return Status::error(what + ": the answer is not JSON");
  }
  return body;
}

}  // namespace

std::string newToken() {
  unsigned char bytes[32];
  randombytes_buf(bytes, sizeof bytes);
  char hex[sizeof bytes * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, bytes, sizeof bytes);
  return hex;
}

Status writeEndpoint(const std::string& stateDir, const std::string& url,
                     const std::string& token) {
  const std::string tokenPath = stateDir + "/" + kTokenFile;
  // Created 0600 before any byte of the token is written; an existing file is replaced.
  HYPER_RETURN_IF_ERROR(writeNewFile(tokenPath, token + "\n", 0600));
  const std::string endpointPath = stateDir + "/" + kEndpointFile;
  const std::string tmp = endpointPath + ".tmp";
  HYPER_RETURN_IF_ERROR(
      // Readable by others (umask permitting): it holds no secret, and a user with a token
      // file of their own finds hyperd through it.
      writeNewFile(tmp, nlohmann::json{{"url", url}, {"pid", getpid()}}.dump() + "\n", 0644));
  if (rename(tmp.c_str(), endpointPath.c_str()) != 0) {
    return Status::error("rename " + tmp + ": " + strerror(errno));
  }
  return Status::ok();
}

void removeEndpoint(const std::string& stateDir) {
  unlink((stateDir + "/" + kEndpointFile).c_str());
  unlink((stateDir + "/" + kTokenFile).c_str());
}

Result<std::optional<Endpoint>> discoverEndpoint(const std::string& stateDir,
                                                 const std::string& server,
                                                 const std::string& tokenFile) {
  Endpoint endpoint;
  std::string tokenPath = tokenFile.empty() ? stateDir + "/" + kTokenFile : tokenFile;
  if (!server.empty()) {
    endpoint.url = server;
  } else {
    const std::string endpointPath = stateDir + "/" + kEndpointFile;
    if (access(endpointPath.c_str(), F_OK) != 0) {
      return std::optional<Endpoint>();
    }
    HYPER_ASSIGN_OR_RETURN(std::string text, readSmallFile(endpointPath));
    auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("url") || !j["url"].is_string() || !j.contains("pid") ||
        !j["pid"].is_number_integer()) {
      return Status::error(endpointPath + ": not a hyperd endpoint file (expected url and pid)");
    }
    pid_t pid = j["pid"].get<pid_t>();
    if ((kill(pid, 0) != 0 && errno == ESRCH) || !lockHeld(stateDir)) {
      return std::optional<Endpoint>();  // left behind by a hyperd that died
    }
    endpoint.url = j["url"].get<std::string>();
  }
  auto token = readSmallFile(tokenPath);
  if (!token.isOk()) {
    return token.status().withContext("hyperd token (run as root, or pass --token-file)");
  }
  endpoint.token = trim(*token);
  return std::optional<Endpoint>(std::move(endpoint));
}

Result<nlohmann::json> ApiClient::get(const std::string& path) const {
  auto client = makeClient(endpoint_.url, 10);
  auto r = client->Get(path, {{"Authorization", "Bearer " + endpoint_.token}});
  return decode("GET " + endpoint_.url + path, r);
}

Result<nlohmann::json> ApiClient::post(const std::string& path, int timeoutSeconds,
                                       const nlohmann::json& body) const {
  auto client = makeClient(endpoint_.url, timeoutSeconds);
  auto r = client->Post(path, {{"Authorization", "Bearer " + endpoint_.token}},
                        body.is_null() ? "" : body.dump(), "application/json");
  return decode("POST " + endpoint_.url + path, r);
}

Status ApiClient::follow(int64_t after, size_t limit,
                         const std::function<bool(const nlohmann::json&)>& onEvent) const {
  std::string path = "/v1/events?limit=" + std::to_string(limit);
  if (after >= 0) {
    path += "&after=" + std::to_string(after);
  }
  return followStream(path, onEvent);
}

Status ApiClient::followStream(const std::string& path,
                               const std::function<bool(const nlohmann::json&)>& onEvent) const {
  auto client = makeClient(endpoint_.url, 3600);
  // One event is a few KiB at most; a server that sends more without a frame's end is not one.
  constexpr size_t kMaxFrame = size_t{1} << 20;
  std::string buffer;
  bool tooLong = false;
  bool stopped = false;
  std::string failure;
  std::string failureBody;  // a refusal's JSON body ({"error": ...}), read up to 64 KiB
  auto r = client->Get(
      path, {{"Authorization", "Bearer " + endpoint_.token}, {"Accept", "text/event-stream"}},
      [&](const httplib::Response& res) {
        if (res.status != 200) {
          failure = "HTTP " + std::to_string(res.status);
        }
        return true;
      },
      [&](const char* data, size_t n) {
        if (!failure.empty()) {
          failureBody.append(
              data, std::min(n, size_t{65536} - std::min(failureBody.size(), size_t{65536})));
          return failureBody.size() < 65536;
        }
        buffer.append(data, n);
        if (buffer.size() > kMaxFrame && buffer.find("\n\n") == std::string::npos) {
          tooLong = true;
          return false;
        }
        size_t end;
        while ((end = buffer.find("\n\n")) != std::string::npos) {
          std::string frame = buffer.substr(0, end);
          buffer.erase(0, end + 2);
          std::istringstream lines(frame);
          std::string line;
          while (std::getline(lines, line)) {
            if (line.rfind("data: ", 0) == 0) {
              auto j = nlohmann::json::parse(line.substr(6), nullptr, false);
              if (!j.is_discarded() && !onEvent(j)) {
                stopped = true;
                return false;
              }
            }
          }
        }
        return true;
      });
  if (stopped) {
    return Status::ok();
  }
  if (tooLong) {
    return Status::error("GET " + endpoint_.url + path + ": an event longer than " +
                         std::to_string(kMaxFrame) + " bytes");
  }
  if (!failure.empty()) {
    nlohmann::json body = nlohmann::json::parse(failureBody, nullptr, /*allow_exceptions=*/false);
    if (body.is_object() && body.contains("error") && body["error"].is_string()) {
      failure += ": " + body["error"].get<std::string>();
    }
    return Status::error("GET " + endpoint_.url + path + ": " + failure);
  }
  if (!r) {
    return Status::error("GET " + endpoint_.url + path + ": " + errorText(r.error()));
  }
  return Status::ok();
}

}  // namespace hyper::controller
