// The BrokerRule provider's registration (providers/builtin.cc lists it).

#include "providers/broker/broker_provider.h"
#include "reconciler/kind_registry.h"

namespace hyper::providers {

ProviderRecord provider_broker() {
  KindRecord rule;
  rule.kind = "BrokerRule";
  rule.plural = "brokerrules";
  rule.schema = embeddedSchemaText("brokerrule.schema.json");
  rule.columns = {fieldColumn("COMMAND", "command"), fieldColumn("WORKSPACE", "workspace"),
                  fieldColumn("CONCURRENCY", "concurrency")};

  ProviderRecord record;
  record.name = "broker";
  record.kinds = {std::move(rule)};
  record.settingsSchema = R"json({
    "type": "object",
    "additionalProperties": false,
    "description": "a mapping with rules (hyper-broker's rule file) and socket",
    "properties": {
      "rules": {"type": "string", "minLength": 1, "description": "hyper-broker's rule file, written for BrokerRule objects (default $HYPER_BROKER_RULES or /etc/hyper/broker-rules.json)"},
      "socket": {"type": "string", "minLength": 1, "description": "hyper-broker's socket (default $HYPER_BROKER_SOCKET or /run/hyper/broker.sock)"}
    }
  })json";
  record.make = [](const Json& settings, const std::string&) -> Result<std::unique_ptr<Provider>> {
    broker::BrokerProviderConfig config = broker::BrokerProviderConfig::fromEnvironment();
    config.rulesPath = settings.value("rules", config.rulesPath);
    config.socketPath = settings.value("socket", config.socketPath);
    return std::unique_ptr<Provider>(std::make_unique<broker::BrokerProvider>(config));
  };
  return record;
}

}  // namespace hyper::providers
