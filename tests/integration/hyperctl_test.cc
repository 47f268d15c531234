// End-to-end tests of the real hyperctl binary. Each test makes a network namespace of its own and
// runs every command in it through `ip netns exec` (hyperctl, ip, nft); the test thread itself
// never changes namespace, so nothing here touches the machine's own interfaces or firewall.
// Manifests and the state directory live in a temp directory removed afterwards.

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include "host/command.h"
#include "reconciler/diagnostic.h"
#include "reconciler/object.h"
#include "reconciler/yaml_json.h"
#include "tests/integration/hyperctl_util.h"
#include "tests/integration/netns_util.h"

namespace hyper {
namespace {

using test::CommandRun;

// Line numbers matter: ValidateReportsTheBadCidrWithItsLocation points at a line of kBadBuilds.
const char* kLab = R"(apiVersion: hyper.dev/v1alpha1
kind: Network
metadata:
  name: lab
spec:
  cidr: 10.77.0.0/24
  mtu: 1400
  nat: true
)";

// Every field defaulted: gateway 10.78.0.1, bridge hb-builds, mtu 1500, nat false.
const char* kBuilds = R"(apiVersion: hyper.dev/v1alpha1
kind: Network
metadata:
  name: builds
spec:
  cidr: 10.78.0.0/24
)";

const char* kBadBuilds = R"(apiVersion: hyper.dev/v1alpha1
kind: Network
metadata:
  name: builds
spec:
  cidr: 10.78.0.0/33
)";
constexpr int kBadCidrLine = 6;

const char* kLabPolicy = R"(apiVersion: hyper.dev/v1alpha1
kind: NetworkPolicy
metadata:
  name: lab-egress
spec:
  network: lab
  egress:
    mode: allowlist
    allow:
      - {cidr: 203.0.113.0/24, ports: [443], protocol: tcp}
)";

const char* kBuildsSealed = R"(apiVersion: hyper.dev/v1alpha1
kind: NetworkPolicy
metadata:
  name: builds-sealed
spec:
  network: builds
  egress: {mode: none}
  ingress: {mode: none}
)";

std::string docs(const std::vector<std::string>& documents) {
  std::string out;
  for (const auto& d : documents) {
    out += (out.empty() ? "" : "---\n") + d;
  }
  return out;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Values the kernel changes on its own between two reads, which are not state anyone set: bridge
// timers count down, IPv6 duplicate address detection clears "tentative" on the link-local
// address a new bridge gets, and counters count.
void dropVolatile(Json& value) {
  if (value.is_array()) {
    for (auto& child : value) {
      dropVolatile(child);
    }
    return;
  }
  if (!value.is_object()) {
    return;
  }
  for (auto it = value.begin(); it != value.end();) {
    const std::string& key = it.key();
    if (key == "tentative" || key == "packets" || key == "bytes" || key.ends_with("_timer")) {
      it = value.erase(it);
    } else {
      dropVolatile(*it);
      ++it;
    }
  }
}

// The rows of a `hyperctl get` table, each split on whitespace (no cell contains a space).
std::vector<std::vector<std::string>> tableRows(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == ' ') {
      continue;  // detail lines under the table are indented
    }
    std::istringstream cells(line);
    std::vector<std::string> row;
    std::string cell;
    while (cells >> cell) {
      row.push_back(cell);
    }
    rows.push_back(row);
  }
  return rows;
}

std::vector<std::string> itemNames(const Json& list) {
  std::vector<std::string> names;
  if (list.contains("items") && list["items"].is_array()) {
    for (const auto& item : list["items"]) {
      names.push_back(item["metadata"].value("name", ""));
    }
  }
  return names;
}

// Holds the state directory's lock the way another writer would: flock on <stateDir>/lock (see
// reconciler/state_lock.h), with the holder line a StateLock writes. Released on destruction.
class HeldStateLock {
 public:
  static Result<std::unique_ptr<HeldStateLock>> take(const std::string& stateDir,
                                                     const std::string& purpose) {
    std::error_code ec;
    std::filesystem::create_directories(stateDir, ec);
    if (ec) {
      return Status::error("create " + stateDir + ": " + ec.message());
    }
    std::string path = stateDir + "/lock";
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
      return Status::error("open " + path + ": " + std::strerror(errno));
    }
    auto held = std::unique_ptr<HeldStateLock>(new HeldStateLock(fd));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      return Status::error("flock " + path + ": " + std::strerror(errno));
    }
    std::string holder = "pid=" + std::to_string(::getpid()) + " purpose=" + purpose + "\n";
    if (::ftruncate(fd, 0) != 0 ||
        ::pwrite(fd, holder.data(), holder.size(), 0) != static_cast<ssize_t>(holder.size())) {
      return Status::error("write " + path + ": " + std::strerror(errno));
    }
    return held;
  }
  ~HeldStateLock() { ::close(fd_); }
  HeldStateLock(const HeldStateLock&) = delete;
  HeldStateLock& operator=(const HeldStateLock&) = delete;

 private:
  explicit HeldStateLock(int fd) : fd_(fd) {}
  int fd_;
};

class HyperctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root (network namespaces)";
    }
    auto ns = test::NamedNetns::create(test::uniqueNetnsName("ctl"));
    ASSERT_TRUE(ns.isOk()) << ns.status().message();
    ns_ = std::move(*ns);
    ASSERT_TRUE(inNs({"ip", "link", "set", "lo", "up"}).isOk());
    auto tmp = test::TempDir::create("hyperctl-test");
    ASSERT_TRUE(tmp.isOk()) << tmp.status().message();
    tmp_ = std::move(*tmp);
    manifests_ = tmp_->path() + "/manifests";
    std::filesystem::create_directories(manifests_);
    // Not created up front: some tests check that hyperctl did not create it.
    stateDir_ = tmp_->path() + "/state";
    cli_ = std::make_unique<test::Hyperctl>(ns_->name(), stateDir_);
  }

  Result<std::string> inNs(const std::vector<std::string>& argv) const { return ns_->run(argv); }

  Result<Json> jsonInNs(const std::vector<std::string>& argv) const {
    HYPER_ASSIGN_OR_RETURN(std::string out, inNs(argv));
    Json parsed = Json::parse(out, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_discarded()) {
      return Status::error("not JSON from " + argv[0] + ": " + out);
    }
    return parsed;
  }

  void writeManifest(const std::string& file, const std::string& content) const {
    Status s = tmp_->write("manifests/" + file, content);
    ASSERT_TRUE(s.isOk()) << s.message();
  }

  CommandRun hyperctl(const std::vector<std::string>& args) const { return cli_->run(args); }
  CommandRun apply(std::vector<std::string> flags = {}) const {
    std::vector<std::string> args = {"apply", "-f", manifests_};
    args.insert(args.end(), flags.begin(), flags.end());
    return cli_->run(args);
  }
  CommandRun diff(std::vector<std::string> flags = {}) const {
    std::vector<std::string> args = {"diff", "-f", manifests_};
    args.insert(args.end(), flags.begin(), flags.end());
    return cli_->run(args);
  }

  // The interface `name` from `ip -j link show`, or nullopt when there is none.
  std::optional<Json> link(const std::string& name) const {
    auto all = jsonInNs({"ip", "-j", "link", "show"});
    EXPECT_TRUE(all.isOk()) << all.status().message();
    if (all.isOk()) {
      for (const auto& l : *all) {
        if (l.value("ifname", "") == name) {
          return l;
        }
      }
    }
    return std::nullopt;
  }

  std::set<std::string> linkNames() const {
    std::set<std::string> names;
    auto all = jsonInNs({"ip", "-j", "link", "show"});
    EXPECT_TRUE(all.isOk()) << all.status().message();
    if (all.isOk()) {
      for (const auto& l : *all) {
        names.insert(l.value("ifname", ""));
      }
    }
    return names;
  }

  // "10.77.0.1/24"-style IPv4 addresses of `name`.
  std::vector<std::string> ipv4(const std::string& name) const {
    std::vector<std::string> out;
    auto all = jsonInNs({"ip", "-j", "addr", "show", "dev", name});
    EXPECT_TRUE(all.isOk()) << all.status().message();
    if (all.isOk()) {
      for (const auto& l : *all) {
        for (const auto& a : l.value("addr_info", Json::array())) {
          if (a.value("family", "") == "inet") {
            out.push_back(a.value("local", "") + "/" + std::to_string(a.value("prefixlen", -1)));
          }
        }
      }
    }
    return out;
  }

  bool tableExists(const std::string& family, const std::string& name) const {
    auto code = ns_->exitCode({"nft", "list", "table", family, name});
    EXPECT_TRUE(code.isOk()) << code.status().message();
    return code.isOk() && *code == 0;
  }

  // Everything an apply may change in the namespace: the whole nftables ruleset and every
  // interface with its addresses and details, minus what changes by itself.
  Json hostState() const {
    auto ruleset = jsonInNs({"nft", "-j", "list", "ruleset"});
    auto addresses = jsonInNs({"ip", "-d", "-j", "addr", "show"});
    EXPECT_TRUE(ruleset.isOk()) << ruleset.status().message();
    EXPECT_TRUE(addresses.isOk()) << addresses.status().message();
    Json state = {{"ruleset", ruleset.isOk() ? *ruleset : Json()},
                  {"addresses", addresses.isOk() ? *addresses : Json()}};
    dropVolatile(state);
    return state;
  }

  // `get KIND -o json`, parsed.
  Json getJson(const std::string& kind) const {
    CommandRun r = hyperctl({"get", kind, "-o", "json"});
    EXPECT_EQ(r.exitCode, 0) << r.describe();
    Json parsed = Json::parse(r.out, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(parsed.is_discarded()) << r.describe();
    return parsed;
  }

  std::unique_ptr<test::NamedNetns> ns_;
  std::unique_ptr<test::TempDir> tmp_;
  std::string manifests_;
  std::string stateDir_;
  std::unique_ptr<test::Hyperctl> cli_;
};

