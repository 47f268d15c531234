#include "reconciler/plan.h"

#include <array>

#include "base/sha256.h"

namespace hyper {

namespace {

constexpr const char* kReset = "\033[0m";
constexpr const char* kBold = "\033[1m";
constexpr const char* kRed = "\033[31m";
constexpr const char* kGreen = "\033[32m";
constexpr const char* kYellow = "\033[33m";
constexpr const char* kMagenta = "\033[35m";

// The hashed part of an action: everything that says what will happen to the host, nothing that
// depends on when or where the plan was made.
Json actionJson(const PlanAction& a) {
  Json changes = Json::array();
  for (const auto& c : a.changes) {
    Json change = {
        {"path", c.path}, {"forcesReplace", c.forcesReplace}, {"sensitive", c.sensitive}};
    // A sensitive value must not leak through the JSON, and therefore not through the hash either:
    // a hash of a low-entropy secret is as good as the secret.
    if (!c.sensitive) {
      change["before"] = c.before;
      change["after"] = c.after;
    }
    changes.push_back(std::move(change));
  }
  Json dependsOn = Json::array();
  for (const auto& d : a.dependsOn) {
    dependsOn.push_back(d.str());
  }
  Json out = {{"type", actionTypeName(a.type)},
              {"id", a.id.str()},
              {"kind", a.id.kind},
              {"name", a.id.name},
              {"provider", a.provider},
              {"reason", a.reason},
              {"drift", a.drift},
              {"changes", std::move(changes)},
              {"dependsOn", std::move(dependsOn)}};
  if (a.disruption != Disruption::None) {
    // Only where a provider says: the hashes of plans without it stay what they were.
    out["disruption"] = disruptionName(a.disruption);
  }
  if (!a.privateData.is_null()) {
    out["private"] = a.privateData;
  }
  return out;
}

Json actionsJson(const std::vector<PlanAction>& actions) {
  Json out = Json::array();
  for (const auto& a : actions) {
    out.push_back(actionJson(a));
  }
  return out;
}

std::array<size_t, 4> countByType(const std::vector<PlanAction>& actions) {
  std::array<size_t, 4> counts{};
  for (const auto& a : actions) {
    auto i = static_cast<size_t>(a.type);
    if (i < counts.size()) {
      ++counts[i];
    }
  }
  return counts;
}

// Values are printed as JSON so that strings stay quoted and "1500" is told apart from 1500.
std::string formatValue(const Json& v) {
  return v.dump(-1, ' ', false, Json::error_handler_t::replace);
}

class TextWriter {
 public:
  explicit TextWriter(bool color) : color_(color) {}

  void paint(const char* colour, const std::string& text) {
    if (color_) {
      out_ += colour;
      out_ += text;
      out_ += kReset;
    } else {
      out_ += text;
    }
  }
  void text(const std::string& text) { out_ += text; }
  std::string take() { return std::move(out_); }

