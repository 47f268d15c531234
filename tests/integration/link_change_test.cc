// netmodel::LinkChanges, makeTap and linkAlias against the real kernel, in a network namespace
// the test makes and removes: the links come out as `ip` makes them from the same lines, and a
// failure reads as `ip` words it.
#include "netmodel/link_change.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "host/command.h"
#include "netmodel/link_dump.h"
#include "netmodel/link_state.h"
#include "tests/integration/netns_util.h"

namespace hyper::netmodel {
namespace {

Cidr cidr(const std::string& text) {
  auto c = Cidr::parse(text);
  EXPECT_TRUE(c.isOk()) << text;
  return c.isOk() ? *c : Cidr{};
}

// A link as the tests compare it, without its name.
std::string shape(const LinkState& l) {
  std::string out = "kind=" + l.kind + " mtu=" + std::to_string(l.mtu) +
                    " up=" + std::to_string(l.up) + " alias=" + l.alias + " master=" + l.master +
                    " isolated=" + std::to_string(l.isolated);
  for (const auto& a : l.ipv4Strings()) {
    out += " " + a;
  }
  return out;
}

// What `ip ARGS` prints on stderr when it fails (its first line).
std::string ipSays(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"ip"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = host::runCommand(argv);
  EXPECT_TRUE(r.isOk()) << r.status().message();
  if (!r.isOk()) {
    return "";
  }
  EXPECT_NE(r->exitCode, 0) << "ip " << args.front() << " did not fail";
  return r->err.substr(0, r->err.find('\n'));
}

class LinkChangeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ns = test::EnteredNetns::enter("lnk");
    ASSERT_TRUE(ns.isOk()) << ns.status().message();
    ns_ = std::move(*ns);
  }
  void TearDown() override { ns_.reset(); }

  static Status ip(const std::string& batch) {
    return host::runChecked({"ip", "-batch", "-"}, batch).status();
  }
  static LinkTable links() {
    auto t = dumpLinkTable();
    EXPECT_TRUE(t.isOk()) << t.status().message();
    return t.isOk() ? *t : LinkTable{};
  }

  std::unique_ptr<test::EnteredNetns> ns_;
};

// The same requests, once by `ip -batch` from describe()'s lines and once in-process, make the
// same links: kind, MTU, up, alias and addresses (a stale one removed, the gateway put).
TEST_F(LinkChangeTest, MakesTheLinksIpMakesFromTheSameLines) {
  ASSERT_TRUE(ns_->active());
  auto changesFor = [](const std::string& dev) {
    LinkChanges c;
    c.addBridge(0, dev);
    c.setAlias(0, dev, "hyper:Network/" + dev);
    c.setMtuUp(0, dev, 1400);
    c.replaceAddress(0, dev, cidr("10.77.0.1/24"));
    c.replaceAddress(0, dev, cidr("10.78.0.1/16"));
    return c;
  };
  auto fixFor = [](const std::string& dev) {
    LinkChanges c;
    c.setMtuUp(0, dev, 1300);
    c.deleteAddress(0, dev, cidr("10.78.0.1/16"));
    c.replaceAddress(0, dev, cidr("10.79.0.1/24"));
    return c;
  };
  ASSERT_TRUE(ip(changesFor("hb-ip").describe()).isOk());
  ASSERT_TRUE(ip(fixFor("hb-ip").describe()).isOk());
  auto made = changesFor("hb-rt").apply();
  ASSERT_TRUE(made.isOk()) << made.status().message();
  EXPECT_TRUE(made->empty()) << made->begin()->second;
  auto fixed = fixFor("hb-rt").apply();
  ASSERT_TRUE(fixed.isOk()) << fixed.status().message();
  EXPECT_TRUE(fixed->empty()) << fixed->begin()->second;

  LinkTable table = links();
  const LinkState* byIp = table.find("hb-ip");
  const LinkState* byRt = table.find("hb-rt");
  ASSERT_NE(byIp, nullptr);
  ASSERT_NE(byRt, nullptr);
  EXPECT_EQ(byRt->alias, "hyper:Network/hb-rt");
  EXPECT_EQ(shape(*byRt),
            "kind=bridge mtu=1300 up=1 alias=hyper:Network/hb-rt master= isolated=0 "
            "10.77.0.1/24 10.79.0.1/24");
  LinkState renamed = *byIp;
  renamed.alias = "hyper:Network/hb-rt";
  EXPECT_EQ(shape(*byRt), shape(renamed));

  LinkChanges gone;
  gone.deleteLink(0, "hb-rt");
  ASSERT_TRUE(gone.applyAll().isOk());
  EXPECT_EQ(links().find("hb-rt"), nullptr);
}

