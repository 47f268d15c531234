#include "hyperd/api.h"

#include <httplib.h>
#include <sodium.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

#include "base/fd.h"
#include "base/names.h"
#include "base/text_escape.h"
#include "hyperd/http_server.h"
#include "hyperd/ui_assets.h"
#include "hyperd/webhook_auth.h"
#include "providers/build/build_events.h"
#include "store/sealing.h"

namespace hyper::controller {

namespace {

void sendJson(httplib::Response& res, const nlohmann::json& body, int status = 200) {
  res.status = status;
  res.set_content(body.dump(2) + "\n", "application/json");
}

void sendError(httplib::Response& res, int status, const std::string& message) {
  sendJson(res, {{"error", message}}, status);
}

int64_t queryInt(const httplib::Request& req, const char* name, int64_t fallback, int64_t lo,
                 int64_t hi) {
  if (!req.has_param(name)) {
    return fallback;
  }
  const std::string v = req.get_param_value(name);
  char* end = nullptr;
  long long n = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0') {
    return fallback;
  }
  return std::clamp<int64_t>(n, lo, hi);
}

std::string sseFrame(const Event& e) {
  return "id: " + std::to_string(e.id) + "\nevent: " + e.type + "\ndata: " + e.toJson().dump() +
         "\n\n";
}

}  // namespace

// The last `maxBytes` of `path` (a log being written): from the start of the first whole line in
// them when the file is longer, so no line is shown cut. A regular file only (no FIFO waited on).
Result<std::string> readFileTail(const std::string& path, size_t maxBytes) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (!fd.valid()) {
    return Status::error("read " + path + " <- " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return Status::error("read " + path + ": not a regular file");
  }
  const off_t size = st.st_size;
  // One byte before the part kept, to see whether it starts a line.
  const off_t start =
      size > static_cast<off_t>(maxBytes) ? size - static_cast<off_t>(maxBytes) - 1 : 0;
  std::string out;
  out.resize(static_cast<size_t>(size - start));
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n =
        ::pread(fd.get(), out.data() + got, out.size() - got, start + static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return Status::error("read " + path + " <- " + std::strerror(errno));
    }
    if (n == 0) {
      break;  // it shrank
    }
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  if (start > 0) {
    size_t newline = out.find('\n');
    out.erase(0, newline == std::string::npos ? out.size() : newline + 1);
  }
  return out;
}

bool tokenMatches(const std::string& expected, const std::string& header) {
  static const std::string kPrefix = "Bearer ";
  if (expected.empty() || header.size() != kPrefix.size() + expected.size() ||
      header.compare(0, kPrefix.size(), kPrefix) != 0) {
    return false;
  }
  return sodium_memcmp(header.data() + kPrefix.size(), expected.data(), expected.size()) == 0;
}

ApiServer::ApiServer(Controller& controller, EventLog& events, Metrics& metrics, ApiOptions options)
    : controller_(controller),
      events_(events),
      metrics_(metrics),
      options_(std::move(options)),
      server_(std::make_unique<HttpServer>(options_.http)) {}

ApiServer::~ApiServer() { stop(); }

std::string ApiServer::url() const {
  return "http://" + options_.host + ":" + std::to_string(port_);
}

