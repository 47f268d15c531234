// netmodel/netlink.h: rtnetlink requests as bytes, and the kernel's answers read back in ip's
// words, on hand-made messages (the real kernel is in tests/integration/link_change_test.cc).
#include "netmodel/netlink.h"

#include <gtest/gtest.h>
#include <linux/if_link.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "netmodel/link_change.h"

namespace hyper::netmodel::rtnl {
namespace {

// Every attribute of a message body (after `bodySize` bytes of fixed header), as type -> bytes.
std::vector<std::pair<int, std::string>> attrsOf(const std::string& bytes, size_t bodySize) {
  std::vector<std::pair<int, std::string>> out;
  const auto* h = reinterpret_cast<const nlmsghdr*>(bytes.data());
  size_t at = NLMSG_HDRLEN + NLMSG_ALIGN(bodySize);
  forEachAttr(bytes.data() + at, static_cast<int>(h->nlmsg_len - at), [&](const rtattr* a) {
    out.emplace_back(a->rta_type,
                     std::string(static_cast<const char*>(RTA_DATA(a)), RTA_PAYLOAD(a)));
  });
  return out;
}

TEST(NetlinkRequestTest, LaysOutHeaderBodyAndNestedAttributes) {
  ifinfomsg body{};
  body.ifi_family = AF_UNSPEC;
  Request r(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE, &body, sizeof body);
  r.putString(IFLA_IFNAME, "hb-x");
  size_t info = r.beginNest(IFLA_LINKINFO);
  r.putBytes(IFLA_INFO_KIND, "bridge");
  r.endNest(info);
  r.putU32(IFLA_MTU, 1400);
  r.setSeq(7);

  const std::string& bytes = r.bytes();
  const auto* h = reinterpret_cast<const nlmsghdr*>(bytes.data());
  EXPECT_EQ(h->nlmsg_len, bytes.size());
  EXPECT_EQ(bytes.size() % 4, 0u);
  EXPECT_EQ(h->nlmsg_type, RTM_NEWLINK);
  EXPECT_EQ(h->nlmsg_seq, 7u);
  auto attrs = attrsOf(bytes, sizeof body);
  ASSERT_EQ(attrs.size(), 3u);
  EXPECT_EQ(attrs[0].first, IFLA_IFNAME);
  EXPECT_EQ(attrs[0].second, std::string("hb-x\0", 5));  // a name goes with its NUL
  EXPECT_EQ(attrs[1].first, IFLA_LINKINFO);
  std::vector<std::string> inner;
  forEachAttr(attrs[1].second.data(), static_cast<int>(attrs[1].second.size()),
              [&](const rtattr* a) {
                EXPECT_EQ(a->rta_type, IFLA_INFO_KIND);
                inner.emplace_back(static_cast<const char*>(RTA_DATA(a)), RTA_PAYLOAD(a));
              });
  EXPECT_EQ(inner, std::vector<std::string>{"bridge"});
  uint32_t mtu = 0;
  ASSERT_EQ(attrs[2].second.size(), sizeof mtu);
  std::memcpy(&mtu, attrs[2].second.data(), sizeof mtu);
  EXPECT_EQ(mtu, 1400u);
}

// An NLMSG_ERROR answer: error code, capped copy of the request's header, then (with
// NLM_F_ACK_TLVS) attributes.
std::string errorAnswer(int error, const std::string& message, bool capped = true) {
  nlmsghdr request{};
  request.nlmsg_len = capped ? NLMSG_HDRLEN : NLMSG_HDRLEN + 8;
  std::string body(sizeof(nlmsgerr), '\0');
  nlmsgerr err{};
  err.error = -error;
  err.msg = request;
  std::memcpy(body.data(), &err, sizeof err);
  if (!capped) {
    body += std::string(8, 'x');  // the request's own payload, echoed
  }
  if (!message.empty()) {
    rtattr a{};
    a.rta_type = NLMSGERR_ATTR_MSG;
    a.rta_len = static_cast<unsigned short>(RTA_LENGTH(message.size() + 1));
    body.append(reinterpret_cast<const char*>(&a), sizeof a);
    body += message;
    body.push_back('\0');
    body.resize(NLMSG_ALIGN(body.size()), '\0');
  }
  nlmsghdr h{};
  h.nlmsg_type = NLMSG_ERROR;
  h.nlmsg_len = static_cast<uint32_t>(NLMSG_HDRLEN + body.size());
  h.nlmsg_flags = (capped ? NLM_F_CAPPED : 0) | (message.empty() ? 0 : NLM_F_ACK_TLVS);
  std::string out(reinterpret_cast<const char*>(&h), sizeof h);
  return out + body;
}

TEST(NetlinkErrorTest, ReadsAsIpPrintsIt) {
  auto text = [](const std::string& bytes) {
    return ipStyleError(reinterpret_cast<const nlmsghdr*>(bytes.data()));
  };
  EXPECT_EQ(text(errorAnswer(EEXIST, "")), "RTNETLINK answers: File exists");
  EXPECT_EQ(text(errorAnswer(EINVAL, "mtu greater than device maximum")),
            "Error: mtu greater than device maximum.");
  EXPECT_EQ(text(errorAnswer(EINVAL, "ends with a dot.")), "Error: ends with a dot.");
  EXPECT_EQ(text(errorAnswer(EINVAL, "uncapped", false)), "Error: uncapped.");
  const std::string ack = errorAnswer(0, "");
  EXPECT_EQ(errorOf(reinterpret_cast<const nlmsghdr*>(ack.data())), 0);
}

// A short or lying answer is read without going past its end.
TEST(NetlinkErrorTest, AShortAnswerIsAProtocolError) {
  nlmsghdr h{};
  h.nlmsg_type = NLMSG_ERROR;
  h.nlmsg_len = NLMSG_HDRLEN;
  EXPECT_EQ(errorOf(&h), EPROTO);
  std::string lying = errorAnswer(EINVAL, "x", false);
  auto* err = reinterpret_cast<nlmsgerr*>(lying.data() + NLMSG_HDRLEN);
  err->msg.nlmsg_len = 60000;  // claims an echoed request far longer than the answer
  EXPECT_EQ(ipStyleError(reinterpret_cast<const nlmsghdr*>(lying.data())),
            "RTNETLINK answers: Invalid argument");
}

TEST(LinkChangesTest, DescribesItsRequestsAsIpBatchLines) {
  LinkChanges c;
  c.deleteLink(0, "hb-old");
  c.addBridge(0, "hb-new");
  c.setAlias(0, "hb-new", "hyper:Network/new");
  c.setMtuUp(0, "hb-new", 1400);
  c.deleteAddress(0, "hb-new", {0x0a4d0001, 16});
  c.replaceAddress(0, "hb-new", {0x0a4e0001, 24});
  c.setMasterUp(1, "hv-a", "hb-new");
  c.setIsolatedPort(1, "hv-a");
  EXPECT_EQ(c.size(), 8u);
  EXPECT_EQ(c.describe(),
            "link del dev hb-old\n"
            "link add hb-new type bridge\n"
            "link set dev hb-new alias hyper:Network/new\n"
            "link set dev hb-new mtu 1400 up\n"
            "addr del 10.77.0.1/16 dev hb-new\n"
            "addr replace 10.78.0.1/24 dev hb-new\n"
            "link set dev hv-a master hb-new up\n"
            "link set dev hv-a type bridge_slave isolated on\n");
}

}  // namespace
}  // namespace hyper::netmodel::rtnl