TEST_F(HyperctlTest, ValidateAcceptsAValidDirectory) {
  writeManifest("networks.yaml", docs({kLab, kBuilds}));
  writeManifest("policies.yaml", kLabPolicy);
  CommandRun r = hyperctl({"validate", "-f", manifests_});
  EXPECT_EQ(r.exitCode, 0) << r.describe();
  EXPECT_TRUE(contains(r.out, "3 objects valid (revision dir:")) << r.describe();
  EXPECT_EQ(r.err, "");

  // The shipped examples stay valid.
  r = hyperctl({"validate", "-f", std::string(HYPER_SOURCE_DIR) + "/manifests/examples"});
  EXPECT_EQ(r.exitCode, 0) << r.describe();
}

TEST_F(HyperctlTest, ValidateReportsTheBadCidrWithItsLocation) {
  writeManifest("networks.yaml", docs({kLab, kBadBuilds}));
  CommandRun r = hyperctl({"validate", "-f", manifests_});
  EXPECT_EQ(r.exitCode, 1) << r.describe();
  EXPECT_EQ(r.out, "") << r.describe();
  // kBadBuilds starts after kLab and the separator.
  int line = 8 + 1 + kBadCidrLine;
  std::regex located(manifests_ + "/networks\\.yaml:" + std::to_string(line) +
                     ":[0-9]+: error: Network/builds: spec\\.cidr: [^\n]*10\\.78\\.0\\.0/33");
  EXPECT_TRUE(std::regex_search(r.err, located)) << r.describe();
  EXPECT_TRUE(contains(r.err, "1 problem found")) << r.describe();
}

TEST_F(HyperctlTest, ApplyCreatesBridgesAndTheNftablesTable) {
  writeManifest("networks.yaml", docs({kLab, kBuilds}));
  writeManifest("policies.yaml", kLabPolicy);
  CommandRun r = apply();
  ASSERT_EQ(r.exitCode, 0) << r.describe();
  EXPECT_TRUE(contains(r.out, "Network/lab created")) << r.describe();
  EXPECT_TRUE(contains(r.out, "NetworkPolicy/lab-egress created")) << r.describe();
  EXPECT_TRUE(contains(r.out, "Apply complete: 3 actions")) << r.describe();

  auto lab = link("hb-lab");
  ASSERT_TRUE(lab.has_value()) << "no bridge hb-lab";
  auto flags = (*lab)["flags"].get<std::vector<std::string>>();
  EXPECT_NE(std::find(flags.begin(), flags.end(), "UP"), flags.end()) << lab->dump();
  EXPECT_EQ((*lab)["mtu"], 1400);
  EXPECT_EQ(lab->value("ifalias", ""), "hyper:Network/lab");
  EXPECT_EQ(ipv4("hb-lab"), std::vector<std::string>{"10.77.0.1/24"});

  auto builds = link("hb-builds");
  ASSERT_TRUE(builds.has_value()) << "no bridge hb-builds";
  flags = (*builds)["flags"].get<std::vector<std::string>>();
  EXPECT_NE(std::find(flags.begin(), flags.end(), "UP"), flags.end()) << builds->dump();
  EXPECT_EQ((*builds)["mtu"], 1500);
  EXPECT_EQ(ipv4("hb-builds"), std::vector<std::string>{"10.78.0.1/24"});

  auto table = jsonInNs({"nft", "-j", "list", "table", "inet", "hyper"});
  ASSERT_TRUE(table.isOk()) << table.status().message();
  std::map<std::string, Json> maps;
  std::set<std::string> chains;
  bool masquerade = false;
  for (const auto& entry : (*table)["nftables"]) {
    if (entry.contains("map")) {
      // Listed in the kernel's hash order.
      std::vector<Json> elements = entry["map"].value("elem", Json::array());
      std::sort(elements.begin(), elements.end());
      maps[entry["map"]["name"].get<std::string>()] = elements;
    } else if (entry.contains("chain")) {
      chains.insert(entry["chain"]["name"].get<std::string>());
    } else if (entry.contains("rule") && entry["rule"]["chain"] == "nat-postrouting") {
      masquerade = masquerade || contains(entry["rule"]["expr"].dump(), "masquerade");
    }
  }
  // Each bridge leads to its network's chain, in both directions.
  auto jump = [](const char* bridge, const std::string& chain) {
    return Json::array({bridge, {{"jump", {{"target", chain}}}}});
  };
  EXPECT_EQ(maps["egress-nets"],
            Json::array({jump("hb-builds", "net-builds-egress"), jump("hb-lab", "net-lab-egress")}))
      << table->dump(1);
  EXPECT_EQ(maps["ingress-nets"], Json::array({jump("hb-builds", "net-builds-ingress"),
                                               jump("hb-lab", "net-lab-ingress")}))
      << table->dump(1);
  EXPECT_TRUE(chains.count("net-lab-egress")) << table->dump(1);
  EXPECT_TRUE(chains.count("pol-lab-egress-egress")) << table->dump(1);
  EXPECT_TRUE(masquerade) << "no masquerade rule for the nat network\n" << table->dump(1);
}