Status ApiServer::start() {
  routes();
  if (options_.port == 0) {
    port_ = server_->bind_to_any_port(options_.host);
    if (port_ <= 0) {
      return Status::error("api: cannot bind " + options_.host + " (any port)");
    }
  } else {
    if (!server_->bind_to_port(options_.host, options_.port)) {
      return Status::error("api: cannot bind " + options_.host + ":" +
                           std::to_string(options_.port) + " (in use, or not an address here)");
    }
    port_ = options_.port;
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  return Status::ok();
}

void ApiServer::stop() {
  if (server_) {
    server_->stop();
  }
  if (thread_.joinable()) {
    thread_.join();
  }
}

void ApiServer::refuse(const httplib::Request& req, httplib::Response& res, int status,
                       const std::string& message) {
  sendError(res, status, message);
  // The body, if any, is not read: the connection cannot carry another request.
  res.set_header("Connection", "close");
  HttpServer::closeAfterResponse();
  countRefusal(req, res);
}

void ApiServer::countRefusal(const httplib::Request& req, const httplib::Response& res) {
  metrics_
      .counter("hyper_api_refused_total", "API requests refused before their body was read",
               {{"code", std::to_string(res.status)}})
      .inc();
  spdlog::warn("api: {} {} from {} refused before its body ({})", req.method, req.path,
               req.remote_addr, res.status);
}

bool ApiServer::admit(const httplib::Request& req, httplib::Response& res) {
  const bool webhook = req.path == "/v1/hooks/git";
  // Bearer token on /v1/* except the webhook (which has its own signature); the viewer token
  // reads (GET) and does nothing else.
  if (req.path.rfind("/v1/", 0) == 0 && !webhook &&
      !tokenMatches(options_.token, req.get_header_value("Authorization"))) {
    const bool viewer = !options_.viewerToken.empty() &&
                        tokenMatches(options_.viewerToken, req.get_header_value("Authorization"));
    if (viewer && req.method != "GET") {
      refuse(req, res, 403,
             "the viewer token only reads: " + req.method + " " + req.path +
                 " needs the API token (<state-dir>/hyperd.token)");
      return false;
    }
    if (!viewer) {
      res.set_header("WWW-Authenticate", "Bearer");
      refuse(req, res, 401, "missing or wrong bearer token (hyperctl reads it from the state dir)");
      return false;
    }
  }
  // The webhook's body is read only for a request that can authenticate: a GitHub signature
  // (checked over the body by the handler) or the right GitLab token.
  if (webhook) {
    bool github = !options_.githubSecret.empty() && req.has_header("X-Hub-Signature-256");
    bool gitlab = !github && !options_.gitlabToken.empty() && req.has_header("X-Gitlab-Token") &&
                  verifyGitlabToken(options_.gitlabToken, req.get_header_value("X-Gitlab-Token"));
    if (!github && !gitlab) {
      metrics_.counter("hyper_webhook_rejected_total", "push webhooks refused (bad signature)")
          .inc();
      refuse(req, res, 401,
             options_.githubSecret.empty() && options_.gitlabToken.empty()
                 ? "no webhook secret is configured"
                 : "missing or bad signature");
      return false;
    }
  }
  auto cap = bodyMax_.find(req.path);
  if (!server_->admitBody(req, res, cap == bodyMax_.end() ? options_.otherBodyMax : cap->second)) {
    countRefusal(req, res);
    return false;
  }
  return true;
}

void ApiServer::setBodyMax(const std::string& path, size_t bytes) { bodyMax_[path] = bytes; }

void ApiServer::routes() {
  auto& s = *server_;
  // Second line only: admit() refuses a body over its route's cap before it is read.
  s.set_payload_max_length(
      std::max({options_.webhookBodyMax, options_.planBodyMax, options_.otherBodyMax}));
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    return admit(req, res) ? httplib::Server::HandlerResponse::Unhandled
                           : httplib::Server::HandlerResponse::Handled;
  });
  // A client that asks before sending its body gets the same answer before sending it.
  s.set_expect_100_continue_handler([this](const httplib::Request& req, httplib::Response& res) {
    return admit(req, res) ? 100 : res.status;
  });
  readRoutes();
  previewRoute();
  eventsRoute();
  buildEventsRoute();
  actionRoutes();
  secretRoutes();
  webhookRoute();
}

