#include "netmodel/link_state.h"

#include <nlohmann/json.hpp>

namespace hyper::netmodel {

std::string ownerAlias(std::string_view networkName) {
  return "hyper:Network/" + std::string(networkName);
}

std::vector<std::string> LinkState::ipv4Strings() const {
  std::vector<std::string> out;
  out.reserve(ipv4.size());
  for (const auto& a : ipv4) {
    out.push_back(a.str());
  }
  return out;
}

const LinkState* LinkTable::find(std::string_view name) const {
  for (const auto& l : links) {
    if (l.name == name) {
      return &l;
    }
  }
  return nullptr;
}

Result<LinkTable> parseLinkTable(std::string_view ipJson) {
  using Json = nlohmann::json;
  Json doc = Json::parse(ipJson, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_array()) {
    return Status::error("parse ip -j addr show output <- not a JSON array");
  }
  LinkTable table;
  for (const auto& item : doc) {
    if (!item.is_object() || !item.contains("ifname") || !item["ifname"].is_string()) {
      continue;
    }
    LinkState link;
    link.name = item["ifname"].get<std::string>();
    if (auto it = item.find("mtu"); it != item.end() && it->is_number_integer()) {
      link.mtu = it->get<int>();
    }
    if (auto it = item.find("flags"); it != item.end() && it->is_array()) {
      for (const auto& f : *it) {
        link.up = link.up || (f.is_string() && f.get<std::string>() == "UP");
      }
    }
    if (auto it = item.find("ifalias"); it != item.end() && it->is_string()) {
      link.alias = it->get<std::string>();
    }
    if (auto it = item.find("linkinfo"); it != item.end() && it->is_object()) {
      if (auto kind = it->find("info_kind"); kind != it->end() && kind->is_string()) {
        link.kind = kind->get<std::string>();
      }
      if (auto port = it->find("info_slave_data"); port != it->end() && port->is_object()) {
        auto isolated = port->find("isolated");
        link.isolated = isolated != port->end() && isolated->is_boolean() && isolated->get<bool>();
      }
    }
    if (auto it = item.find("master"); it != item.end() && it->is_string()) {
      link.master = it->get<std::string>();
    }
    if (auto it = item.find("addr_info"); it != item.end() && it->is_array()) {
      for (const auto& a : *it) {
        if (!a.is_object() || !a.contains("family") || a["family"] != "inet") {
          continue;
        }
        auto local = a.find("local");
        auto prefix = a.find("prefixlen");
        if (local == a.end() || !local->is_string() || prefix == a.end() ||
            !prefix->is_number_integer()) {
          continue;
        }
        auto addr = parseIpv4(local->get<std::string>());
        int len = prefix->get<int>();
        if (!addr.isOk() || len < 0 || len > 32) {
          continue;
        }
        link.ipv4.push_back(Cidr{*addr, len});
      }
    }
    table.links.push_back(std::move(link));
  }
  return table;
}

}  // namespace hyper::netmodel