TEST_F(HyperctlTest, SecondApplyChangesNothing) {
  writeManifest("networks.yaml", docs({kLab, kBuilds}));
  writeManifest("policies.yaml", kLabPolicy);
  CommandRun first = apply();
  ASSERT_EQ(first.exitCode, 0) << first.describe();
  Json before = hostState();
  Json inventoryBefore = getJson("networks");
  ASSERT_EQ(itemNames(inventoryBefore), (std::vector<std::string>{"builds", "lab"}));

  CommandRun second = apply();
  EXPECT_EQ(second.exitCode, 0) << second.describe();
  EXPECT_EQ(second.out, "No changes. The host matches the desired state.\n") << second.describe();
  EXPECT_EQ(second.err, "");
  // Same rule handles, same addresses, same interfaces: nothing was recreated.
  EXPECT_EQ(hostState().dump(1), before.dump(1));
  EXPECT_EQ(getJson("networks"), inventoryBefore);  // appliedAt and revision untouched

  CommandRun d = diff();
  EXPECT_EQ(d.exitCode, 0) << d.describe();
  EXPECT_TRUE(contains(d.out, "No changes.")) << d.describe();
}

TEST_F(HyperctlTest, BridgeDeletedByHandIsDriftAndApplyRepairsIt) {
  writeManifest("networks.yaml", docs({kLab, kBuilds}));
  ASSERT_EQ(apply().exitCode, 0);
  ASSERT_TRUE(inNs({"ip", "link", "del", "hb-lab"}).isOk());

  CommandRun d = diff();
  EXPECT_EQ(d.exitCode, 2) << d.describe();
  EXPECT_TRUE(contains(d.out, "Network/lab will be created (drift: bridge hb-lab deleted by hand)"))
      << d.describe();
  EXPECT_FALSE(contains(d.out, "Network/builds")) << "only lab drifted\n" << d.describe();
  EXPECT_TRUE(contains(d.out, "Plan: 1 to create, 0 to update, 0 to replace, 0 to delete."))
      << d.describe();

  CommandRun r = apply();
  EXPECT_EQ(r.exitCode, 0) << r.describe();
  EXPECT_TRUE(contains(r.out, "Network/lab created")) << r.describe();
  auto lab = link("hb-lab");
  ASSERT_TRUE(lab.has_value()) << "apply did not recreate hb-lab\n" << r.describe();
  EXPECT_EQ((*lab)["mtu"], 1400);
  EXPECT_EQ(ipv4("hb-lab"), std::vector<std::string>{"10.77.0.1/24"});

  d = diff();
  EXPECT_EQ(d.exitCode, 0) << d.describe();
}