void ApiServer::secretRoutes() {
  auto& s = *server_;
  auto ring = [this](httplib::Response& res) -> std::optional<store::KeyRing> {
    if (options_.stateDir.empty()) {
      sendError(res, 503, "this hyperd has no state directory for sealing keys");
      return std::nullopt;
    }
    auto loaded = store::KeyRing::loadOrCreate(options_.stateDir);
    if (!loaded.isOk()) {
      sendError(res, 500, loaded.status().message());
      return std::nullopt;
    }
    return std::move(*loaded);
  };
  // {"active": ID, "keys": [{"id", "publicKey": "x25519:..."}]}: what `hyperctl secret seal
  // --server` seals to.
  s.Get("/v1/keys", [this, ring](const httplib::Request&, httplib::Response& res) {
    auto keys = ring(res);
    if (!keys) {
      return;
    }
    nlohmann::json list = nlohmann::json::array();
    for (const auto& k : keys->publicKeys()) {
      list.push_back({{"id", k.id}, {"publicKey", k.text()}});
    }
    sendJson(res, {{"active", keys->active().id}, {"keys", list}});
  });
  // {"values": [{"name": SECRET, "key": KEY, "sealed": "hyper:v1:..."}]} -> the same list with
  // "sealed" sealed again to the active key (and "from", "to": the key ids). Each value opens
  // only for the Secret name and key it was sealed for: the scope it is sealed to again is the
  // one its authentication proved. All or nothing: one that does not open is a 422 naming it.
  // An audit event says how many and which (names, never values).
  setBodyMax("/v1/secrets/reseal", options_.planBodyMax);
  s.Post("/v1/secrets/reseal", [this, ring](const httplib::Request& req, httplib::Response& res) {
    constexpr size_t kMaxValues = 4096;
    nlohmann::json body = nlohmann::json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    if (!body.is_object() || !body.contains("values") || !body["values"].is_array() ||
        body["values"].size() > kMaxValues) {
      sendError(res, 400,
                "expected a JSON object {\"values\": [{\"name\": SECRET, \"key\": KEY, "
                "\"sealed\": \"hyper:v1:...\"}]} with at most " +
                    std::to_string(kMaxValues) + " values");
      return;
    }
    auto keys = ring(res);
    if (!keys) {
      return;
    }
    nlohmann::json out = nlohmann::json::array();
    std::vector<std::string> names;
    for (size_t i = 0; i < body["values"].size(); ++i) {
      const nlohmann::json& v = body["values"][i];
      const std::string where = "values[" + std::to_string(i) + "]";
      if (!v.is_object() || !v.contains("name") || !v["name"].is_string() || !v.contains("key") ||
          !v["key"].is_string() || !v.contains("sealed") || !v["sealed"].is_string()) {
        sendError(res, 400, where + ": expected {\"name\", \"key\", \"sealed\"} strings");
        return;
      }
      const store::SealScope scope{"Secret", v["name"].get<std::string>(),
                                   v["key"].get<std::string>()};
      const std::string text = v["sealed"].get<std::string>();
      auto parsed = store::parseSealed(text);
      auto resealed = keys->reseal(text, scope);
      if (!parsed.isOk() || !resealed.isOk()) {
        sendError(res, 422,
                  where + " (" + escapeControl(scope.text().substr(0, 200)) +
                      "): " + (parsed.isOk() ? resealed.status() : parsed.status()).message() +
                      "; nothing was resealed");
        return;
      }
      out.push_back({{"name", scope.name},
                     {"key", scope.key},
                     {"sealed", *resealed},
                     {"from", parsed->keyId},
                     {"to", keys->active().id}});
      names.push_back(scope.name + "/" + scope.key);
    }
    Event e;
    e.type = "secrets-resealed";
    e.level = "info";
    e.message = std::to_string(names.size()) + " sealed value(s) sealed again to key " +
                keys->active().id + " for " + req.remote_addr;
    e.details = {{"values", names}, {"key", keys->active().id}};
    if (auto logged = events_.append(std::move(e)); !logged.isOk()) {
      spdlog::warn("api: reseal audit event not recorded: {}", logged.status().message());
    }
    sendJson(res, {{"values", out}});
  });
}

