// hyperd: the GitOps controller (hyperd/hyperd.cc), with the compiled-in providers.

#include <iostream>

#include "hyperd/hyperd.h"
#include "providers/builtin.h"

int main(int argc, char** argv) {
  auto kinds = hyper::providers::builtinKinds();
  if (!kinds.isOk()) {
    std::cerr << "error: " << kinds.status().message() << "\n";
    return 1;
  }
  return hyper::controller::hyperdMain(argc, argv, **kinds);
}
