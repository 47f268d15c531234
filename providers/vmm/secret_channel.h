#pragma once

#include <atomic>
#include <chrono>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/status.h"
#include "store/sealing.h"

namespace hyper::providers::vmm {

// hyper's secrets channel: the virtio-serial port a VM with `secrets:` boots with. QEMU listens on
// a Unix socket in the VM's run dir for its host side (channelSocketPath); the host connects only
// while it delivers, so the values pass through QEMU's memory and the guest's, never a file.
//
// The protocol is lines of text. The host speaks first, with a token new for each session:
//   host:  hello <token>                  (again every kHelloEvery until the guest answers: what
//                                          the guest's kernel receives before its init opens the
//                                          port is lost)
//   guest: get <token> <id>               (each value it was granted on its command line and lacks)
//   host:  value <token> <id> <base64>    (only ids granted to this VM; another gets
//                                          "denied <token> <id>")
//   guest: stored <token> <id> <sha256>   (the hex SHA-256 of what it wrote: the host checks it)
//          failed <token> <id> <reason>
// A rotation is a `value` line the host sends unasked; the guest stores it and answers the same.
// Ids are "<secret>/<key>". What the guest writes while no host is connected waits in QEMU and
// reaches the next session: the token tells such a late line from an answer (it is skipped). The
// guest is not trusted: its lines are bounded (kMaxGuestLine) and so is their number, the session
// by the caller's timeout, and what it sends is never echoed into an error whole.
inline constexpr const char* kSecretsChannel = "hyper.secrets";
inline constexpr size_t kMaxGuestLine = 512;
inline constexpr std::chrono::milliseconds kHelloEvery{500};

struct SecretGrant {
  std::string id;  // "db/password"
  store::SecretBytes value;
};

enum class DeliveryMode {
  Boot,  // hello, then answer the guest's gets until every grant is stored
  Push,  // send every grant unasked, wait until each is stored
};

// Connects to QEMU's end of a socket channel (VmSpec::socketChannels) at `path`, trying again
// until `deadline` while nothing listens yet (QEMU makes the socket before it daemonizes, but a VM
// may be starting under another caller). The descriptor is non-blocking.
Result<Fd> connectChannelSocket(const std::string& path,
                                std::chrono::steady_clock::time_point deadline,
                                const std::atomic<bool>* cancel);

// One delivery session on `socketPath`. `stored` receives the id of each value the guest
// confirmed with the right hash, in order, also when the session fails later. The error says which
// id failed and why (the guest's reason, escaped and cut short), or that the time ran out, or
// waitCancelledMessage-like text when `cancel` became true.
Status deliverSecrets(const std::string& socketPath, const std::vector<SecretGrant>& grants,
                      DeliveryMode mode, std::chrono::milliseconds timeout,
                      const std::atomic<bool>* cancel, std::vector<std::string>* stored);

// The same on a connected stream socket `fd` (taken: closed when done). `token` names the session:
// a random one when empty, which is what deliverSecrets uses; a fixed one only for the fuzz target
// (tests/fuzz/secret_channel_fuzz.cc), so that what it sends can match.
Status deliverSecretsOn(int fd, const std::vector<SecretGrant>& grants, DeliveryMode mode,
                        std::chrono::milliseconds timeout, const std::atomic<bool>* cancel,
                        std::vector<std::string>* stored, std::string token = "");

}  // namespace hyper::providers::vmm