void ApiServer::readRoutes() {
  auto& s = *server_;
  s.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  s.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    bool ready = controller_.ready();
    res.status = ready ? 200 : 503;
    res.set_content(ready ? "ready\n" : "not ready: no revision applied yet\n", "text/plain");
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.render(), "text/plain; version=0.0.4");
  });

  // The status page: static files from the binary, no token (the page asks for one and sends it
  // with each request; it is never in a URL). Nothing but this origin's files may run in it.
  auto asset = [](const char* name, const char* type) {
    return [name, type](const httplib::Request&, httplib::Response& res) {
      auto it = uiAssets().find(name);
      if (it == uiAssets().end()) {
        sendError(res, 404, std::string("no ") + name + " in this build");
        return;
      }
      res.set_header("Content-Security-Policy",
                     "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                     "connect-src 'self'; base-uri 'none'; form-action 'none'; "
                     "frame-ancestors 'none'");
      res.set_header("X-Content-Type-Options", "nosniff");
      res.set_header("Referrer-Policy", "no-referrer");
      res.set_header("Cache-Control", "no-store");
      res.set_content(std::string(it->second), type);
    };
  };
  s.Get("/", asset("index.html", "text/html; charset=utf-8"));
  s.Get("/ui/app.js", asset("app.js", "text/javascript; charset=utf-8"));
  s.Get("/ui/style.css", asset("style.css", "text/css; charset=utf-8"));

  s.Get("/v1/status", [this](const httplib::Request&, httplib::Response& res) {
    sendJson(res, controller_.statusJson());
  });
  s.Get("/v1/objects", [this](const httplib::Request&, httplib::Response& res) {
    sendJson(res, controller_.objectsJson());
  });
  s.Get("/v1/drift", [this](const httplib::Request&, httplib::Response& res) {
    sendJson(res, controller_.driftJson());
  });
  s.Get("/v1/plan", [this](const httplib::Request&, httplib::Response& res) {
    sendJson(res, controller_.lastPlanJson());
  });
  // The end of an object's log: a VM's console, a build's log. Bounded: at most `bytes` (64 KiB
  // by default, 1 MiB at most) from the end of the file, which is the guest's or a build's
  // output: served as text, never interpreted.
  s.Get(R"(/v1/logs/([A-Za-z][A-Za-z0-9]{0,62})/([a-z0-9][-a-z0-9]{0,252}))",
        [this](const httplib::Request& req, httplib::Response& res) {
          const std::string kind = req.matches[1];
          const std::string name = req.matches[2];
          std::optional<LogFiles> files = options_.logs ? options_.logs(kind, name) : std::nullopt;
          if (!files || files->files.empty()) {
            sendError(res, 404, "kind " + kind + " keeps no logs");
            return;
          }
          const int64_t most = queryInt(req, "bytes", 64 << 10, 1, 1 << 20);
          auto tail = readFileTail(files->files.back(), static_cast<size_t>(most));
          if (!tail.isOk()) {
            sendError(res, 404,
                      "no log of " + kind + "/" + name + " (" + files->files.back() + ")" +
                          (files->whenMissing.empty() ? "" : ": " + files->whenMissing));
            return;
          }
          res.set_header("Cache-Control", "no-store");
          res.set_content(*tail, "text/plain; charset=utf-8");
        });
}

void ApiServer::previewRoute() {
  auto& s = *server_;
  // A preview plan for manifests the client sends (`hyperctl diff` against this hyperd):
  // {"files": [{"path", "content"}], "sources": [sourceReadToJson(...)], "prune": bool,
  // "color": bool}; "sources" are the file sources the manifests name, as the client read them
  // (path: joinSourcePath of the manifest's directory and the source).
  setBodyMax("/v1/plan", options_.planBodyMax);
  s.Post("/v1/plan", [this](const httplib::Request& req, httplib::Response& res) {
    nlohmann::json body = nlohmann::json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    if (!body.is_object() || !body.contains("files") || !body["files"].is_array()) {
      sendError(res, 400,
                "expected a JSON object {\"files\": [{\"path\": ..., \"content\": ...}], "
                "\"prune\": bool}");
      return;
    }
    std::vector<SourceFile> files;
    for (const auto& f : body["files"]) {
      if (!f.is_object() || !f.contains("path") || !f["path"].is_string() ||
          !f.contains("content") || !f["content"].is_string()) {
        sendError(res, 400,
                  "files[" + std::to_string(files.size()) +
                      "]: expected {\"path\": string, \"content\": string}");
        return;
      }
      files.push_back({f["path"].get<std::string>(), f["content"].get<std::string>()});
    }
    std::map<std::string, SourceTree::File> sources;
    const nlohmann::json& sent = body.contains("sources") ? body["sources"] : nlohmann::json();
    if (!sent.is_null() && !sent.is_array()) {
      sendError(res, 400, "sources: expected a list of what the client read");
      return;
    }
    for (size_t i = 0; sent.is_array() && i < sent.size(); ++i) {
      auto read = sourceReadFromJson(sent[i]);
      if (!read.isOk()) {
        sendError(res, 400, "sources[" + std::to_string(i) + "]: " + read.status().message());
        return;
      }
      sources.insert(std::move(*read));
    }
    bool prune = body.value("prune", false);
    bool color = body.value("color", false);
    MemoryTree tree(std::move(sources));
    nlohmann::json answer = controller_.preview(files, prune, color, &tree);
    spdlog::info("plan preview for {} ({} files): {}", req.remote_addr, files.size(),
                 answer.value("ok", false)
                     ? std::to_string(answer["plan"]["actions"].size()) + " actions"
                     : std::to_string(answer.value("errors", 0)) + " errors");
    sendJson(res, answer);
  });
}

