#include "tools/pageshot/cdp.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include "base/base64.h"
#include "base/file.h"

namespace hyper::cdp {

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

bool executableOnPath(const std::string& name) {
  for (const char* dir : {"/usr/bin", "/usr/local/bin", "/bin"}) {
    if (::access((std::string(dir) + "/" + name).c_str(), X_OK) == 0) {
      return true;
    }
  }
  return false;
}

std::string quotedJs(const std::string& text) { return json(text).dump(); }

}  // namespace

Result<std::unique_ptr<Browser>> Browser::launch(const std::vector<std::string>& prefix,
                                                 const std::string& profileDir, int width,
                                                 int height) {
  if (!executableOnPath("chromium")) {
    return Status::error("chromium is not installed (apt-get install chromium)");
  }
  std::error_code ec;
  std::filesystem::create_directories(profileDir, ec);  // its log goes there
  int toChild[2];
  int fromChild[2];
  if (::pipe2(toChild, O_CLOEXEC) != 0 || ::pipe2(fromChild, O_CLOEXEC) != 0) {
    return Status::error(std::string("pipe <- ") + std::strerror(errno));
  }
  std::vector<std::string> argv = prefix;
  argv.insert(
      argv.end(),
      {"chromium", "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
       "--no-first-run", "--no-default-browser-check", "--disable-extensions",
       "--disable-background-networking", "--disable-component-update", "--disable-sync",
       "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars",
       "--user-data-dir=" + profileDir,
       "--window-size=" + std::to_string(width) + "," + std::to_string(height), "about:blank"});
  std::vector<char*> cargv;
  for (auto& a : argv) {
    cargv.push_back(a.data());
  }
  cargv.push_back(nullptr);
  const std::string logPath = profileDir + "/chromium.log";
  pid_t pid = ::fork();
  if (pid < 0) {
    return Status::error(std::string("fork <- ") + std::strerror(errno));
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    // Out of the way of 3 and 4 first, then onto them.
    int in = ::fcntl(toChild[0], F_DUPFD, 10);
    int out = ::fcntl(fromChild[1], F_DUPFD, 10);
    ::dup2(in, 3);
    ::dup2(out, 4);
    int log = ::open(logPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, 0);
    ::dup2(log, 1);
    ::dup2(log, 2);
    ::execvp(cargv[0], cargv.data());
    ::_exit(127);
  }
  ::close(toChild[0]);
  ::close(fromChild[1]);
  std::unique_ptr<Browser> b(new Browser());
  b->pid_ = pid;
  b->toBrowser_ = toChild[1];
  b->fromBrowser_ = fromChild[0];
  // A page of our own, attached as a flat session.
  auto target = b->call("Target.createTarget", {{"url", "about:blank"}}, true);
  if (!target.isOk()) {
    auto log = readFile(logPath, 1 << 16);
    return target.status().withContext(
        "start chromium (its log: " + (log.isOk() ? *log : log.status().message()) + ")");
  }
  auto attached = b->call("Target.attachToTarget",
                          {{"targetId", (*target)["targetId"]}, {"flatten", true}}, true);
  HYPER_RETURN_IF_ERROR(attached.status());
  b->session_ = (*attached).value("sessionId", "");
  for (const char* domain : {"Page.enable", "Runtime.enable"}) {
    HYPER_RETURN_IF_ERROR(b->call(domain, json::object()).status());
  }
  HYPER_RETURN_IF_ERROR(
      b->call("Emulation.setDeviceMetricsOverride",
              {{"width", width}, {"height", height}, {"deviceScaleFactor", 1}, {"mobile", false}})
          .status());
  return b;
}

Browser::~Browser() {
  if (toBrowser_ >= 0) {
    std::string close = json{{"id", nextId_++}, {"method", "Browser.close"}}.dump();
    close.push_back('\0');
    (void)!::write(toBrowser_, close.data(), close.size());
    ::close(toBrowser_);
  }
  if (fromBrowser_ >= 0) {
    ::close(fromBrowser_);
  }
  if (pid_ > 0) {
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (Clock::now() > deadline) {
        ::kill(-pid_, SIGKILL);
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ::kill(-pid_, SIGKILL);  // renderers and helpers left in its group
  }
}

Result<json> Browser::call(const std::string& method, const json& params, bool browserLevel,
                           std::chrono::milliseconds timeout) {
  const int64_t id = nextId_++;
  json message = {{"id", id}, {"method", method}, {"params", params}};
  if (!browserLevel && !session_.empty()) {
    message["sessionId"] = session_;
  }
  std::string bytes = message.dump();
  bytes.push_back('\0');
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(toBrowser_, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return Status::error(method + ": write to chromium <- " + std::strerror(errno));
    }
    done += static_cast<size_t>(n);
  }
  auto answer = readUntil(id, Clock::now() + timeout);
  if (!answer.isOk()) {
    return answer.status().withContext(method);
  }
  if (answer->contains("error")) {
    return Status::error(method + ": " + (*answer)["error"].dump());
  }
  return answer->value("result", json::object());
}

