#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "host/command.h"
#include "netmodel/cidr.h"
#include "netmodel/net_spec.h"
#include "providers/net/nft_ruleset.h"
#include "tests/integration/netns_util.h"

// The bridge guard on the wire: the `bridge hyper` table that renderNftReplace writes, loaded
// into a real kernel, with real frames from a "guest" namespace plugged into the bridge through a
// veth pair whose bridge end is named like a tap. Every "dropped" check has its control: the same
// traffic passes once `table bridge hyper` is deleted, so a drop is the guard's and not a broken
// setup; and every "passes" check runs with the guard loaded.
//
// The test thread enters the "host" namespace (the bridge, the tap, nft); the guest is a second
// namespace its commands run in. Both are deleted by their destructors, also when an assertion
// fails. Nothing touches the machine's own interfaces or firewall.

namespace hyper::providers::net {
namespace {

constexpr char kBridge[] = "hb-lab";
constexpr char kBridgeMac[] = "52:54:00:77:00:01";
constexpr char kGateway[] = "10.77.0.1";
constexpr char kGateway6[] = "fd77::1";
constexpr char kTap[] = "hv-a";
constexpr char kGuestDev[] = "cv-a";
constexpr char kGuestMac[] = "52:54:00:77:00:0a";  // lower case, as TapBinding holds it
constexpr char kGuestIp[] = "10.77.0.10";
constexpr char kGuestIp6[] = "fd77::10";
constexpr char kSpoofedIp[] = "10.77.0.99";
constexpr char kOtherMac[] = "52:54:00:77:00:bb";

Result<std::string> run(const std::vector<std::string>& argv, const std::string& input = "") {
  return host::runChecked(argv, input);
}

class NetGuardWireTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root (network namespaces, nftables)";
    }
    for (const char* tool : {"ping", "nft"}) {
      auto which = host::runCommand({"sh", "-c", std::string("command -v ") + tool});
      ASSERT_TRUE(which.isOk() && which->exitCode == 0) << tool << " is needed";
    }
    auto host = test::EnteredNetns::enter("gwh");
    ASSERT_TRUE(host.isOk()) << host.status().message();
    host_ = std::move(*host);
    // Guard: nothing below may run in the machine's own namespace.
    ASSERT_TRUE(host_->active());
    auto guest = test::NamedNetns::create(test::uniqueNetnsName("gwg"));
    ASSERT_TRUE(guest.isOk()) << guest.status().message();
    guest_ = std::move(*guest);