TEST_F(HyperctlTest, PruneDeletesExactlyWhatLeftTheSource) {
  // Things hyper did not make, which it must leave as they are.
  ASSERT_TRUE(inNs({"ip", "link", "add", "hand0", "type", "bridge"}).isOk());
  ASSERT_TRUE(inNs({"nft", "add", "table", "inet", "other"}).isOk());
  ASSERT_TRUE(inNs({"nft", "add", "chain", "inet", "other", "input",
                    "{ type filter hook input priority 5; policy accept; }"})
                  .isOk());
  ASSERT_TRUE(inNs({"nft", "add", "rule", "inet", "other", "input", "tcp", "dport", "2222", "drop"})
                  .isOk());
  auto other = inNs({"nft", "-j", "list", "table", "inet", "other"});
  ASSERT_TRUE(other.isOk()) << other.status().message();
  auto hand0 = link("hand0");
  ASSERT_TRUE(hand0.has_value());

  writeManifest("lab.yaml", docs({kLab, kLabPolicy}));
  writeManifest("builds.yaml",
                docs({std::string(kBuilds) + "  nat: true\n", std::string(kBuildsSealed)}));
  CommandRun r = apply();
  ASSERT_EQ(r.exitCode, 0) << r.describe();
  ASSERT_EQ(linkNames(), (std::set<std::string>{"lo", "hand0", "hb-lab", "hb-builds"}));
  auto hyperTable = inNs({"nft", "list", "table", "inet", "hyper"});
  ASSERT_TRUE(hyperTable.isOk()) << hyperTable.status().message();
  ASSERT_TRUE(contains(*hyperTable, "net-builds-egress")) << *hyperTable;
  ASSERT_TRUE(contains(*hyperTable, "pol-builds-sealed-egress")) << *hyperTable;
  ASSERT_TRUE(contains(*hyperTable, "10.78.0.0/24")) << *hyperTable;

  std::filesystem::remove(manifests_ + "/builds.yaml");

  // Without --prune the objects that left the source are reported and kept.
  r = apply();
  EXPECT_EQ(r.exitCode, 0) << r.describe();
  EXPECT_TRUE(contains(r.out, "Orphaned")) << r.describe();
  EXPECT_TRUE(contains(r.out, "Network/builds")) << r.describe();
  EXPECT_TRUE(contains(r.out, "No changes.")) << r.describe();
  EXPECT_EQ(linkNames(), (std::set<std::string>{"lo", "hand0", "hb-lab", "hb-builds"}));
  auto kept = inNs({"nft", "list", "table", "inet", "hyper"});
  ASSERT_TRUE(kept.isOk());
  EXPECT_EQ(*kept, *hyperTable);

  r = apply({"--prune"});
  EXPECT_EQ(r.exitCode, 0) << r.describe();
  EXPECT_TRUE(contains(r.out, "Network/builds deleted")) << r.describe();
  EXPECT_TRUE(contains(r.out, "NetworkPolicy/builds-sealed deleted")) << r.describe();
  EXPECT_TRUE(contains(r.out, "Apply complete: 2 actions")) << r.describe();
  EXPECT_EQ(linkNames(), (std::set<std::string>{"lo", "hand0", "hb-lab"}));

  auto pruned = inNs({"nft", "list", "table", "inet", "hyper"});
  ASSERT_TRUE(pruned.isOk()) << pruned.status().message();
  EXPECT_FALSE(contains(*pruned, "builds")) << *pruned;
  EXPECT_FALSE(contains(*pruned, "10.78.0.0")) << *pruned;
  EXPECT_TRUE(contains(*pruned, "net-lab-egress")) << *pruned;
  EXPECT_TRUE(contains(*pruned, "pol-lab-egress-egress")) << *pruned;
  EXPECT_TRUE(contains(*pruned, "10.77.0.0/24")) << *pruned;

  // What hyper does not own is untouched: hand0 as made, table other with the same rules.
  auto hand0After = link("hand0");
  ASSERT_TRUE(hand0After.has_value()) << "hand0 was removed";
  EXPECT_EQ(hand0After->dump(), hand0->dump());
  auto otherAfter = inNs({"nft", "-j", "list", "table", "inet", "other"});
  ASSERT_TRUE(otherAfter.isOk()) << "table inet other was removed";
  EXPECT_EQ(*otherAfter, *other);

  EXPECT_EQ(itemNames(getJson("networks")), std::vector<std::string>{"lab"});
  EXPECT_EQ(itemNames(getJson("networkpolicies")), std::vector<std::string>{"lab-egress"});
  CommandRun d = diff({"--prune"});
  EXPECT_EQ(d.exitCode, 0) << d.describe();
}

