// What a guest says on its secrets channel (providers/vmm/secret_channel.h): a VM is not trusted.
// Input: the guest's bytes, ready on a socket pair before the host's session starts (a session
// token fixed to 16 zeros so that lines can match it). Invariants: no crash or hang (the session
// ends within its 100 ms timeout or at the end of the bytes); a value counts as stored only when
// the guest confirmed it with its exact SHA-256; no error message holds a value, or more of the
// guest's bytes than a short excerpt (the value shows only where the guest itself wrote it).
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "base/sha256.h"
#include "base/text_escape.h"
#include "providers/vmm/secret_channel.h"
#include "tests/fuzz/fuzz_check.h"

using hyper::providers::vmm::DeliveryMode;
using hyper::providers::vmm::SecretGrant;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 32 * 1024 || size < 1) {
    return 0;  // stays within one socket buffer: the test writes it all before the session
  }
  static const char* kValue = "fuzz-secret-value";
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return 0;
  }
  // The first byte picks the mode; the rest is the guest's.
  const DeliveryMode mode = (data[0] & 1) != 0 ? DeliveryMode::Push : DeliveryMode::Boot;
  ssize_t wrote = ::write(fds[1], data + 1, size - 1);
  (void)wrote;
  ::shutdown(fds[1], SHUT_WR);
  std::vector<SecretGrant> grants;
  auto value = hyper::store::SecretBytes::copyOf(kValue);
  FUZZ_CHECK(value.isOk());
  grants.push_back({"db/password", std::move(*value)});
  std::vector<std::string> stored;
  auto t0 = std::chrono::steady_clock::now();
  hyper::Status s = hyper::providers::vmm::deliverSecretsOn(
      fds[0], grants, mode, std::chrono::milliseconds(100), nullptr, &stored, std::string(16, '0'));
  ::close(fds[1]);
  FUZZ_CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
  const std::string guest(reinterpret_cast<const char*>(data + 1), size - 1);
  if (!stored.empty()) {
    FUZZ_CHECK(stored.size() == 1 && stored[0] == "db/password");
    FUZZ_CHECK(guest.find(hyper::sha256Hex(kValue)) != std::string::npos);
  }
  if (!s.isOk()) {
    // The value only where the guest said it itself (quoted back, escaped, in an excerpt).
    FUZZ_CHECK(s.message().find(kValue) == std::string::npos ||
               hyper::escapeControl(guest).find(kValue) != std::string::npos);
    FUZZ_CHECK(s.message().size() < 600);
  }
  return 0;
}
