#include "reconciler/graph.h"

#include <algorithm>
#include <functional>
#include <queue>

namespace hyper {

void DependencyGraph::addNode(const ObjectId& id) { edges_[id]; }

void DependencyGraph::addEdge(const ObjectId& from, const ObjectId& to) {
  edges_[from].insert(to);
  edges_[to];
}

const std::set<ObjectId>& DependencyGraph::dependencies(const ObjectId& id) const {
  static const std::set<ObjectId> none;
  auto it = edges_.find(id);
  return it == edges_.end() ? none : it->second;
}

std::vector<std::vector<ObjectId>> DependencyGraph::cycles() const {
  // Iterative-enough DFS with colours; each back edge closes one cycle. Nodes are visited in id
  // order so the same graph reports the same cycles.
  enum class Colour { White, Grey, Black };
  std::map<ObjectId, Colour> colour;
  for (const auto& [id, _] : edges_) {
    colour[id] = Colour::White;
  }
  std::vector<std::vector<ObjectId>> found;
  std::vector<ObjectId> stack;
  std::function<void(const ObjectId&)> visit = [&](const ObjectId& id) {
    colour[id] = Colour::Grey;
    stack.push_back(id);
    for (const auto& next : dependencies(id)) {
      if (colour[next] == Colour::Grey) {
        auto start = std::find(stack.begin(), stack.end(), next);
        found.emplace_back(start, stack.end());
      } else if (colour[next] == Colour::White) {
        visit(next);
      }
    }
    stack.pop_back();
    colour[id] = Colour::Black;
  };
  for (const auto& [id, _] : edges_) {
    if (colour[id] == Colour::White) {
      visit(id);
    }
  }
  return found;
}

std::vector<ObjectId> DependencyGraph::topologicalOrder() const {
  // Kahn's algorithm over "depends on" edges: an object is ready once all of its dependencies
  // are placed. A min-heap keeps ties in id order.
  std::map<ObjectId, size_t> pending;
  std::map<ObjectId, std::vector<ObjectId>> dependents;
  for (const auto& [id, deps] : edges_) {
    pending[id] = deps.size();
    for (const auto& d : deps) {
      dependents[d].push_back(id);
    }
  }
  std::priority_queue<ObjectId, std::vector<ObjectId>, std::greater<>> ready;
  for (const auto& [id, n] : pending) {
    if (n == 0) {
      ready.push(id);
    }
  }
  std::vector<ObjectId> order;
  order.reserve(edges_.size());
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

}  // namespace hyper
