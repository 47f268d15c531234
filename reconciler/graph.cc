#include "reconciler/graph.h"

#include <algorithm>
#include <functional>
#include <queue>
#include <unordered_map>

namespace hyper {

const DependencyGraph::Edges& DependencyGraph::edges() const {
  static const Edges none;
  return edges_ ? *edges_ : none;
}

DependencyGraph::Edges& DependencyGraph::edit() {
  if (!edges_) {
    edges_ = std::make_shared<Edges>();
  } else if (edges_.use_count() > 1) {
    edges_ = std::make_shared<Edges>(*edges_);
  }
  return *edges_;
}

void DependencyGraph::addNode(const ObjectId& id) {
  // A revision adds its objects in id order: then the end is where each goes.
  Edges& edges = edit();
  if (edges.empty() || edges.rbegin()->first < id) {
    edges.emplace_hint(edges.end(), id, std::set<ObjectId>());
  } else {
    edges[id];
  }
}

void DependencyGraph::addEdge(const ObjectId& from, const ObjectId& to) {
  Edges& edges = edit();
  edges[from].insert(to);
  edges[to];
}

const std::set<ObjectId>& DependencyGraph::dependencies(const ObjectId& id) const {
  static const std::set<ObjectId> none;
  auto it = edges().find(id);
  return it == edges().end() ? none : it->second;
}

std::vector<std::vector<ObjectId>> DependencyGraph::cycles() const {
  // A depth-first search with colours over node indexes (id order, so the same graph reports the
  // same cycles); each back edge closes one cycle. The search keeps its own stack: a chain of
  // references as long as the revision's objects cannot overflow the thread's.
  using Entry = std::pair<const ObjectId, std::set<ObjectId>>;
  std::vector<const Entry*> nodes;
  nodes.reserve(edges().size());
  std::unordered_map<ObjectIdView, size_t, ObjectIdViewHash> index;
  index.reserve(edges().size());
  for (const auto& entry : edges()) {
    index.emplace(ObjectIdView(entry.first), nodes.size());
    nodes.push_back(&entry);
  }
  enum class Colour : unsigned char { White, Grey, Black };
  std::vector<Colour> colour(nodes.size(), Colour::White);
  struct Frame {
    size_t node;
    std::set<ObjectId>::const_iterator next;
  };
  std::vector<Frame> path;  // the grey nodes, from the root of this search
  std::vector<std::vector<ObjectId>> found;
  for (size_t root = 0; root < nodes.size(); ++root) {
    if (colour[root] != Colour::White) {
      continue;
    }
    colour[root] = Colour::Grey;
    path.push_back({root, nodes[root]->second.begin()});
    while (!path.empty()) {
      Frame& top = path.back();
      if (top.next == nodes[top.node]->second.end()) {
        colour[top.node] = Colour::Black;
        path.pop_back();
        continue;
      }
      const ObjectId& target = *top.next++;
      size_t next = index.at(ObjectIdView(target));  // addEdge adds every target
      if (colour[next] == Colour::Grey) {
        auto start = std::find_if(path.begin(), path.end(),
                                  [next](const Frame& f) { return f.node == next; });
        std::vector<ObjectId> cycle;
        for (auto f = start; f != path.end(); ++f) {
          cycle.push_back(nodes[f->node]->first);
        }
        found.push_back(std::move(cycle));
      } else if (colour[next] == Colour::White) {
        colour[next] = Colour::Grey;
        path.push_back({next, nodes[next]->second.begin()});
      }
    }
  }
  return found;
}

namespace {

// Kahn's algorithm over "depends on" edges: an object is ready once all of its dependencies
// are placed (`pending`: each one's count of dependencies not yet placed; `dependents`: who
// depends on each). A min-heap keeps ties in id order.
std::vector<ObjectId> placeInOrder(std::map<ObjectId, size_t>& pending,
                                   std::map<ObjectId, std::vector<ObjectId>>& dependents) {
  std::priority_queue<ObjectId, std::vector<ObjectId>, std::greater<>> ready;
  for (const auto& [id, n] : pending) {
    if (n == 0) {
      ready.push(id);
    }
  }
  std::vector<ObjectId> order;
  order.reserve(pending.size());
  while (!ready.empty()) {
    ObjectId id = ready.top();
    ready.pop();
    order.push_back(id);
    for (const auto& child : dependents[id]) {
      if (--pending[child] == 0) {
        ready.push(child);
      }
    }
  }
  return order;
}

}  // namespace

std::vector<ObjectId> DependencyGraph::topologicalOrderOf(const std::vector<ObjectId>& ids) const {
  // What `ids` depend on, transitively: every dependency of a node in it is in it, so a node's
  // readiness in Kahn's walk (placeInOrder) depends on its nodes alone, and the walk places them
  // in the order the whole graph's walk does (it places each when it is the least ready node, and
  // only its own nodes make its nodes ready).
  std::map<ObjectId, size_t> pending;
  std::vector<ObjectId> stack;
  for (const ObjectId& id : ids) {
    if (edges().count(id) && pending.emplace(id, 0).second) {
      stack.push_back(id);
    }
  }
  std::map<ObjectId, std::vector<ObjectId>> dependents;
  while (!stack.empty()) {
    ObjectId id = std::move(stack.back());
    stack.pop_back();
    const std::set<ObjectId>& deps = dependencies(id);
    pending[id] = deps.size();
    for (const ObjectId& d : deps) {
      dependents[d].push_back(id);
      if (pending.emplace(d, 0).second) {
        stack.push_back(d);
      }
    }
  }
  return placeInOrder(pending, dependents);
}

std::vector<ObjectId> DependencyGraph::topologicalOrder() const {
  std::map<ObjectId, size_t> pending;
  std::map<ObjectId, std::vector<ObjectId>> dependents;
  for (const auto& [id, deps] : edges()) {
    pending[id] = deps.size();
    for (const auto& d : deps) {
      dependents[d].push_back(id);
    }
  }
  return placeInOrder(pending, dependents);
}

}  // namespace hyper
