#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace hyper::test {

// The guest end of hyper's secrets channel (providers/vmm/secret_channel.h) without a VM: it
// listens on a Unix socket as QEMU does (one host connection at a time) and plays hyper's guest
// init (guest/initramfs.cc) for the ids it was granted; or misbehaves as told, for the tests of
// the host side against a hostile guest.
class FakeSecretGuest {
 public:
  FakeSecretGuest(std::string socketPath, std::vector<std::string> grantedIds);
  ~FakeSecretGuest();
  FakeSecretGuest(const FakeSecretGuest&) = delete;
  FakeSecretGuest& operator=(const FakeSecretGuest&) = delete;

  // Starts listening (the socket exists when it returns) and serving in a thread.
  void start();

  // What it stored, by id, and how often it was told a value (rotations count).
  std::map<std::string, std::string> stored() const;
  int valuesReceived() const;
  // Every line the host sent except the values ("hello 1", "denied x").
  std::vector<std::string> controlLines() const;

  // Misbehaviour, set before start().
  int ignoreHellos = 0;  // what the kernel drops before init opens the port
  // Reads nothing for this long after the host connects, so its hellos queue up and are all
  // answered at once (a guest slow to start reading its open port: TCG on a busy host).
  std::chrono::milliseconds readDelay{0};
  bool wrongHash = false;              // answers stored with another SHA-256
  std::string failReason;              // answers "failed <id> <reason>" instead of storing
  bool silent = false;                 // never says anything
  std::vector<std::string> extraGets;  // asks for these ids too
  std::string floodLine;               // sends this line again and again after the first hello
  bool endlessLine = false;            // sends bytes without a newline
  std::string lateLine;  // said before each stored (a line with another session's token)

 private:
  void serve();
  void handle(int fd);

  std::string path_;
  std::vector<std::string> ids_;
  int listenFd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  std::map<std::string, std::string> stored_;
  int values_ = 0;
  std::vector<std::string> control_;
};

}  // namespace hyper::test
