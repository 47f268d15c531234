#pragma once

#include "reconciler/kind_registry.h"

namespace hyper::ctl {

// hyperctl's command line, for the kinds of `kinds`: hyperctl_main.cc passes the compiled-in
// ones; a test binary may pass more (tests/kinds/).
int hyperctlMain(int argc, char** argv, const KindRegistry& kinds);

}  // namespace hyper::ctl