    // The bridge, with a fixed MAC so that the guest can be given a static neighbour for it.
    // IPv6 addresses without duplicate address detection ("nodad"): usable at once.
    for (const std::vector<std::string>& argv : std::vector<std::vector<std::string>>{
             {"ip", "link", "add", kBridge, "address", kBridgeMac, "type", "bridge"},
             {"ip", "addr", "add", std::string(kGateway) + "/24", "dev", kBridge},
             {"ip", "-6", "addr", "add", std::string(kGateway6) + "/64", "dev", kBridge, "nodad"},
             {"ip", "link", "set", kBridge, "up"},
             {"ip", "link", "add", kTap, "type", "veth", "peer", "name", kGuestDev, "address",
              kGuestMac, "netns", guest_->name()},
             {"ip", "link", "set", kTap, "master", kBridge, "up"}}) {
      auto r = run(argv);
      ASSERT_TRUE(r.isOk()) << r.status().message();
    }
    for (const std::vector<std::string>& argv : std::vector<std::vector<std::string>>{
             {"ip", "addr", "add", std::string(kGuestIp) + "/24", "dev", kGuestDev},
             {"ip", "-6", "addr", "add", std::string(kGuestIp6) + "/64", "dev", kGuestDev, "nodad"},
             {"ip", "link", "set", kGuestDev, "up"}}) {
      auto r = guest_->run(argv);
      ASSERT_TRUE(r.isOk()) << r.status().message();
    }
    // The setup works before any guard: otherwise no check below means anything.
    ASSERT_TRUE(reaches({kGateway})) << "no IPv4 from the guest to the bridge without the guard";
  }

  // Network lab (hb-lab, 10.77.0.0/24) with one port: hv-a bound to 10.77.0.10 and `mac`.
  static NftModel model(const std::string& mac) {
    NftModel m;
    netmodel::NetworkSpec lab;
    lab.name = "lab";
    auto cidr = netmodel::Cidr::parse("10.77.0.0/24");
    EXPECT_TRUE(cidr.isOk());
    if (cidr.isOk()) {
      lab.cidr = *cidr;
    }
    lab.bridge = kBridge;
    m.networks["lab"] = lab;
    m.ports["lab"] = {TapBinding{kTap, kGuestIp, mac, "a"}};
    return m;
  }

  // hyper's tables as the net provider writes them, in one `nft -f -` transaction.
  static Status loadGuard(const std::string& mac = kGuestMac) {
    return run({"nft", "-f", "-"}, renderNftReplace(model(mac))).status();
  }
  static Status removeGuard() {
    return run({"nft", "delete", "table", "bridge", "hyper"}).status();
  }

  // ping's exit code for one echo request from the guest: 0 answered, 1 no answer (anything
  // else is an error of the command itself, never counted as a drop).
  int ping(const std::vector<std::string>& args, int waitSeconds) {
    std::vector<std::string> argv = {"ping", "-n", "-q", "-c1", "-W", std::to_string(waitSeconds)};
    argv.insert(argv.end(), args.begin(), args.end());
    auto code = guest_->exitCode(argv);
    EXPECT_TRUE(code.isOk()) << code.status().message();
    return code.isOk() ? *code : -1;
  }
  // Reachability that is expected: a fresh port or neighbour entry may need a moment, so a few
  // tries; success is what is asserted, never a delay.
  bool reaches(const std::vector<std::string>& args) {
    for (int i = 0; i < 5; ++i) {
      if (ping(args, 1) == 0) {
        return true;
      }
    }
    return false;
  }
  // One request, no answer. Exit code 1 exactly: the request went out and nothing came back.
  bool dropped(const std::vector<std::string>& args) { return ping(args, 1) == 1; }

  // Static neighbours on both sides, so that no ARP is sent: the only frames on the wire are the
  // IPv4 packets themselves, and a drop is that of the rule for them alone.
  void staticNeighbours(const std::string& guestIp, const std::string& guestMac) {
    auto h = run({"ip", "neigh", "replace", guestIp, "lladdr", guestMac, "dev", kBridge, "nud",
                  "permanent"});
    ASSERT_TRUE(h.isOk()) << h.status().message();
    auto g = guest_->run({"ip", "neigh", "replace", kGateway, "lladdr", kBridgeMac, "dev",
                          kGuestDev, "nud", "permanent"});
    ASSERT_TRUE(g.isOk()) << g.status().message();
  }
  void flushNeighbours() {
    auto h = run({"ip", "neigh", "flush", "dev", kBridge});
    ASSERT_TRUE(h.isOk()) << h.status().message();
    auto g = guest_->run({"ip", "neigh", "flush", "dev", kGuestDev});
    ASSERT_TRUE(g.isOk()) << g.status().message();
  }
  // The host's neighbour entry for `ip` on the bridge ("" when there is none).
  std::string hostNeighbour(const std::string& ip) {
    auto out = run({"ip", "neigh", "show", ip, "dev", kBridge});
    EXPECT_TRUE(out.isOk()) << out.status().message();
    return out.isOk() ? *out : "";
  }

  std::unique_ptr<test::EnteredNetns> host_;
  std::unique_ptr<test::NamedNetns> guest_;
};

TEST_F(NetGuardWireTest, LoadedGuardLetsTheBoundAddressAndMacThrough) {
  ASSERT_TRUE(loadGuard().isOk());
  auto table = run({"nft", "list", "table", "bridge", "hyper"});
  ASSERT_TRUE(table.isOk()) << table.status().message();
  const std::string macs = "@" + std::string(kGuardMacsSet);
  const std::string addrs = "@" + std::string(kGuardAddrsSet);
  const std::string from = "iifname @" + std::string(kGuardTapsSet) + " ";
  for (const std::string& part : {
           std::string("chain guard-prerouting {"),
           std::string("type filter hook prerouting priority filter; policy accept;"),
           std::string("elements = { \"hv-a\" }"),
           std::string("elements = { \"hv-a\" . 52:54:00:77:00:0a }"),
           std::string("elements = { \"hv-a\" . 10.77.0.10 }"),
           from + "iifname . ether saddr != " + macs + " drop",
           from + "iifname . arp saddr ether != " + macs + " drop",
           from + "iifname . arp saddr ip != " + addrs + " drop",
           from + "iifname . ip saddr != " + addrs + " drop",
           from + "ether type != ip ether type != arp drop",
       }) {
    EXPECT_NE(table->find(part), std::string::npos) << part << "\nnot in\n" << *table;
  }

  // ARP and IPv4 from the tap's own MAC and address pass, with fresh neighbours on both sides
  // (the guest's ARP request and its reply to the host's go through the guard too).
  flushNeighbours();
  EXPECT_TRUE(reaches({kGateway})) << "the guard dropped the bound address";
  auto fromHost = host::runCommand({"ping", "-n", "-q", "-c1", "-W1", kGuestIp});
  ASSERT_TRUE(fromHost.isOk()) << fromHost.status().message();
  EXPECT_EQ(fromHost->exitCode, 0) << "the host got no answer from the bound address";
}