void ApiServer::eventsRoute() {
  auto& s = *server_;
  s.Get("/v1/events", [this](const httplib::Request& req, httplib::Response& res) {
    int64_t limit = queryInt(req, "limit", 100, 1, 10000);
    bool follow = req.get_header_value("Accept").find("text/event-stream") != std::string::npos;
    int64_t after = queryInt(req, "after", -1, -1, INT64_MAX);
    if (!follow) {
      auto events = after >= 0 ? events_.since(after, static_cast<size_t>(limit))
                               : events_.latest(static_cast<size_t>(limit));
      if (!events.isOk()) {
        sendError(res, 500, events.status().message());
        return;
      }
      nlohmann::json out = nlohmann::json::array();
      for (const auto& e : *events) {
        out.push_back(e.toJson());
      }
      sendJson(res, out);
      return;
    }
    // Server-Sent Events: the last `limit` events (or those after `after`), then live ones. A
    // follower holds its thread: over the cap it is refused, so that followers never take the
    // threads the webhook and /healthz need.
    auto slot = server_->holdLongRequest();
    if (!slot) {
      res.set_header("Retry-After", "10");
      sendError(res, 503,
                "too many event streams and waiting requests (at most " +
                    std::to_string(options_.http.longRequests) +
                    "); retry later, or read GET /v1/events without following");
      return;
    }
    auto cursor = std::make_shared<int64_t>(after);
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream", [this, cursor, limit, slot](size_t, httplib::DataSink& sink) {
          auto batch = *cursor >= 0 ? events_.since(*cursor, 1000)
                                    : events_.latest(static_cast<size_t>(limit));
          if (!batch.isOk()) {
            return false;
          }
          if (*cursor < 0) {
            *cursor = 0;
          }
          for (const auto& e : *batch) {
            std::string frame = sseFrame(e);
            if (!sink.write(frame.data(), frame.size())) {
              return false;
            }
            *cursor = e.id;
          }
          if (batch->empty()) {
            // Nothing new: wait, then a comment line keeps the connection (and tells us when
            // the client has gone).
            if (events_.waitNewer(*cursor, std::chrono::seconds(5)) <= *cursor) {
              static const std::string kKeepAlive = ": keep-alive\n\n";
              if (!sink.is_writable() || !sink.write(kKeepAlive.data(), kKeepAlive.size())) {
                return false;
              }
            }
          }
          return server_->is_running();
        });
  });
}