// Each owner's first failure is its own and reads as ip prints it; the others' requests still run,
// and an owner whose link failed gets no address.
TEST_F(LinkChangeTest, AFailureIsItsOwnersInIpsWords) {
  ASSERT_TRUE(ns_->active());
  ASSERT_TRUE(ip("link add hb-taken type bridge\n"
                 "link add hb-small type bridge\n")
                  .isOk());
  LinkChanges c;
  c.addBridge(0, "hb-taken");  // exists
  c.setAlias(0, "hb-taken", "hyper:Network/taken");
  c.addBridge(1, "hb-ok");
  c.setMtuUp(1, "hb-ok", 1400);
  c.replaceAddress(1, "hb-ok", cidr("10.1.0.1/24"));
  c.setMtuUp(2, "hb-small", 99999);  // above a bridge's maximum
  c.replaceAddress(2, "hb-small", cidr("10.2.0.1/24"));
  c.replaceAddress(3, "hb-none", cidr("10.3.0.1/24"));  // no such link
  c.setMtuUp(4, "hb-none", 1400);
  auto failed = c.apply();
  ASSERT_TRUE(failed.isOk()) << failed.status().message();

  EXPECT_EQ(failed->size(), 4u);
  EXPECT_EQ(failed->count(1), 0u) << (*failed)[1];
  EXPECT_EQ((*failed)[0], "link add hb-taken type bridge <- " +
                              ipSays({"link", "add", "hb-taken", "type", "bridge"}));
  EXPECT_EQ((*failed)[2], "link set dev hb-small mtu 99999 up <- " +
                              ipSays({"link", "set", "dev", "hb-small", "mtu", "99999", "up"}));
  EXPECT_EQ((*failed)[3], "addr replace 10.3.0.1/24 dev hb-none <- " +
                              ipSays({"addr", "replace", "10.3.0.1/24", "dev", "hb-none"}));
  EXPECT_EQ((*failed)[4], "link set dev hb-none mtu 1400 up <- " +
                              ipSays({"link", "set", "dev", "hb-none", "mtu", "1400", "up"}));

  LinkTable table = links();
  ASSERT_NE(table.find("hb-ok"), nullptr);
  EXPECT_EQ(table.find("hb-ok")->ipv4Strings(), std::vector<std::string>{"10.1.0.1/24"});
  // The later request of a failed owner in the same datagram still ran, as with `ip -force`.
  EXPECT_EQ(table.find("hb-taken")->alias, "hyper:Network/taken");
  ASSERT_NE(table.find("hb-small"), nullptr);
  EXPECT_TRUE(table.find("hb-small")->ipv4.empty()) << "an address after a failed link request";
}

