#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "base/status.h"
#include "reconciler/provider.h"

namespace hyper::providers::broker {

// Where the broker's rule file and socket are. hyperd and hyperctl take them from the
// environment (HYPER_BROKER_RULES, HYPER_BROKER_SOCKET) until they grow --broker-rules flags.
struct BrokerProviderConfig {
  std::string rulesPath = "/etc/hyper/broker-rules.json";
  std::string socketPath = "/run/hyper/broker.sock";

  static BrokerProviderConfig fromEnvironment();
};

// BrokerRule objects -> the rule file of hyper-broker (see docs/broker.md). Every BrokerRule is
// one rule of the file, named after the object; rules in the file that no BrokerRule names are
// left alone (hyper did not make them). apply rewrites the file atomically and makes the broker
// reload it (the admin request "reload"), and checks that the broker now runs exactly the bytes
// written. observe reads the file and asks the broker what it has loaded, so a hand edit of the
// file (reloaded or not) is drift.
class BrokerProvider : public Provider {
 public:
  explicit BrokerProvider(BrokerProviderConfig config) : config_(std::move(config)) {}

  std::string name() const override { return "broker"; }
  std::vector<std::string> kinds() const override { return {"BrokerRule"}; }
  void validate(const ValidateRequest& req, ValidateResponse& resp) const override;
  std::vector<Reference> references(const Object& object) const override;
  void observe(const ObserveRequest& req, ObserveResponse& resp) override;
  void plan(const PlanRequest& req, PlanResponse& resp) const override;
  void apply(const ApplyRequest& req, ApplyResponse& resp) override;

 private:
  BrokerProviderConfig config_;
  std::mutex fileMu_;  // applies for different rules share one file
};

// The rule of the file for a BrokerRule (its name and spec), normalised: the
// broker's defaults filled in, so that what the broker reports compares equal.
Result<Json> ruleFromObject(const std::string& name, const Json& spec);

}  // namespace hyper::providers::broker