void ApiServer::buildEventsRoute() {
  // A Build's log as typed Server-Sent Events (providers/build/build_events.h): what its log
  // holds now, and with ?follow=1 what comes until the build ends, with a heartbeat event every
  // 30 s of silence. ?after=N resumes after line N. A new build of the name (a new log file)
  // starts again from its first line with a status event {"state": "restarted"}.
  server_->Get(R"(/v1/builds/([^/]+)/events)", [this](const httplib::Request& req,
                                                      httplib::Response& res) {
    const std::string name = req.matches[1];
    if (std::string why = checkDnsLabel(name); !why.empty()) {
      sendError(res, 400, "\"" + escapeControl(name) + "\" is not a Build name: " + why);
      return;
    }
    if (options_.stateDir.empty()) {
      sendError(res, 404, "this hyperd has no state directory, so no build logs");
      return;
    }
    const std::string path = options_.stateDir + "/builds/" + name + ".log";
    if (::access(path.c_str(), F_OK) != 0) {
      sendError(res, 404, "no log for Build " + name + " (it has not been built here)");
      return;
    }
    const bool follow = queryInt(req, "follow", 0, 0, 1) == 1;
    auto slot = server_->holdLongRequest();
    if (!slot) {
      res.set_header("Retry-After", "10");
      sendError(res, 503,
                "too many event streams and waiting requests (at most " +
                    std::to_string(options_.http.longRequests) + "); retry later");
      return;
    }
    struct Cursor {
      int64_t line = 0;     // lines sent
      int64_t skip = 0;     // ?after: lines not to send again
      uint64_t offset = 0;  // bytes of the file read
      ino_t inode = 0;
      std::string partial;  // a line not finished yet
      bool done = false;
      bool final = false;  // the last line read ends a build
      std::chrono::steady_clock::time_point lastSent = std::chrono::steady_clock::now();
    };
    auto cursor = std::make_shared<Cursor>();
    cursor->skip = queryInt(req, "after", 0, 0, INT64_MAX);
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider("text/event-stream", [this, path, follow, cursor, slot](
                                                              size_t, httplib::DataSink& sink) {
      auto send = [&](const nlohmann::json& e) {
        std::string frame =
            "event: " + e.value("type", "log") +
            "\ndata: " + e.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n\n";
        cursor->lastSent = std::chrono::steady_clock::now();
        return sink.write(frame.data(), frame.size());
      };
      if (cursor->done) {
        sink.done();
        return true;
      }
      struct stat st {};
      const bool exists = ::stat(path.c_str(), &st) == 0;
      if (exists && cursor->inode != 0 &&
          (st.st_ino != cursor->inode || static_cast<uint64_t>(st.st_size) < cursor->offset)) {
        // A new build of this name started its log afresh.
        *cursor = Cursor{};
        if (!send({{"type", "status"}, {"state", "restarted"}, {"line", 0}})) {
          return false;
        }
      }
      if (exists) {
        cursor->inode = st.st_ino;
        Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        std::string chunk(64 * 1024, '\0');
        ssize_t n = fd.valid() ? ::pread(fd.get(), chunk.data(), chunk.size(),
                                         static_cast<off_t>(cursor->offset))
                               : -1;
        if (n > 0) {
          cursor->offset += static_cast<uint64_t>(n);
          cursor->partial.append(chunk.data(), static_cast<size_t>(n));
          size_t start = 0, nl;
          while ((nl = cursor->partial.find('\n', start)) != std::string::npos) {
            std::string_view line(cursor->partial.data() + start, nl - start);
            start = nl + 1;
            ++cursor->line;
            cursor->final = providers::build::isFinalBuildLine(line);
            if (cursor->line > cursor->skip &&
                !send(providers::build::buildLogEvent(line, cursor->line))) {
              return false;
            }
          }
          cursor->partial.erase(0, start);
          if (cursor->partial.size() > 64 * 1024) {
            cursor->partial.clear();  // the provider writes whole lines: never this long
          }
          if (static_cast<size_t>(n) == chunk.size()) {
            return server_->is_running();  // more to read at once
          }
        }
      }
      if (!follow || cursor->final) {
        cursor->done = true;
        sink.done();
        return true;
      }
      if (std::chrono::steady_clock::now() - cursor->lastSent >= std::chrono::seconds(30) &&
          !send({{"type", "heartbeat"}, {"line", cursor->line}})) {
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      return server_->is_running() && sink.is_writable();
    });
  });
}

void ApiServer::actionRoutes() {
  auto& s = *server_;
  s.Post("/v1/reconcile", [this](const httplib::Request& req, httplib::Response& res) {
    uint64_t ticket = controller_.trigger("api", /*fetch=*/true);
    int64_t wait = queryInt(req, "wait", 0, 0, 600);
    if (wait == 0) {
      sendJson(res, {{"accepted", true}}, 202);
      return;
    }
    // A wait holds its thread, like an event stream, and counts against the same cap.
    auto slot = server_->holdLongRequest();
    if (!slot) {
      sendJson(res,
               {{"accepted", true},
                {"error", "too many waiting requests and event streams (at most " +
                              std::to_string(options_.http.longRequests) +
                              "); the reconcile runs, but this request does not wait for it"}},
               202);
      return;
    }
    ReconcileSummary summary;
    if (!controller_.waitFor(ticket, std::chrono::seconds(wait), &summary)) {
      sendJson(
          res,
          {{"accepted", true}, {"error", "still running after " + std::to_string(wait) + " s"}},
          202);
      return;
    }
    sendJson(res, summary.toJson());
  });
  // Approves the held revision (`hyperctl approve REVISION`): {"revision": "git:<commit>"}; 409
  // when nothing or another revision is held. ?wait=N waits for the reconcile that applies it.
  s.Post("/v1/approve", [this](const httplib::Request& req, httplib::Response& res) {
    nlohmann::json body = nlohmann::json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    if (!body.is_object() || !body.contains("revision") || !body["revision"].is_string()) {
      sendError(res, 400, "expected a JSON object {\"revision\": \"git:<commit>\"}");
      return;
    }
    auto ticket = controller_.approve(body["revision"].get<std::string>());
    if (!ticket.isOk()) {
      sendError(res, 409, ticket.status().message());
      return;
    }
    spdlog::warn("revision {} approved through the API by {}", body["revision"].get<std::string>(),
                 req.remote_addr);
    int64_t wait = queryInt(req, "wait", 0, 0, 600);
    ReconcileSummary summary;
    if (wait == 0 || !controller_.waitFor(*ticket, std::chrono::seconds(wait), &summary)) {
      sendJson(res, {{"approved", true}}, 202);
      return;
    }
    nlohmann::json out = summary.toJson();
    out["approved"] = true;
    sendJson(res, out);
  });
  s.Post("/v1/suspend", [this](const httplib::Request&, httplib::Response& res) {
    controller_.setSuspended(true);
    sendJson(res, {{"suspended", true}});
  });
  s.Post("/v1/resume", [this](const httplib::Request&, httplib::Response& res) {
    controller_.setSuspended(false);
    sendJson(res, {{"suspended", false}});
  });
}

void ApiServer::webhookRoute() {
  auto& s = *server_;
  // Push webhook: GitHub (X-Hub-Signature-256) or GitLab (X-Gitlab-Token). A bad or missing
  // signature is 401 and starts nothing.
  setBodyMax("/v1/hooks/git", options_.webhookBodyMax);
  s.Post("/v1/hooks/git", [this](const httplib::Request& req, httplib::Response& res) {
    bool ok = false;
    if (!options_.githubSecret.empty() && req.has_header("X-Hub-Signature-256")) {
      ok = verifyGithubSignature(options_.githubSecret, req.body,
                                 req.get_header_value("X-Hub-Signature-256"));
    } else if (!options_.gitlabToken.empty() && req.has_header("X-Gitlab-Token")) {
      ok = verifyGitlabToken(options_.gitlabToken, req.get_header_value("X-Gitlab-Token"));
    }
    if (!ok) {
      metrics_.counter("hyper_webhook_rejected_total", "push webhooks refused (bad signature)")
          .inc();
      spdlog::warn("webhook from {} refused: missing or bad signature", req.remote_addr);
      sendError(res, 401,
                options_.githubSecret.empty() && options_.gitlabToken.empty()
                    ? "no webhook secret is configured"
                    : "missing or bad signature");
      return;
    }
    controller_.trigger("webhook", /*fetch=*/true);
    sendJson(res, {{"accepted", true}}, 202);
  });
}

}  // namespace hyper::controller
