#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "controller/client.h"
#include "controller/event_log.h"
#include "hyperd/http_limits.h"
#include "hyperd/loop.h"
#include "hyperd/metrics.h"
#include "reconciler/kind_registry.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace hyper::controller {

class HttpServer;

struct ApiOptions {
  std::string host = "127.0.0.1";
  int port = 7400;    // 0: any free port (tests)
  std::string token;  // bearer token for /v1/* (not the webhook, not health/metrics)
  // A second bearer token that reads and does nothing else: GET routes only (the status page's
  // viewers; <state-dir>/viewer.token). Empty: none.
  std::string viewerToken;
  // The log files of an object (KindRecord::logs) for GET /v1/logs/KIND/NAME; null, or nullopt
  // for a kind without logs: 404.
  std::function<std::optional<LogFiles>(const std::string& kind, const std::string& name)> logs;
  std::string githubSecret;  // X-Hub-Signature-256 key for /v1/hooks/git; empty: not accepted
  std::string gitlabToken;   // X-Gitlab-Token value; empty: not accepted
  // Request bodies, refused before they are read when over (413): the push webhook (a push
  // event is a few KiB; a bigger one is refused and the next poll finds the commit), the
  // manifests `hyperctl diff` sends to POST /v1/plan, and every other route.
  size_t webhookBodyMax = size_t{1} << 20;
  size_t planBodyMax = controller::kPlanBodyMax;
  size_t otherBodyMax = size_t{64} << 10;
  HttpLimits http;  // time, header bytes, keep-alive, threads, concurrent SSE streams and waits
  // The state directory whose sealing key ring /v1/keys and /v1/secrets/reseal use; "" = none
  // (those routes answer 503).
  std::string stateDir;
};

// hyperd's HTTP API on loopback (cpp-httplib):
//   GET  /healthz /readyz /metrics            no token
//   GET  /v1/status /v1/objects /v1/drift /v1/plan
//   GET  /v1/events?after=ID&limit=N          JSON; with Accept: text/event-stream, SSE that
//   follows POST /v1/reconcile[?wait=SECONDS]         reconcile now (fetching the source); wait for
//   it POST /v1/suspend  /v1/resume POST /v1/hooks/git                        push webhook (GitHub
//   or GitLab signature), no token
//   GET  /v1/keys                             the public sealing keys, the active one named
//   GET  /v1/logs/KIND/NAME?bytes=N           the end of an object's log (a VM's console, a
//                                             build's log), text
//   GET  /  /ui/app.js  /ui/style.css         the status page (no token: it asks for one)
//   POST /v1/secrets/reseal                   sealed values opened and sealed to the active key
// Every /v1/* route except the webhook needs `Authorization: Bearer <token>` (GET routes also
// take the viewer token). The token, the
// webhook's headers and the body's framing and size are checked before a body is read: a body
// comes with one Content-Length (no chunked body, none that runs to end of stream), uncompressed,
// and within the route's cap. Connections and streams are bounded by `ApiOptions::http`.
class ApiServer {
 public:
  ApiServer(Controller& controller, EventLog& events, Metrics& metrics, ApiOptions options);
  ~ApiServer();

  // Binds (so the port is known when this returns) and serves on a background thread.
  Status start();
  void stop();
  int port() const { return port_; }
  std::string url() const;

 private:
  // Every route, in groups: admission, then the read-only views, the plan preview, the event
  // log, the actions (reconcile, approve, suspend, resume), the push webhook.
  void routes();
  void readRoutes();
  void previewRoute();
  void eventsRoute();
  void buildEventsRoute();
  void actionRoutes();
  void secretRoutes();
  void webhookRoute();
  // The largest body a route takes (call before registering it); a route not named here takes
  // at most ApiOptions::otherBodyMax. Bigger bodies are refused (413) before they are read.
  void setBodyMax(const std::string& path, size_t bytes);
  // Before routing (and before a 100 Continue): false when the request was refused in `res`.
  bool admit(const httplib::Request& req, httplib::Response& res);
  void refuse(const httplib::Request& req, httplib::Response& res, int status,
              const std::string& message);
  void countRefusal(const httplib::Request& req, const httplib::Response& res);

  Controller& controller_;
  EventLog& events_;
  Metrics& metrics_;
  ApiOptions options_;
  std::unique_ptr<HttpServer> server_;
  std::map<std::string, size_t> bodyMax_;  // by path; set before start()
  std::thread thread_;
  int port_ = 0;
};

// Reads a bearer token and compares it in constant time.
bool tokenMatches(const std::string& expected, const std::string& authorizationHeader);

}  // namespace hyper::controller