Result<json> Browser::readUntil(int64_t id, Clock::time_point deadline) {
  for (;;) {
    size_t end;
    while ((end = buffer_.find('\0')) != std::string::npos) {
      json message = json::parse(buffer_.substr(0, end), nullptr, false);
      buffer_.erase(0, end + 1);
      if (message.is_discarded()) {
        continue;
      }
      if (message.contains("id") && message["id"] == id) {
        return message;
      }
      takeEvent(message);
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      return Status::error("no answer from chromium in time");
    }
    struct pollfd pfd = {fromBrowser_, POLLIN, 0};
    int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) {
      continue;
    }
    if (ready <= 0) {
      continue;
    }
    char chunk[65536];
    ssize_t n = ::read(fromBrowser_, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return Status::error("chromium closed its pipe");
    }
    buffer_.append(chunk, static_cast<size_t>(n));
    if (buffer_.size() > kMaxMessageBytes) {
      return Status::error("chromium sent a message over " + std::to_string(kMaxMessageBytes) +
                           " bytes");
    }
  }
}

void Browser::takeEvent(const json& message) {
  const std::string method = message.value("method", "");
  const json params = message.value("params", json::object());
  if (method == "Runtime.consoleAPICalled" && params.value("type", "") == "error") {
    std::string text = "console.error:";
    for (const auto& a : params.value("args", json::array())) {
      text += " " + (a.contains("value") ? a["value"].dump() : a.value("description", ""));
    }
    errors_.push_back(text);
  } else if (method == "Runtime.exceptionThrown") {
    const json details = params.value("exceptionDetails", json::object());
    errors_.push_back("uncaught: " +
                      details.value("exception", json::object())
                          .value("description", details.value("text", std::string("?"))));
  }
}

Status Browser::navigate(const std::string& url) {
  auto nav = call("Page.navigate", {{"url", url}});
  HYPER_RETURN_IF_ERROR(nav.status());
  if (nav->contains("errorText")) {
    return Status::error("navigate " + url + ": " + (*nav)["errorText"].dump());
  }
  return waitFor("document.readyState === 'complete'");
}

Result<json> Browser::eval(const std::string& expression) {
  auto r = call("Runtime.evaluate",
                {{"expression", expression}, {"returnByValue", true}, {"awaitPromise", true}});
  HYPER_RETURN_IF_ERROR(r.status());
  if (r->contains("exceptionDetails")) {
    return Status::error("evaluate " + expression + ": " + (*r)["exceptionDetails"].dump());
  }
  return r->value("result", json::object()).value("value", json());
}

Status Browser::waitFor(const std::string& expression, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string last;
  for (;;) {
    auto v = eval("!!(" + expression + ")");
    if (v.isOk() && v->is_boolean() && v->get<bool>()) {
      return Status::ok();
    }
    last = v.isOk() ? v->dump() : v.status().message();
    if (Clock::now() > deadline) {
      return Status::error("still not true after " + std::to_string(timeout.count()) +
                           " ms: " + expression + " (last: " + last + ")");
    }
    // Events (console errors) are read while waiting too.
    (void)readUntil(-1, Clock::now() + std::chrono::milliseconds(100));
  }
}

Status Browser::type(const std::string& selector, const std::string& text) {
  auto focused = eval("(() => { const e = document.querySelector(" + quotedJs(selector) +
                      "); if (!e) return false; e.focus(); e.value = ''; return true; })()");
  HYPER_RETURN_IF_ERROR(focused.status());
  if (!focused->is_boolean() || !focused->get<bool>()) {
    return Status::error("no element " + selector + " to type into");
  }
  return call("Input.insertText", {{"text", text}}).status();
}

Status Browser::click(const std::string& selector) {
  auto clicked = eval("(() => { const e = document.querySelector(" + quotedJs(selector) +
                      "); if (!e || e.disabled || e.hidden) return false; "
                      "e.scrollIntoView(); e.click(); return true; })()");
  HYPER_RETURN_IF_ERROR(clicked.status());
  if (!clicked->is_boolean() || !clicked->get<bool>()) {
    return Status::error("no visible, enabled element " + selector + " to click");
  }
  return Status::ok();
}

Status Browser::screenshot(const std::string& path, bool fullPage) {
  json params = {{"format", "png"}};
  if (fullPage) {
    auto metrics = call("Page.getLayoutMetrics", json::object());
    HYPER_RETURN_IF_ERROR(metrics.status());
    const json size = metrics->value("cssContentSize", metrics->value("contentSize", json()));
    if (!size.is_object() || !size.value("width", json()).is_number() ||
        !size.value("height", json()).is_number()) {
      return Status::error("screenshot: Page.getLayoutMetrics gave no content size");
    }
    // Bounded: a runaway page is cut at 20,000 pixels.
    params["clip"] = {{"x", 0},
                      {"y", 0},
                      {"width", size["width"].get<double>()},
                      {"height", std::min(size["height"].get<double>(), 20000.0)},
                      {"scale", 1}};
    params["captureBeyondViewport"] = true;
  }
  auto shot = call("Page.captureScreenshot", params);
  HYPER_RETURN_IF_ERROR(shot.status());
  std::string png;
  if (!decodeBase64(shot->value("data", ""), png) || png.size() < 8) {
    return Status::error("screenshot: no PNG in the answer");
  }
  return writeFileAtomically(path, png, 0644);
}

const std::vector<std::string>& Browser::consoleErrors() {
  (void)readUntil(-1, Clock::now() + std::chrono::milliseconds(50));
  return errors_;
}

}  // namespace hyper::cdp
