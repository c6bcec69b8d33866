#include "model/activation_policy.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace memtrain::model {

namespace {
constexpr std::pair<LayerPolicy, absl::string_view> kNames[] = {
    {LayerPolicy::kKeep, "keep"},
    {LayerPolicy::kRecompute, "recompute"},
    {LayerPolicy::kRecomputeAttention, "recompute_attention"},
    {LayerPolicy::kSwapHost, "swap_host"},
    {LayerPolicy::kSwapSsd, "swap_ssd"},
    {LayerPolicy::kCompress, "compress"},
    {LayerPolicy::kStream, "stream"},
    {LayerPolicy::kStreamSwapHost, "stream_swap_host"},
    {LayerPolicy::kStreamSwapSsd, "stream_swap_ssd"},
};
}  // namespace

absl::StatusOr<LayerPolicy> parse_layer_policy(absl::string_view name) {
  std::string known;
  for (const auto& [p, n] : kNames) {
    if (n == name) return p;
    absl::StrAppend(&known, known.empty() ? "" : ", ", std::string(n));
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown activation policy \"", std::string(name), "\"; one of ", known));
}

absl::string_view layer_policy_name(LayerPolicy p) {
  for (const auto& [q, n] : kNames)
    if (q == p) return n;
  MEMTRAIN_CHECK_MSG(false, "unnamed activation policy");
  return "";
}

absl::StatusOr<ActivationPolicy> ActivationPolicy::parse(const std::vector<std::string>& names, int64_t segment,
                                                         int64_t n_layer) {
  if (names.size() != 1 && static_cast<int64_t>(names.size()) != n_layer) {
    return absl::InvalidArgumentError(absl::StrCat("has ", names.size(), " entries: give one policy for every layer or one "
                                                   "per layer (model.n_layer = ", n_layer, ")"));
  }
  if (segment < 0) return absl::InvalidArgumentError("memory.recompute_segment must be >= 0");
  ActivationPolicy policy;
  policy.segment = segment > 0 ? segment : static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(n_layer))));
  for (int64_t l = 0; l < n_layer; ++l) {
    const std::string& name = names.size() == 1 ? names[0] : names[l];
    absl::StatusOr<LayerPolicy> p = parse_layer_policy(name);
    if (!p.ok()) {
      return names.size() == 1 ? p.status()
                               : absl::InvalidArgumentError(absl::StrCat("entry ", l, ": ", p.status().message()));
    }
    policy.layers.push_back(*p);
  }
  if (std::all_of(policy.layers.begin(), policy.layers.end(), [](LayerPolicy p) { return p == LayerPolicy::kKeep; }))
    policy.layers.clear();
  return policy;
}

bool ActivationPolicy::uses(LayerPolicy p) const {
  for (LayerPolicy q : layers)
    if (q == p) return true;
  return p == LayerPolicy::kKeep && layers.empty();
}

bool ActivationPolicy::streams_any() const {
  return uses(LayerPolicy::kStream) || uses(LayerPolicy::kStreamSwapHost) || uses(LayerPolicy::kStreamSwapSsd);
}

std::pair<int64_t, int64_t> ActivationPolicy::segment_of(int64_t layer, int64_t first, int64_t end) const {
  MEMTRAIN_CHECK(recomputes(layer) && first <= layer && layer < end);
  int64_t run = layer;
  while (run > first && recomputes(run - 1)) --run;
  const int64_t s = run + (layer - run) / segment * segment;
  int64_t e = s;
  while (e < end && e < s + segment && recomputes(e)) ++e;
  return {s, e};
}

std::string ActivationPolicy::describe() const {
  if (layers.empty()) return "keep";
  std::string out;
  for (size_t l = 0; l < layers.size();) {
    size_t n = 1;
    while (l + n < layers.size() && layers[l + n] == layers[l]) ++n;
    absl::StrAppend(&out, out.empty() ? "" : ", ", std::string(layer_policy_name(layers[l])));
    if (n > 1 && n != layers.size()) absl::StrAppend(&out, " x", n);
    l += n;
  }
  if (uses(LayerPolicy::kRecompute)) absl::StrAppend(&out, " (segments of ", segment, ")");
  if (streams_any()) {
    absl::StrAppend(&out, stream_chunk > 0 ? absl::StrCat(" (chunks of ", stream_chunk, " positions")
                                           : std::string(" (chunks of a third of the sequence"));
    if (uses(LayerPolicy::kStreamSwapHost) || uses(LayerPolicy::kStreamSwapSsd))
      absl::StrAppend(&out, ", the last ", stream_swap_fraction * 100, "% swapped");
    absl::StrAppend(&out, ")");
  }
  return out;
}

}  // namespace memtrain::model
