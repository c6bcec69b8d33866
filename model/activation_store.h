// ActivationStore: the one seam through which every layer keeps what its backward needs. Layers never hold
// activations in members; the store's policy decides how saved tensors are kept. A store that does not keep
// (evaluation, sampling) drops everything it is given; a keeping one drops what it is given while discarding (the
// first forward of a recompute segment, whose backward runs the forward again; activation_policy.h).
//
// Swapping: the model brackets each block's forward with begin_block(layer, mode) / end_block(). At end_block the
// block's saved tensors start their writes to the tier, and the previous swapped block's writes are waited for and
// its tensors dropped: at most two swapped blocks are in memory during forward, however fast the tier is (the
// memory plan relies on it). Before each block's backward, fetch_block(layer, next) brings the block back (reads
// issued earlier by the previous fetch are waited for) and starts reading `next`, the block backward reaches next.
// A stream block swaps chunk by chunk the same way (token-wise swap): begin_chunk / end_chunk bracket a chunk's
// forward inside the block's, its tensors saved under keys ending in the chunk's suffix (set_key_suffix picks the
// chunk again in backward) as a unit of their own (chunk_unit), which fetch_block brings back.
//
// It also holds the weight-gradient products a zero-bubble pipeline defers: layers hand them to weight_grad(),
// which runs them at once unless deferring is on; then run_weight_grads() runs them later, in the same order,
// and the tensors they captured stay alive until then.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/swap_tier.h"
#include "core/tensor.h"

namespace memtrain::model {

// Rows packed from several examples (fine-tuning data): each token's position within its example and the row
// index of its example's first token, (B, T) int32 each. Attention keeps examples apart by it; learned and rotary
// positions restart at each example.
struct PackedRows {
  Tensor positions, first;
};

struct Param;

// An adapted projection's input as its forward sees it (QuAILoRA's calibration collects them): x (N, in) holds
// the input features [in_offset, in_offset + in) of in_global (a row-parallel rank's part).
struct ProjectionInput {
  const Param* weight;  // the frozen base weight
  const float* x;
  int64_t N, in, in_offset, in_global;
};

class ActivationStore {
 public:
  explicit ActivationStore(bool keep = true) : keep_(keep) {}
  ~ActivationStore();  // waits for its tensors' transfers and frees their space in the tiers
  ActivationStore(const ActivationStore&) = delete;
  ActivationStore& operator=(const ActivationStore&) = delete;

  bool keeping() const { return keep_; }
  void set_discarding(bool on) { discarding_ = on; }
  // Keys are scoped by the layer's global name ("transformer.h.3.attn/qkv"); saving a key twice is a bug. A
  // projection's input (kLinearInput) is kept as 8-bit blocks in a block whose policy is compress: only weight
  // gradients read it (dW = dy^T x), so the error stays there.
  enum class Kind { kOther, kLinearInput };
  absl::Status save(const std::string& key, const Tensor& t, Kind kind = Kind::kOther);
  // Fetches and releases. NotFound names the key.
  absl::StatusOr<Tensor> take(const std::string& key);

  bool empty() const { return saved_.empty(); }
  size_t size() const { return saved_.size(); }
  std::vector<std::string> keys() const;
  void clear();

  // Swapping (see above); `tier` null keeps the block in memory. Errors are the tier's (a failed write or read).
  // How the block whose forward runs keeps its tensors: swapped to `tier`, projection inputs compressed, or the
  // attention core left for backward to recompute (attention asks recomputing_attention()).
  struct BlockMode {
    SwapTier* tier = nullptr;
    bool compress = false;
    bool recompute_attention = false;
  };
  void begin_block(int64_t layer, BlockMode mode);
  bool recomputing_attention() const { return keep_ && block_mode_.recompute_attention; }
  bool has(const std::string& key) const { return saved_.count(key + suffix_) > 0; }
  // The int8 block length a compressed tensor of n floats uses (64, or the largest power of two dividing n), and
  // its bytes (codes and one fp32 scale per block).
  static int64_t compress_block(int64_t n);
  static int64_t compressed_bytes(int64_t n) { return n + 4 * (n / compress_block(n)); }
  absl::Status end_block();
  // A stream block's chunk as a swapped unit of its own (see above); the block's state comes back at end_chunk.
  // (Past every layer's number; negative numbers mean none.)
  static int64_t chunk_unit(int64_t layer, int64_t chunk) { return (int64_t{1} << 56) + (layer << 24) + chunk; }
  void begin_chunk(int64_t unit, SwapTier* tier, std::string key_suffix);
  absl::Status end_chunk();
  void set_key_suffix(std::string suffix) { suffix_ = std::move(suffix); }
  absl::Status finish_forward();  // after the last block: waits for the writes still in flight
  absl::Status fetch_block(int64_t layer, int64_t next = -1);

  // The layout of the batch this store's forward and backward run on; none (nullptr) for plain sequences.
  void set_packed(PackedRows rows) { packed_ = std::move(rows); }
  const PackedRows* packed() const { return packed_.positions.defined() ? &packed_ : nullptr; }

  // Training randomness (LoRA dropout): which micro-batch of the run this store's forward is, counted over the
  // global batch (step * micro-batches per step + the micro-batch's index among all data-parallel ranks'), so any
  // mesh draws the masks one process would. Unset: no dropout (evaluation, sampling).
  void set_dropout(uint64_t seed, int64_t micro_batch) { dropout_ = {seed, micro_batch}; }
  struct DropoutStream {
    uint64_t seed = 0;
    int64_t micro_batch = -1;
  };
  const DropoutStream* dropout() const { return dropout_.micro_batch >= 0 ? &dropout_ : nullptr; }

  // Called with every adapted projection's input during forward (none by default). It may communicate over tp:
  // every tp rank's forward reaches the same projections in the same order.
  using InputObserver = std::function<absl::Status(const ProjectionInput&)>;
  void set_input_observer(InputObserver fn) { observer_ = std::move(fn); }
  absl::Status observe_input(const ProjectionInput& in) const { return observer_ ? observer_(in) : absl::OkStatus(); }

  void defer_weight_grads(bool on) { defer_ = on; }
  bool deferring_weight_grads() const { return defer_; }
  absl::Status weight_grad(std::function<absl::Status()> fn);
  absl::Status run_weight_grads();
  bool has_weight_grads() const { return !weight_grads_.empty(); }

 private:
  bool keep_;
  bool discarding_ = false;
  bool defer_ = false;
  enum class Where { kMemory, kWriting, kOut, kReading, kCompressed };
  struct Saved {
    Tensor tensor;  // undefined while out
    int64_t layer = -1;
    SwapTier* tier = nullptr;  // null: kept in memory
    Where where = Where::kMemory;
    uint64_t ticket = 0;
    Shape shape;
    DType dtype = DType::kF32;
    Tensor scales;  // kCompressed: tensor holds the int8 codes
  };
  absl::Status start_reads(int64_t layer);
  absl::Status finish(Saved& s);  // waits for s's transfer; a finished read frees its space in the tier

  std::map<std::string, Saved> saved_;
  int64_t block_ = -1;            // the block whose forward is running (begin_block)
  BlockMode block_mode_;
  int64_t writing_block_ = -1;    // the swapped block whose writes are in flight
  std::string suffix_;            // appended to every key (a swapped chunk's)
  struct Outer {                  // the block around a swapped chunk (begin_chunk)
    int64_t block;
    BlockMode mode;
    bool discarding;
  } outer_{};
  PackedRows packed_;
  DropoutStream dropout_;
  std::vector<std::function<absl::Status()>> weight_grads_;
  InputObserver observer_;
};

}  // namespace memtrain::model
