#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace hyper::cdp {

// Debian's headless Chromium driven through the DevTools protocol over a pipe
// (--remote-debugging-pipe: JSON messages ended by NUL on fds 3 and 4). A pipe rather than
// puppeteer-core or a WebSocket: nothing to fetch from npm, no WebSocket client to carry, no port
// to pick, and the browser goes when the pipe closes. Used by the status page's browser test and
// by hyper-pageshot (the demo's screenshot).
//
// One page, attached with a flat session. Every call has a deadline and what chromium sends is
// bounded (kMaxMessageBytes); the browser's console errors and uncaught exceptions are collected
// (the test fails on any, hyper-pageshot reports them).
class Browser {
 public:
  // More than this pending from chromium without a message end is an error (a screenshot of a
  // long page is a few MB of base64).
  static constexpr size_t kMaxMessageBytes = 64u << 20;

  // Starts chromium (`prefix` goes before it: `ip netns exec NS`), with a fresh profile under
  // `profileDir`, and opens a blank page of `width` x `height`. Skips (an error saying so) when
  // chromium is not installed.
  static Result<std::unique_ptr<Browser>> launch(const std::vector<std::string>& prefix,
                                                 const std::string& profileDir, int width = 1200,
                                                 int height = 900);
  ~Browser();
  Browser(const Browser&) = delete;
  Browser& operator=(const Browser&) = delete;

  // Page.navigate, then waits until the document has loaded.
  Status navigate(const std::string& url);
  // Runtime.evaluate in the page (promises awaited): the value, by value.
  Result<nlohmann::json> eval(const std::string& expression);
  // Polls `expression` until it is truthy; the error names it and what it gave last.
  Status waitFor(const std::string& expression,
                 std::chrono::milliseconds timeout = std::chrono::seconds(20));
  // Focuses the element `selector` and types `text` into it (Input.insertText).
  Status type(const std::string& selector, const std::string& text);
  // Clicks the element `selector` (its click(), after scrolling it into view).
  Status click(const std::string& selector);
  // A PNG of the page as it is, written to `path`: the window, or with `fullPage` the whole
  // document however long.
  Status screenshot(const std::string& path, bool fullPage = false);
  // The console errors and uncaught exceptions seen so far, one line each.
  const std::vector<std::string>& consoleErrors();

 private:
  Browser() = default;
  // Sends a command (to the page's session unless `browserLevel`) and waits for its answer.
  Result<nlohmann::json> call(const std::string& method, const nlohmann::json& params,
                              bool browserLevel = false,
                              std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Reads messages until one answers `id` or the deadline passes; events are kept.
  Result<nlohmann::json> readUntil(int64_t id, std::chrono::steady_clock::time_point deadline);
  void takeEvent(const nlohmann::json& message);

  int pid_ = -1;
  int toBrowser_ = -1;    // its fd 3
  int fromBrowser_ = -1;  // its fd 4
  std::string buffer_;
  int64_t nextId_ = 1;
  std::string session_;
  std::vector<std::string> errors_;
};

}  // namespace hyper::cdp