// The rule written as two comparisons since layout 2 (`ether type != ip ether type != arp drop`,
// once `ether type != { ip, arp } drop`): IPv6 is neither, so not even neighbour discovery passes.
TEST_F(NetGuardWireTest, FramesThatAreNeitherIpv4NorArpAreDropped) {
  const std::vector<std::string> ping6 = {"-6", kGateway6};
  ASSERT_TRUE(reaches(ping6)) << "no IPv6 from the guest to the bridge without the guard";

  ASSERT_TRUE(loadGuard().isOk());
  flushNeighbours();
  EXPECT_TRUE(dropped(ping6)) << "IPv6 from the tap passed the guard";
  EXPECT_TRUE(reaches({kGateway})) << "IPv4 from the same tap should still pass";

  ASSERT_TRUE(removeGuard().isOk());
  flushNeighbours();  // not the failed resolution's entry
  EXPECT_TRUE(reaches(ping6)) << "IPv6 did not come back without the guard: the drop was not its";
}

// An IPv4 packet whose source is another address of the network: with static neighbours no ARP
// is involved, so this is the `ip saddr` rule alone.
TEST_F(NetGuardWireTest, SpoofedIpv4SourceIsDropped) {
  auto add = guest_->run({"ip", "addr", "add", std::string(kSpoofedIp) + "/24", "dev", kGuestDev});
  ASSERT_TRUE(add.isOk()) << add.status().message();
  staticNeighbours(kSpoofedIp, kGuestMac);
  const std::vector<std::string> spoofed = {"-I", kSpoofedIp, kGateway};
  ASSERT_TRUE(reaches(spoofed)) << "no IPv4 from the second address without the guard";

  ASSERT_TRUE(loadGuard().isOk());
  EXPECT_TRUE(dropped(spoofed)) << "IPv4 from a spoofed source passed the guard";
  EXPECT_TRUE(reaches({kGateway})) << "IPv4 from the bound address should still pass";

  ASSERT_TRUE(removeGuard().isOk());
  EXPECT_TRUE(reaches(spoofed)) << "the spoofed source did not pass without the guard";
}

// An ARP request whose sender address is not the tap's (the guest resolves the gateway for a
// packet from the second address): the host never hears it, so it learns no neighbour for it.
TEST_F(NetGuardWireTest, SpoofedArpSenderIsDropped) {
  auto add = guest_->run({"ip", "addr", "add", std::string(kSpoofedIp) + "/24", "dev", kGuestDev});
  ASSERT_TRUE(add.isOk()) << add.status().message();
  const std::vector<std::string> spoofed = {"-I", kSpoofedIp, kGateway};

  ASSERT_TRUE(loadGuard().isOk());
  flushNeighbours();
  EXPECT_TRUE(dropped(spoofed)) << "the spoofed ARP (or the packet after it) passed the guard";
  EXPECT_EQ(hostNeighbour(kSpoofedIp).find("lladdr"), std::string::npos)
      << "the host learnt the spoofed address from an ARP that passed the guard: "
      << hostNeighbour(kSpoofedIp);

  ASSERT_TRUE(removeGuard().isOk());
  flushNeighbours();
  EXPECT_TRUE(reaches(spoofed)) << "the spoofed source did not pass without the guard";
  EXPECT_NE(hostNeighbour(kSpoofedIp).find(std::string("lladdr ") + kGuestMac), std::string::npos)
      << "without the guard the host should know the spoofed address: "
      << hostNeighbour(kSpoofedIp);
}

// The guest takes another MAC. First with neighbours to resolve (the ARP from the new MAC is
// dropped), then with static neighbours (the IPv4 frame from the new MAC is dropped: the
// `ether saddr` rule alone).
TEST_F(NetGuardWireTest, ChangedMacIsDropped) {
  ASSERT_TRUE(loadGuard().isOk());
  ASSERT_TRUE(reaches({kGateway})) << "the guard dropped the bound MAC";

  auto mac = guest_->run({"ip", "link", "set", kGuestDev, "address", kOtherMac});
  ASSERT_TRUE(mac.isOk()) << mac.status().message();
  flushNeighbours();
  EXPECT_TRUE(dropped({kGateway})) << "ARP from a changed MAC passed the guard";
  staticNeighbours(kGuestIp, kOtherMac);
  EXPECT_TRUE(dropped({kGateway})) << "IPv4 from a changed MAC passed the guard";

  ASSERT_TRUE(removeGuard().isOk());
  EXPECT_TRUE(reaches({kGateway})) << "the changed MAC did not pass without the guard";
}

}  // namespace
}  // namespace hyper::providers::net
