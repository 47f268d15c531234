#pragma once

#include <map>
#include <string>
#include <string_view>

namespace hyper::controller {

// The status page's files (hyperd/ui/: index.html, app.js, style.css), compiled in by
// cmake/embed_ui.cmake, by file name.
const std::map<std::string, std::string_view>& uiAssets();

}  // namespace hyper::controller
