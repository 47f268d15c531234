#include "netmodel/link_state.h"

#include <algorithm>
#include <tuple>
#include <utility>

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

LinkIndex::LinkIndex(const LinkTable& table) : table_(table) {
  const auto& links = table_.links;
  byName_.reserve(links.size());
  for (size_t i = 0; i < links.size(); ++i) {
    byName_.emplace(links[i].name, i);  // the first of a name, as the scan finds it
    for (size_t a = 0; a < links[i].ipv4.size(); ++a) {
      intervals_.push_back({links[i].ipv4[a].network(), links[i].ipv4[a].prefix, i, a});
    }
  }
  std::sort(intervals_.begin(), intervals_.end(), [](const Interval& x, const Interval& y) {
    return std::tie(x.start, x.link, x.addr) < std::tie(y.start, y.link, y.addr);
  });
}

const LinkState* LinkIndex::find(std::string_view name) const {
  auto it = byName_.find(name);
  return it == byName_.end() ? nullptr : &table_.links[it->second];
}

std::optional<LinkAddress> LinkIndex::firstOverlap(const Cidr& cidr,
                                                   std::string_view exceptAlias) const {
  const auto& links = table_.links;
  std::optional<std::pair<size_t, size_t>> best;  // (link, addr): the first in listing order
  auto consider = [&](const Interval& at) {
    if (links[at.link].alias != exceptAlias && links[at.link].ipv4[at.addr].overlaps(cidr) &&
        (!best || std::make_pair(at.link, at.addr) < *best)) {
      best = {at.link, at.addr};
    }
  };
  auto from = [&](uint32_t start) {
    return std::lower_bound(intervals_.begin(), intervals_.end(), start,
                            [](const Interval& x, uint32_t s) { return x.start < s; });
  };
  // Prefixes nest or are disjoint: an address that overlaps `cidr` either starts inside it, or
  // is a shorter prefix containing it, whose network is cidr's start masked to that prefix.
  for (auto it = from(cidr.network()); it != intervals_.end() && it->start <= cidr.broadcast();
       ++it) {
    consider(*it);
  }
  for (int p = 0; p < cidr.prefix; ++p) {
    uint32_t start = Cidr{cidr.network(), p}.network();
    if (start == cidr.network()) {
      continue;  // starts inside: seen above
    }
    for (auto it = from(start); it != intervals_.end() && it->start == start; ++it) {
      if (it->prefix == p) {
        consider(*it);
      }
    }
  }
  if (!best) {
    return std::nullopt;
  }
  return LinkAddress{&links[best->first], links[best->first].ipv4[best->second]};
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
