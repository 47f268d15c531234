#include "hyperctl/output.h"

#include <algorithm>

#include <yaml-cpp/yaml.h>

namespace hyper::ctl {

std::string renderTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size() && i < width.size(); ++i) {
      width[i] = std::max(width[i], row[i].size());
    }
  };
  measure(header);
  for (const auto& r : rows) {
    measure(r);
  }
  auto line = [&](const std::vector<std::string>& row) {
    std::string out;
    for (size_t i = 0; i < row.size() && i < width.size(); ++i) {
      out += row[i];
      if (i + 1 < row.size()) {
        out += std::string(width[i] - row[i].size() + 3, ' ');
      }
    }
    return out + "\n";
  };
  std::string out = line(header);
  for (const auto& r : rows) {
    out += line(r);
  }
  return out;
}

namespace {

void emit(YAML::Emitter& out, const Json& v) {
  switch (v.type()) {
    case Json::value_t::object:
      out << YAML::BeginMap;
      for (const auto& [k, child] : v.items()) {
        out << YAML::Key << k << YAML::Value;
        emit(out, child);
      }
      out << YAML::EndMap;
      break;
    case Json::value_t::array:
      out << YAML::BeginSeq;
      for (const auto& child : v) {
        emit(out, child);
      }
      out << YAML::EndSeq;
      break;
    case Json::value_t::string: {
      // Quote strings that would read back as another type ("true", "80", "").
      const auto& s = v.get_ref<const std::string&>();
      bool ambiguous = s.empty() || s == "true" || s == "false" || s == "null" || s == "~" ||
                       s.find_first_not_of("0123456789.-+eE") == std::string::npos;
      if (ambiguous) {
        out << YAML::DoubleQuoted << s;
      } else {
        out << s;
      }
      break;
    }
    case Json::value_t::null:
      out << YAML::Null;
      break;
    default:
      out << v.dump();
      break;
  }
}

}  // namespace

std::string toYaml(const Json& value) {
  YAML::Emitter out;
  emit(out, value);
  return std::string(out.c_str()) + "\n";
}

std::string age(int64_t unixSeconds, int64_t now) {
  if (unixSeconds <= 0) {
    return "-";
  }
  int64_t d = std::max<int64_t>(0, now - unixSeconds);
  if (d < 120) {
    return std::to_string(d) + "s";
  }
  if (d < 7200) {
    return std::to_string(d / 60) + "m";
  }
  if (d < 172800) {
    return std::to_string(d / 3600) + "h";
  }
  return std::to_string(d / 86400) + "d";
}

}  // namespace hyper::ctl
