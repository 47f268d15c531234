// hyper-pageshot: signs in to hyperd's status page in Debian's headless Chromium and saves a PNG
// of it, for people who want to see the page without a browser of their own (the demo saves one
// next to its output). The token is read from a file and typed into the page's form, as a person
// would: it is never on a command line, in a URL or in the output.
//
//   hyper-pageshot --token-file /var/lib/hyper/viewer.token --out status.png
//                  [--url http://127.0.0.1:7400/] [--log VM/web-1] [--width 1280 --height 900]
//
// Exit 0: saved, and the page logged no error; 1: anything else, said on stderr (a screenshot
// taken before the page's errors were seen is still saved).
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include "base/file.h"
#include "tools/pageshot/cdp.h"

namespace {

using hyper::Status;

std::string jsString(const std::string& s) { return nlohmann::json(s).dump(); }

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) {
    s.pop_back();
  }
  return s;
}

Status run(const std::string& url, const std::string& tokenFile, const std::string& out,
           const std::string& log, int width, int height, int timeoutSeconds) {
  auto token = hyper::readFile(tokenFile, 4096);
  if (!token.isOk()) {
    return token.status().withContext("read the token");
  }
  const std::string secret = trimmed(*token);
  if (secret.empty()) {
    return Status::error(tokenFile + " holds no token");
  }
  char profile[] = "/tmp/hyper-pageshot.XXXXXX";
  if (::mkdtemp(profile) == nullptr) {
    return Status::error("create a browser profile directory in /tmp");
  }
  struct RemoveProfile {
    std::string path;
    ~RemoveProfile() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  } removeProfile{profile};

  auto browser = hyper::cdp::Browser::launch({}, profile, width, height);
  if (!browser.isOk()) {
    return browser.status();
  }
  hyper::cdp::Browser& b = **browser;
  const auto timeout = std::chrono::seconds(timeoutSeconds);
  HYPER_RETURN_IF_ERROR(b.navigate(url));
  HYPER_RETURN_IF_ERROR(b.waitFor("!document.getElementById('login').hidden", timeout)
                            .withContext(url + " shows no sign-in form (is it hyperd's?)"));
  HYPER_RETURN_IF_ERROR(b.type("#token", secret));
  HYPER_RETURN_IF_ERROR(b.click("#login-form button"));
  // Signed in, the objects drawn, the events followed live.
  Status in = b.waitFor(
      "document.getElementById('login-error').textContent !== '' || "
      "(!document.getElementById('app').hidden && document.querySelector('#tree li') && "
      "!document.getElementById('live').hidden)",
      timeout);
  HYPER_RETURN_IF_ERROR(in.withContext("sign in"));
  auto refused = b.eval("document.getElementById('login-error').textContent");
  if (refused.isOk() && refused->is_string() && !refused->get<std::string>().empty()) {
    return Status::error("the page refused the token in " + tokenFile + ": " +
                         refused->get<std::string>());
  }
  if (!log.empty()) {
    const std::string node = "[data-id=" + jsString(log) + "] > .node-head button";
    HYPER_RETURN_IF_ERROR(b.click(node).withContext("open the log of " + log));
    HYPER_RETURN_IF_ERROR(b.waitFor("!document.getElementById('log-panel').hidden && "
                                    "document.getElementById('log').textContent.length > 0",
                                    timeout)
                              .withContext("the log of " + log));
  }
  HYPER_RETURN_IF_ERROR(b.screenshot(out, /*fullPage=*/true));
  const auto& errors = b.consoleErrors();
  if (!errors.empty()) {
    std::string all;
    for (const auto& e : errors) {
      all += "\n  " + e;
    }
    return Status::error("the page logged errors (the screenshot is saved):" + all);
  }
  return Status::ok();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Signs in to hyperd's status page in headless Chromium and saves a screenshot."};
  std::string url = "http://127.0.0.1:7400/";
  std::string tokenFile;
  std::string out;
  std::string log;
  int width = 1280;
  int height = 900;
  int timeout = 30;
  app.add_option("--url", url, "the status page (hyperd's API address)");
  app.add_option("--token-file", tokenFile,
                 "a file holding the API token or the read-only <state-dir>/viewer.token")
      ->required();
  app.add_option("--out", out, "where the PNG goes")->required();
  app.add_option("--log", log, "open this object's console or build log first, like VM/web-1");
  app.add_option("--width", width, "window width in pixels")->check(CLI::Range(320, 4000));
  app.add_option("--height", height, "window height in pixels")->check(CLI::Range(240, 4000));
  app.add_option("--timeout", timeout, "seconds to wait for each step")->check(CLI::Range(1, 600));
  CLI11_PARSE(app, argc, argv);
  Status s = run(url, tokenFile, out, log, width, height, timeout);
  if (!s.isOk()) {
    std::cerr << "hyper-pageshot: " << s.message() << "\n";
    return 1;
  }
  std::cout << out << "\n";
  return 0;
}
