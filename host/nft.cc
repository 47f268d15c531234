#include "host/nft.h"

#include <nftables/libnftables.h>

#include <memory>
#include <mutex>

namespace hyper::host {

namespace {

std::mutex& nftMutex() {
  static std::mutex mu;
  return mu;
}

struct ContextDeleter {
  void operator()(nft_ctx* ctx) const { nft_ctx_free(ctx); }
};
using Context = std::unique_ptr<nft_ctx, ContextDeleter>;

// The first non-empty line of nft's error buffer, or `fallback`.
std::string firstLine(const char* text, const std::string& fallback) {
  std::string all = text ? text : "";
  size_t start = 0;
  while (start < all.size()) {
    size_t end = all.find('\n', start);
    if (end == std::string::npos) {
      end = all.size();
    }
    if (end > start) {
      return all.substr(start, end - start);
    }
    start = end + 1;
  }
  return fallback;
}

// Runs `commands` in a fresh context; `out` gets the output buffer when not null.
Status run(const std::string& what, const std::string& commands, bool json, std::string* out) {
  std::lock_guard<std::mutex> lock(nftMutex());
  Context ctx(nft_ctx_new(NFT_CTX_DEFAULT));
  if (!ctx) {
    return Status::error(what + " <- libnftables could not make a context");
  }
  if (json) {
    nft_ctx_output_set_flags(ctx.get(), NFT_CTX_OUTPUT_JSON);
  }
  if (nft_ctx_buffer_output(ctx.get()) != 0 || nft_ctx_buffer_error(ctx.get()) != 0) {
    return Status::error(what + " <- libnftables could not buffer its output");
  }
  int rc = nft_run_cmd_from_buffer(ctx.get(), commands.c_str());
  if (rc != 0) {
    return Status::error(what + " <- " +
                         firstLine(nft_ctx_get_error_buffer(ctx.get()),
                                   "failed (status " + std::to_string(rc) + ")"));
  }
  if (out) {
    const char* text = nft_ctx_get_output_buffer(ctx.get());
    *out = text ? text : "";
  }
  return Status::ok();
}

}  // namespace

Status nftApply(const std::string& commands) {
  return run("nft -f -", commands, /*json=*/false, nullptr);
}

Result<std::string> nftListRulesetJson() {
  std::string out;
  HYPER_RETURN_IF_ERROR(run("nft -j list ruleset", "list ruleset", /*json=*/true, &out));
  return out;
}

}  // namespace hyper::host