 private:
  bool color_;
  std::string out_;
};

struct ActionStyle {
  const char* symbol;  // padded to the width of "-/+" so object names line up
  const char* colour;
  const char* verb;
};

ActionStyle styleOf(ActionType t) {
  switch (t) {
    case ActionType::Create:
      return {"  +", kGreen, "will be created"};
    case ActionType::Update:
      return {"  ~", kYellow, "will be updated in place"};
    case ActionType::Replace:
      return {"-/+", kMagenta, "must be replaced"};
    case ActionType::Delete:
      return {"  -", kRed, "will be deleted"};
  }
  return {"  ?", kReset, "has an unknown action"};
}

void renderChange(TextWriter& w, const FieldChange& c) {
  // Whether a value is present is not secret; the value is.
  const char* symbol = "~";
  const char* colour = kYellow;
  if (c.before.is_null() && !c.after.is_null()) {
    symbol = "+";
    colour = kGreen;
  } else if (!c.before.is_null() && c.after.is_null()) {
    symbol = "-";
    colour = kRed;
  }
  w.text("      ");
  w.paint(colour, symbol);
  w.text(" " + c.path + ": ");
  if (c.sensitive) {
    w.text("(sensitive value)");
  } else if (*symbol == '+') {
    w.text(formatValue(c.after));
  } else if (*symbol == '-') {
    w.text(formatValue(c.before));
  } else {
    w.text(formatValue(c.before) + " -> " + formatValue(c.after));
  }
  if (c.forcesReplace) {
    w.paint(kRed, " (forces replacement)");
  }
  w.text("\n");
}

}  // namespace

const char* actionTypeName(ActionType t) {
  switch (t) {
    case ActionType::Create:
      return "create";
    case ActionType::Update:
      return "update";
    case ActionType::Replace:
      return "replace";
    case ActionType::Delete:
      return "delete";
  }
  return "unknown";
}

const char* disruptionName(Disruption d) {
  switch (d) {
    case Disruption::None:
      return "";
    case Disruption::InPlace:
      return "in-place";
    case Disruption::Start:
      return "start";
    case Disruption::Stop:
      return "stop";
    case Disruption::Restart:
      return "restart";
    case Disruption::Replace:
      return "replace";
  }
  return "";
}

Json Plan::toJson() const {
  Json orphanIds = Json::array();
  for (const auto& o : orphans) {
    orphanIds.push_back(o.str());
  }
  auto counts = countByType(actions);
  return {{"revision", revision},
          {"actions", actionsJson(actions)},
          {"orphans", std::move(orphanIds)},
          {"summary",
           {{"create", counts[static_cast<size_t>(ActionType::Create)]},
            {"update", counts[static_cast<size_t>(ActionType::Update)]},
            {"replace", counts[static_cast<size_t>(ActionType::Replace)]},
            {"delete", counts[static_cast<size_t>(ActionType::Delete)]}}}};
}

std::string Plan::hash() const {
  // Orphans and the summary are left out: orphans only say what prune would do, and the summary
  // is derived from the actions.
  // The canonical JSON of {"actions": [...], "revision": ...}, hashed an action at a time rather
  // than built whole: at 2,000 actions that tree cost more than the hashing.
  Sha256 h;
  h.update("{\"actions\":[");
  for (size_t i = 0; i < actions.size(); ++i) {
    if (i > 0) {
      h.update(",");
    }
    h.update(canonicalJson(actionJson(actions[i])));
  }
  h.update("],\"revision\":");
  h.update(canonicalJson(Json(revision)));
  h.update("}");
  return h.hex();
}

std::string Plan::render(bool color) const {
  TextWriter w(color);
  for (const auto& a : actions) {
    ActionStyle style = styleOf(a.type);
    w.paint(style.colour, style.symbol);
    w.text(" ");
    if (color) {
      w.paint(kBold, a.id.str());
    } else {
      w.text(a.id.str());
    }
    w.text(" ");
    w.text(style.verb);
    if (a.disruption != Disruption::None) {
      w.text(" [");
      w.text(disruptionName(a.disruption));
      w.text("]");
    }
    if (a.drift || !a.reason.empty()) {
      w.text(" (");
      if (a.drift) {
        w.paint(kYellow, a.reason.empty() ? "drift" : "drift: ");
      }
      w.text(a.reason);
      w.text(")");
    }
    w.text("\n");
    for (const auto& c : a.changes) {
      renderChange(w, c);
    }
  }
  if (!orphans.empty()) {
    w.text("Orphaned (in the inventory, gone from the source; `--prune` deletes): ");
    for (size_t i = 0; i < orphans.size(); ++i) {
      if (i > 0) {
        w.text(", ");
      }
      w.text(orphans[i].str());
    }
    w.text("\n");
  }
  if (actions.empty()) {
    w.text("No changes. The host matches the desired state.\n");
    return w.take();
  }
  auto counts = countByType(actions);
  w.paint(kBold, "Plan:");
  w.text(" " + std::to_string(counts[static_cast<size_t>(ActionType::Create)]) + " to create, " +
         std::to_string(counts[static_cast<size_t>(ActionType::Update)]) + " to update, " +
         std::to_string(counts[static_cast<size_t>(ActionType::Replace)]) + " to replace, " +
         std::to_string(counts[static_cast<size_t>(ActionType::Delete)]) + " to delete.\n");
  return w.take();
}

}  // namespace hyper