TEST_F(HyperctlTest, PruneOfEverythingIsRefusedWithoutYes) {
  writeManifest("lab.yaml", kLab);
  writeManifest("builds.yaml", kBuilds);
  CommandRun r = apply();
  ASSERT_EQ(r.exitCode, 0) << r.describe();
  ASSERT_EQ(linkNames(), (std::set<std::string>{"lo", "hb-lab", "hb-builds"}));

  // Every manifest gone (one file that says nothing is left): refused, nothing deleted.
  std::filesystem::remove(manifests_ + "/lab.yaml");
  std::filesystem::remove(manifests_ + "/builds.yaml");
  writeManifest("empty.yaml", "# nothing here\n");
  r = apply({"--prune"});
  EXPECT_EQ(r.exitCode, 1) << r.describe();
  EXPECT_TRUE(contains(r.err, "deletes every managed object (2 of 2)")) << r.describe();
  EXPECT_TRUE(contains(r.err, "nothing was applied")) << r.describe();
  EXPECT_TRUE(contains(r.err, "--yes")) << r.describe();
  EXPECT_EQ(linkNames(), (std::set<std::string>{"lo", "hb-lab", "hb-builds"}));
  EXPECT_EQ(itemNames(getJson("networks")), (std::vector<std::string>{"builds", "lab"}));
  // A dry run says so and changes nothing.
  r = apply({"--prune", "--dry-run"});
  EXPECT_EQ(r.exitCode, 0) << r.describe();
  EXPECT_TRUE(contains(r.err, "needs --yes")) << r.describe();

  // The near miss: one of the two kept is not "everything", and applies without --yes.
  writeManifest("lab.yaml", kLab);
  r = apply({"--prune"});
  EXPECT_EQ(r.exitCode, 0) << r.describe();
  EXPECT_TRUE(contains(r.out, "Network/builds deleted")) << r.describe();
  EXPECT_EQ(linkNames(), (std::set<std::string>{"lo", "hb-lab"}));

  // And the last one, with --yes.
  std::filesystem::remove(manifests_ + "/lab.yaml");
  r = apply({"--prune"});
  EXPECT_EQ(r.exitCode, 1) << r.describe();
  EXPECT_TRUE(contains(r.err, "every managed object (1 of 1)")) << r.describe();
  EXPECT_EQ(linkNames(), (std::set<std::string>{"lo", "hb-lab"}));
  r = apply({"--prune", "--yes"});
  EXPECT_EQ(r.exitCode, 0) << r.describe();
  EXPECT_TRUE(contains(r.out, "Network/lab deleted")) << r.describe();
  EXPECT_EQ(linkNames(), (std::set<std::string>{"lo"}));
  EXPECT_TRUE(itemNames(getJson("networks")).empty());
}

TEST_F(HyperctlTest, InvalidDirectoryAppliesNothing) {
  writeManifest("good.yaml", kLab);
  writeManifest("bad.yaml", kBadBuilds);
  CommandRun r = apply();
  EXPECT_EQ(r.exitCode, 1) << r.describe();
  EXPECT_EQ(r.out, "") << "a plan was printed for an invalid revision\n" << r.describe();
  EXPECT_TRUE(contains(r.err, manifests_ + "/bad.yaml:" + std::to_string(kBadCidrLine) + ":"))
      << r.describe();
  EXPECT_TRUE(contains(r.err, "nothing was applied")) << r.describe();

  EXPECT_FALSE(link("hb-lab").has_value()) << "the valid document was applied";
  EXPECT_FALSE(tableExists("inet", "hyper"));
  EXPECT_FALSE(std::filesystem::exists(stateDir_)) << "an invalid revision created state";

  CommandRun get = hyperctl({"get", "networks"});
  EXPECT_EQ(get.exitCode, 0) << get.describe();
  EXPECT_EQ(get.out, "No Network objects are managed by hyper (state dir " + stateDir_ + ").\n");
  Json list = getJson("networks");
  EXPECT_EQ(list["kind"], "List") << list.dump(1);
  EXPECT_EQ(list["items"], Json::array()) << list.dump(1);
}