// More requests than one datagram holds: every ack is matched to its request, and no owner's link
// requests are split (all 300 bridges carry their alias).
TEST_F(LinkChangeTest, ManyOwnersSpanManyDatagrams) {
  ASSERT_TRUE(ns_->active());
  LinkChanges c;
  const int n = 300;
  for (int i = 0; i < n; ++i) {
    std::string dev = "hb-m" + std::to_string(i);
    c.addBridge(i, dev);
    c.setAlias(i, dev, "hyper:Network/m" + std::to_string(i));
    c.setMtuUp(i, dev, 1400);
    c.replaceAddress(i, dev, Cidr{(10u << 24) | (static_cast<uint32_t>(i) << 8) | 1u, 24});
  }
  c.setMtuUp(n, "hb-m7", 99999);  // the one failure, after every datagram of bridges
  auto failed = c.apply();
  ASSERT_TRUE(failed.isOk()) << failed.status().message();
  ASSERT_EQ(failed->size(), 1u) << failed->begin()->second;
  EXPECT_EQ(failed->begin()->first, static_cast<size_t>(n));
  LinkTable table = links();
  int good = 0;
  for (int i = 0; i < n; ++i) {
    const LinkState* l = table.find("hb-m" + std::to_string(i));
    good += l && l->up && l->mtu == 1400 && l->alias == "hyper:Network/m" + std::to_string(i) &&
            l->ipv4.size() == 1;
  }
  EXPECT_EQ(good, n);
}

// A tap is made marked and persistent; a name already taken is refused, not attached to and
// marked; linkAlias tells a missing link from one without an alias.
TEST_F(LinkChangeTest, MakeTapMarksANewTapAndRefusesAnExistingOne) {
  ASSERT_TRUE(ns_->active());
  ASSERT_TRUE(makeTap("hv-made", "hyper:VM/made").isOk());
  auto alias = linkAlias("hv-made");
  ASSERT_TRUE(alias.isOk()) << alias.status().message();
  ASSERT_TRUE(alias->has_value());
  EXPECT_EQ(**alias, "hyper:VM/made");
  const LinkState* tap = links().find("hv-made");
  ASSERT_NE(tap, nullptr) << "the tap did not outlive makeTap's file of /dev/net/tun";
  EXPECT_EQ(tap->kind, "tun");

  ASSERT_TRUE(ip("tuntap add dev hv-theirs mode tap\n").isOk());
  Status again = makeTap("hv-theirs", "hyper:VM/theirs");
  ASSERT_FALSE(again.isOk());
  EXPECT_NE(again.message().find("tuntap add dev hv-theirs mode tap <- ioctl(TUNSETIFF)"),
            std::string::npos)
      << again.message();
  auto theirs = linkAlias("hv-theirs");
  ASSERT_TRUE(theirs.isOk() && theirs->has_value());
  EXPECT_EQ(**theirs, "") << "an existing tap was marked";

  auto none = linkAlias("hv-none");
  ASSERT_TRUE(none.isOk()) << none.status().message();
  EXPECT_FALSE(none->has_value());
}

// A tap joins its bridge as an isolated port, up; a missing bridge is ip's "Cannot find device".
TEST_F(LinkChangeTest, ATapJoinsItsBridgeAsAnIsolatedPort) {
  ASSERT_TRUE(ns_->active());
  ASSERT_TRUE(ip("link add hb-port type bridge\n").isOk());
  ASSERT_TRUE(makeTap("hv-port", "hyper:VM/port").isOk());
  LinkChanges attach;
  attach.setMasterUp(0, "hv-port", "hb-port");
  attach.setIsolatedPort(0, "hv-port");
  Status attached = attach.applyAll();
  ASSERT_TRUE(attached.isOk()) << attached.message();
  const LinkState* tap = links().find("hv-port");
  ASSERT_NE(tap, nullptr);
  EXPECT_EQ(tap->master, "hb-port");
  EXPECT_TRUE(tap->isolated);
  EXPECT_TRUE(tap->up);

  LinkChanges lost;
  lost.setMasterUp(0, "hv-port", "hb-gone");
  Status s = lost.applyAll();
  ASSERT_FALSE(s.isOk());
  EXPECT_EQ(s.message(), "link set dev hv-port master hb-gone up <- " +
                             ipSays({"link", "set", "dev", "hv-port", "master", "hb-gone", "up"}));
}

}  // namespace
}  // namespace hyper::netmodel
