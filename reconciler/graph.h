#pragma once

#include <map>
#include <set>
#include <vector>

#include "reconciler/diagnostic.h"
#include "reconciler/object.h"

namespace hyper {

// The dependency graph of a revision: an edge A -> B when A refers to B.
class DependencyGraph {
 public:
  void addNode(const ObjectId& id);
  void addEdge(const ObjectId& from, const ObjectId& to);

  bool hasNode(const ObjectId& id) const { return edges_.count(id) > 0; }
  const std::set<ObjectId>& dependencies(const ObjectId& id) const;

  // Every cycle's members in order (first repeated at the end is implied), each reported once.
  std::vector<std::vector<ObjectId>> cycles() const;

  // Parents before children; ties broken by id for a stable order. Precondition: acyclic.
  std::vector<ObjectId> topologicalOrder() const;
  // The same order, of `ids` and what they depend on (transitively) only: an object's place
  // among these depends on nothing else, so each keeps its rank relative to the others, in a
  // walk of that part of the graph alone (a plan of two actions among 10k objects).
  std::vector<ObjectId> topologicalOrderOf(const std::vector<ObjectId>& ids) const;

 private:
  std::map<ObjectId, std::set<ObjectId>> edges_;
};

}  // namespace hyper
