#pragma once

#include <memory>
#include <string>
#include <thread>

#include "controller/event_log.h"
#include "controller/loop.h"
#include "controller/metrics.h"

namespace httplib {
class Server;
}

namespace hyper::controller {

struct ApiOptions {
  std::string host = "127.0.0.1";
  int port = 7400;           // 0: any free port (tests)
  std::string token;         // bearer token for /v1/* (not the webhook, not health/metrics)
  std::string githubSecret;  // X-Hub-Signature-256 key for /v1/hooks/git; empty: not accepted
  std::string gitlabToken;   // X-Gitlab-Token value; empty: not accepted
};

// hyperd's HTTP API on loopback (cpp-httplib):
//   GET  /healthz /readyz /metrics            no token
//   GET  /v1/status /v1/objects /v1/drift /v1/plan
//   GET  /v1/events?after=ID&limit=N          JSON; with Accept: text/event-stream, SSE that
//   follows POST /v1/reconcile[?wait=SECONDS]         reconcile now (fetching the source); wait for
//   it POST /v1/suspend  /v1/resume POST /v1/hooks/git                        push webhook (GitHub
//   or GitLab signature), no token
// Every /v1/* route except the webhook needs `Authorization: Bearer <token>`.
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
  void routes();

  Controller& controller_;
  EventLog& events_;
  Metrics& metrics_;
  ApiOptions options_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

// Reads a bearer token and compares it in constant time.
bool tokenMatches(const std::string& expected, const std::string& authorizationHeader);

}  // namespace hyper::controller