TEST_F(HyperctlTest, GetShowsTheAppliedObjectsInEveryFormat) {
  writeManifest("networks.yaml", docs({kLab, kBuilds}));
  writeManifest("policies.yaml", kLabPolicy);
  ASSERT_EQ(apply().exitCode, 0);

  Json list = getJson("networks");
  EXPECT_EQ(list["apiVersion"], "hyper.dev/v1alpha1");
  EXPECT_EQ(list["kind"], "List");
  ASSERT_EQ(itemNames(list), (std::vector<std::string>{"builds", "lab"})) << list.dump(1);
  const Json& lab = list["items"][1];
  EXPECT_EQ(lab["kind"], "Network");
  EXPECT_EQ(lab["spec"], Json::parse(R"({"cidr": "10.77.0.0/24", "mtu": 1400, "nat": true})"));
  EXPECT_EQ(lab["status"]["state"], "InSync") << lab.dump(1);
  EXPECT_EQ(lab["status"]["observed"]["bridge"], "hb-lab") << lab.dump(1);
  EXPECT_EQ(lab["status"]["observed"]["mtu"], 1400) << lab.dump(1);
  EXPECT_EQ(lab["status"]["observed"]["addresses"], Json::array({"10.77.0.1/24"})) << lab.dump(1);
  EXPECT_EQ(list["items"][0]["status"]["state"], "InSync") << list.dump(1);

  // YAML carries the same document.
  CommandRun yaml = hyperctl({"get", "networks", "-o", "yaml"});
  ASSERT_EQ(yaml.exitCode, 0) << yaml.describe();
  Diagnostics diags;
  auto parsed =
      parseYamlDocuments(yaml.out, std::make_shared<const std::string>("get.yaml"), diags);
  ASSERT_FALSE(diags.hasErrors()) << diags.format() << yaml.describe();
  ASSERT_EQ(parsed.size(), 1u) << yaml.describe();
  EXPECT_EQ(parsed[0].value.dump(1), list.dump(1));

  // One object by name is the object itself, not a list.
  CommandRun one = hyperctl({"get", "networks", "lab", "-o", "json"});
  ASSERT_EQ(one.exitCode, 0) << one.describe();
  Json labOnly = Json::parse(one.out, nullptr, false);
  EXPECT_EQ(labOnly, lab) << one.describe();

  Json policies = getJson("networkpolicies");
  ASSERT_EQ(itemNames(policies), std::vector<std::string>{"lab-egress"}) << policies.dump(1);
  EXPECT_EQ(policies["items"][0]["spec"]["network"], "lab");
  EXPECT_EQ(policies["items"][0]["status"]["state"], "InSync") << policies.dump(1);

  // The table shows the effective values, defaults included.
  CommandRun table = hyperctl({"get", "networks"});
  ASSERT_EQ(table.exitCode, 0) << table.describe();
  auto rows = tableRows(table.out);
  ASSERT_EQ(rows.size(), 3u) << table.describe();
  using Row = std::vector<std::string>;
  EXPECT_EQ(Row(rows[0].begin(), rows[0].begin() + 7),
            (Row{"NAME", "CIDR", "GATEWAY", "BRIDGE", "NAT", "MTU", "STATUS"}));
  EXPECT_EQ(Row(rows[1].begin(), rows[1].begin() + 7),
            (Row{"builds", "10.78.0.0/24", "10.78.0.1", "hb-builds", "false", "1500", "InSync"}))
      << table.describe();
  EXPECT_EQ(Row(rows[2].begin(), rows[2].begin() + 7),
            (Row{"lab", "10.77.0.0/24", "10.77.0.1", "hb-lab", "true", "1400", "InSync"}))
      << table.describe();

  CommandRun missing = hyperctl({"get", "networks", "nope"});
  EXPECT_EQ(missing.exitCode, 1) << missing.describe();
  EXPECT_EQ(missing.out, "");
  EXPECT_EQ(missing.err,
            "error: Network/nope is not managed by hyper (state dir " + stateDir_ + ")\n");
  missing = hyperctl({"get", "networks", "nope", "-o", "json"});
  EXPECT_EQ(missing.exitCode, 1) << missing.describe();
  EXPECT_EQ(missing.out, "") << "no JSON document for a missing object";
}

TEST_F(HyperctlTest, HeldLockRefusesApplyAndChangesNothing) {
  writeManifest("networks.yaml", docs({kLab, kBuilds}));
  {
    auto held = HeldStateLock::take(stateDir_, "hyperd reconcile");
    ASSERT_TRUE(held.isOk()) << held.status().message();
    CommandRun r = apply();
    EXPECT_EQ(r.exitCode, 1) << r.describe();
    EXPECT_TRUE(contains(r.err, "error: state directory " + stateDir_ +
                                    " is locked by another writer (pid " +
                                    std::to_string(::getpid()) + ", hyperd reconcile)"))
        << r.describe();
    EXPECT_EQ(r.out, "") << "a plan was made without the lock\n" << r.describe();
    EXPECT_EQ(linkNames(), std::set<std::string>{"lo"});
    EXPECT_FALSE(tableExists("inet", "hyper"));
    EXPECT_FALSE(std::filesystem::exists(stateDir_ + "/state.db"))
        << "the inventory was opened without the lock";
  }
  // The refusal was the lock's doing: released, the same apply goes through.
  CommandRun r = apply();
  EXPECT_EQ(r.exitCode, 0) << r.describe();
  EXPECT_TRUE(link("hb-lab").has_value());
  EXPECT_TRUE(tableExists("inet", "hyper"));
}

