#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "netmodel/cidr.h"

namespace hyper::netmodel {

// Changes to the links of the calling thread's network namespace and to their IPv4 addresses,
// made in-process over rtnetlink: what `ip -force -batch` made from text lines, without a
// process, without parsing and without a name lookup per line.
//
// Every request belongs to an owner (the caller's number for it, say an action of a batch) and
// is described as the `ip` command that would make it ("link set dev hb-web mtu 1400 up"). An
// owner's requests run in the order they were added; an owner's first failure is the one
// reported, in iproute2's words ("RTNETLINK answers: File exists", or "Error: <the kernel's
// reason>." when the kernel gives one).
//
// apply() sends the link requests first, in order, many per datagram with an ack asked for each
// (the kernel runs every message of a datagram in one system call, in order, going on past a
// failed one), and never splits an owner's link requests across two datagrams: a bridge is made
// and marked with hyper's alias in the same system call, so a hyperd killed in between cannot
// leave an unmarked bridge it would then refuse as someone else's. Addresses go second, to links
// found by name then, and only for owners whose link requests all succeeded.
class LinkChanges {
 public:
  void addBridge(size_t owner, const std::string& name);   // link add NAME type bridge
  void deleteLink(size_t owner, const std::string& name);  // link del dev NAME
  void setAlias(size_t owner, const std::string& name, const std::string& alias);
  void setMtuUp(size_t owner, const std::string& name, int mtu);  // link set dev N mtu M up
  // link set dev NAME master MASTER up
  void setMasterUp(size_t owner, const std::string& name, const std::string& master);
  // link set dev NAME type bridge_slave isolated on
  void setIsolatedPort(size_t owner, const std::string& name);
  void deleteAddress(size_t owner, const std::string& name, const Cidr& address);
  void replaceAddress(size_t owner, const std::string& name, const Cidr& address);

  bool empty() const { return requests_.empty(); }
  size_t size() const { return requests_.size(); }

  // Runs every request. The value: each owner with a failure -> "<ip command> <- <what ip would
  // print>". Not ok when the kernel could not be asked or did not answer within 5 s: then any
  // request may or may not have run.
  Result<std::map<size_t, std::string>> apply() const;
  // apply() for requests that stand or fall together: the first failure as an error.
  Status applyAll() const;

  // The requests as `ip -batch` lines, in order (for messages and tests).
  std::string describe() const;

  enum class Op {
    AddBridge,
    DeleteLink,
    SetAlias,
    SetMtuUp,
    SetMasterUp,
    SetIsolated,
    DeleteAddr,
    ReplaceAddr
  };
  struct Change {
    size_t owner = 0;
    Op op = Op::AddBridge;
    std::string dev;
    std::string text;  // the alias or the master
    int mtu = 0;
    Cidr address;
    bool isAddress() const { return op == Op::DeleteAddr || op == Op::ReplaceAddr; }
    std::string ipCommand() const;
  };

 private:
  std::vector<Change> requests_;
};

// The ifalias of the link `name`: nullopt when there is no such link, "" when it has none. One
// RTM_GETLINK by name in the calling thread's namespace.
Result<std::optional<std::string>> linkAlias(const std::string& name);

// Makes the persistent tap `name` carrying `alias` (ip tuntap add dev NAME mode tap, then link
// set dev NAME alias ALIAS), with nothing in between that survives the caller: the tap is made
// bound to the caller's file of /dev/net/tun, marked, and only then made persistent, so a
// process killed before that leaves no tap behind, and never an unmarked one.
Status makeTap(const std::string& name, const std::string& alias);

}  // namespace hyper::netmodel
