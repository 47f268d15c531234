#pragma once

#include "reconciler/kind_registry.h"

namespace hyper::controller {

// hyperd's command line and run, for the providers of `kinds`: hyperd_main.cc passes the
// compiled-in ones; a test binary may pass more (tests/kinds/).
int hyperdMain(int argc, char** argv, const KindRegistry& kinds);

}  // namespace hyper::controller