TEST_F(HyperctlTest, DryRunPrintsThePlanAndChangesNothing) {
  writeManifest("networks.yaml", kLab);
  ASSERT_EQ(apply().exitCode, 0);
  Json before = hostState();
  Json inventoryBefore = getJson("networks");

  std::string moved = kLab;
  moved.replace(moved.find("mtu: 1400"), 9, "mtu: 1300");
  writeManifest("networks.yaml", docs({moved, kBuilds}));
  CommandRun r = apply({"--dry-run"});
  EXPECT_EQ(r.exitCode, 0) << r.describe();
  EXPECT_TRUE(contains(r.out, "+ Network/builds will be created")) << r.describe();
  EXPECT_TRUE(contains(r.out, "~ Network/lab will be updated in place")) << r.describe();
  EXPECT_TRUE(contains(r.out, "~ spec.mtu: 1400 -> 1300")) << r.describe();
  EXPECT_TRUE(contains(r.out, "Plan: 1 to create, 1 to update, 0 to replace, 0 to delete."))
      << r.describe();
  EXPECT_TRUE(contains(r.out, "Dry run: nothing was applied.")) << r.describe();
  EXPECT_FALSE(contains(r.out, "Apply complete")) << r.describe();

  // As JSON the plan is the whole of stdout.
  CommandRun j = apply({"--dry-run", "-o", "json"});
  EXPECT_EQ(j.exitCode, 0) << j.describe();
  Json plan = Json::parse(j.out, nullptr, false);
  ASSERT_FALSE(plan.is_discarded()) << j.describe();
  EXPECT_EQ(plan["summary"],
            Json::parse(R"({"create": 1, "update": 1, "replace": 0, "delete": 0})"));

  EXPECT_EQ(hostState().dump(1), before.dump(1));
  EXPECT_FALSE(link("hb-builds").has_value());
  EXPECT_EQ(getJson("networks"), inventoryBefore);
  EXPECT_EQ(diff().exitCode, 2) << "the changes are still pending";
}

}  // namespace
}  // namespace hyper

namespace hyper {
namespace {

// `hyperctl logs` prints what a guest wrote: hostile bytes. Escape sequences reach the terminal
// escaped (a guest cannot retitle the window, clear the screen or fake a prompt), the rotated
// log comes first, --raw gives the bytes as they are, and a name that is no VM name never
// becomes a path. No VM is needed: the console log is a file in the VM's run dir.
TEST(HyperctlLogsTest, GuestBytesAreEscapedUnlessRawAndTheNameIsChecked) {
  auto tmp = test::TempDir::create("logs");
  ASSERT_TRUE(tmp.isOk()) << tmp.status().message();
  const std::string runDir = (*tmp)->path() + "/run";
  ASSERT_TRUE((*tmp)->write("run/web-1/console.log.1", "booting\r\n").isOk());
  const std::string hostile = "\x1b]0;pwned\x07hi \x1b[2J\\x41 \xff\xfe caf\xc3\xa9\r\nlast";
  ASSERT_TRUE((*tmp)->write("run/web-1/console.log", hostile).isOk());
  auto logs = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {"env", "HYPER_VM_RUN_DIR=" + runDir, HYPERCTL_PATH, "logs"};
    argv.insert(argv.end(), args.begin(), args.end());
    return host::runCommand(argv);
  };
  auto r = logs({"vm/web-1"});
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_EQ(r->exitCode, 0) << r->err;
  EXPECT_EQ(r->out, "booting\n\\x1b]0;pwned\\x07hi \\x1b[2J\\\\x41 \\xff\\xfe caf\xc3\xa9\nlast");
  EXPECT_EQ(r->out.find('\x1b'), std::string::npos);

  r = logs({"--raw", "vm/web-1"});
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_EQ(r->exitCode, 0) << r->err;
  EXPECT_EQ(r->out, "booting\r\n" + hostile);

  for (std::string bad : {"vm/../web-1", "vm/a/b", "vm/\x1b[2J"}) {
    r = logs({bad});
    ASSERT_TRUE(r.isOk()) << r.status().message();
    EXPECT_EQ(r->exitCode, 1) << bad << "\n" << r->out;
    EXPECT_NE(r->err.find("is not a VM name"), std::string::npos) << r->err;
    EXPECT_EQ(r->err.find('\x1b'), std::string::npos) << "an escape reached stderr";
  }

  // The kinds' records say which keep logs.
  r = logs({"network/lab"});
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_EQ(r->exitCode, 1);
  EXPECT_NE(r->err.find("Network keeps no logs (vms or builds do)"), std::string::npos) << r->err;
  r = logs({"gadget/x"});
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_EQ(r->exitCode, 1);
  EXPECT_NE(r->err.find("expected KIND/NAME (vms or builds)"), std::string::npos) << r->err;
  r = logs({"vm/web-2"});
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_EQ(r->exitCode, 1);
  EXPECT_NE(r->err.find("no log for VM web-2 at " + runDir + "/web-2/console.log"),
            std::string::npos)
      << r->err;
}

}  // namespace
}  // namespace hyper
