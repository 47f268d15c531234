#pragma once

#include <map>
#include <memory>
#include <set>
#include <vector>

#include "reconciler/diagnostic.h"
#include "reconciler/object.h"

namespace hyper {

// The dependency graph of a revision: an edge A -> B when A refers to B. A copy shares the
// edges with the original until either changes (copy on write): a revision whose objects refer to
// what the previous one's did keeps its graph (Engine::check), and renaming a revision copies none.
class DependencyGraph {
 public:
  void addNode(const ObjectId& id);
  void addEdge(const ObjectId& from, const ObjectId& to);

  bool hasNode(const ObjectId& id) const { return edges().count(id) > 0; }
  const std::set<ObjectId>& dependencies(const ObjectId& id) const;

  // Every cycle's members in order (first repeated at the end is implied), each reported once.
  std::vector<std::vector<ObjectId>> cycles() const;

  // Parents before children; ties broken by id for a stable order. Precondition: acyclic.
  std::vector<ObjectId> topologicalOrder() const;
  // The same order, of `ids` and what they depend on (transitively) only: an object's place
  // among these depends on nothing else, so each keeps its rank relative to the others, in a
  // walk of that part of the graph alone (a plan of two actions among 10k objects).
  std::vector<ObjectId> topologicalOrderOf(const std::vector<ObjectId>& ids) const;

  // Whether this graph and `other` hold the same edges, not merely equal ones.
  bool sharesEdgesWith(const DependencyGraph& other) const {
    return edges_ != nullptr && edges_ == other.edges_;
  }

 private:
  using Edges = std::map<ObjectId, std::set<ObjectId>>;
  const Edges& edges() const;
  Edges& edit();  // the edges, this graph's own from now on

  std::shared_ptr<Edges> edges_;  // null: no node
};

}  // namespace hyper
