// Activation policies on a mesh: the same run with blocks recomputed (several segment lengths, mixed policies, the
// attention core only) or swapped to host buffers or an SSD file follows `keep`'s loss curve bit for bit and saves
// the same weights, under data parallelism with ZeRO-3 (parameters gathered again for the recompute), tensor
// parallelism with sequence parallelism, context parallelism (the ring runs again), pipelines (1F1B and zero
// bubble, whose weight gradients are deferred; several micro-batches share the tier) and LoRA with dropout (the
// masks are drawn again). AdamW's moments streamed from the SSD file (offload.optimizer = "ssd") and ZeRO-3's
// parameter shard kept in a tier (offload.parameters: read back for each gather and each update, brought in for
// checkpoints and a pipeline's tied values, with qwZ gathers and accumulated micro-batches) likewise give keep's
// run bit for bit; so does stream with one chunk per sequence, its chunks swapped or not.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "tests/mpi/training_fixture.h"
#include "trainer/train_loop.h"

namespace memtrain {
namespace {
using parallel::testing::shared_dir;
using parallel::testing::single_process_run;
using parallel::testing::slurp;
using parallel::testing::tiny_config;
using parallel::testing::world;

struct PolicyCase {
  std::string name, arch;
  int ranks_per_group;  // the mesh's tp * cp * pp; the rest is dp
  std::vector<std::string> mesh;
  std::vector<std::string> policy;
};

class MpiActivationPolicies : public ::testing::TestWithParam<PolicyCase> {};

TEST_P(MpiActivationPolicies, LossCurveAndWeightsAreBitwiseThoseOfKeep) {
  const PolicyCase& c = GetParam();
  if (world().size() % c.ranks_per_group != 0) GTEST_SKIP() << "the mesh does not divide the world";
  // A policy acts within each rank's part of the model; more data-parallel ranks change nothing it does. On 8 ranks
  // a group of 1 or 2 would run the code 4 ranks ran at a higher dp: only the groups of 4 run there.
  if (world().size() == 8 && c.ranks_per_group < 4) GTEST_SKIP() << "covered by the run on 4 ranks";
  if (c.name.find("stream_cp") != std::string::npos) GTEST_SKIP() << "stream with cp is keep's within rounding";
  std::vector<std::string> sets = {"model.n_layer=4", "train.max_steps=8", "train.eval_interval=0",
                                   "parallel.dp=-1", "offload.ssd_path=" + shared_dir()};
  sets.insert(sets.end(), c.mesh.begin(), c.mesh.end());
  std::vector<std::string> recompute_sets = sets;
  recompute_sets.insert(recompute_sets.end(), c.policy.begin(), c.policy.end());
  const std::string keep_out = shared_dir() + "/recompute_keep_" + c.name;
  const std::string recompute_out = shared_dir() + "/recompute_" + c.name;
  auto keep = trainer::run_training(tiny_config(c.arch, keep_out, sets), world().comm(), 1, /*quiet=*/true);
  ASSERT_TRUE(keep.ok()) << keep.status();
  auto recompute =
      trainer::run_training(tiny_config(c.arch, recompute_out, recompute_sets), world().comm(), 1, /*quiet=*/true);
  ASSERT_TRUE(recompute.ok()) << recompute.status();
  ASSERT_EQ(keep->losses.size(), 8u);
  ASSERT_EQ(recompute->losses.size(), 8u);
  for (size_t i = 0; i < keep->losses.size(); ++i) EXPECT_EQ(recompute->losses[i], keep->losses[i]) << "step " << i + 1;
  if (world().rank() != 0) return;
  const std::string file =
      c.name.find("lora") != std::string::npos ? "/adapter/adapter_model.safetensors" : "/model.safetensors";
  const std::string a = slurp(keep_out + file), b = slurp(recompute_out + file);
  EXPECT_FALSE(a.empty());
  EXPECT_TRUE(a == b) << "saved weights differ";
}

// compress changes the gradients (within its bound, tests/unit/trainer/activation_policies_test.cc) but not what a
// mesh computes: blocks of 64 packed values lie within rows (n_embd = 32: one or two whole rows), so each rank packs
// what one process packs. Every step's loss within 1e-5 relative of one process compressing the same batch (the
// bound of tensor_parallel_test), and the curve must differ from keep's (something was compressed).
TEST(MpiCompress, MeshFollowsTheSingleProcessCompressedRun) {
  if (world().size() % 2 != 0) GTEST_SKIP() << "tp = 2 does not divide the world";
  if (world().size() == 8) GTEST_SKIP() << "tp 2 x dp 4: the code of tp 2 x dp 2, which 4 ranks ran";
  const int dp = world().size() / 2;
  const std::vector<std::string> common = {"model.n_layer=4", "train.max_steps=8", "train.eval_interval=0",
                                           "memory.activations=compress", "optim.lr=1e-2"};
  std::vector<std::string> mesh = common, single = common;
  for (const char* s : {"parallel.tp=2", "parallel.sequence_parallel=true", "parallel.dp=-1", "zero.stage=2"})
    mesh.push_back(s);
  single.push_back("train.grad_accum=" + std::to_string(dp));
  auto m = trainer::run_training(tiny_config("llama", shared_dir() + "/compress_mesh", mesh), world().comm(), 1, true);
  ASSERT_TRUE(m.ok()) << m.status();
  const std::string single_out = shared_dir() + "/compress_single";
  auto one = single_process_run(tiny_config("llama", single_out, single));
  ASSERT_TRUE(one.ok()) << one.status();
  std::vector<std::string> keep_sets = single;
  keep_sets[3] = "memory.activations=keep";
  auto keep = single_process_run(tiny_config("llama", single_out + "_keep", keep_sets));
  ASSERT_TRUE(keep.ok()) << keep.status();
  ASSERT_EQ(m->losses.size(), 8u);
  bool differs = false;
  for (size_t i = 0; i < m->losses.size(); ++i) {
    EXPECT_LE(std::fabs(m->losses[i] - one->losses[i]) / one->losses[i], 1e-5) << "step " << i + 1;
    differs = differs || one->losses[i] != keep->losses[i];
  }
  EXPECT_TRUE(differs);
}

// stream on a mesh (StreamBP): chunks of 12 of the 32 positions (12 + 12 + 8) reorder the weight gradients' sums,
// so every step's loss within 1e-5 relative of keep's on the same mesh (the bound of tensor_parallel_test); one
// whole-sequence chunk is keep's run bit for bit (MpiActivationPolicies below). Under ZeRO-3 the block's
// parameters stay gathered through all its chunks; its gradients are reduced once, after the last chunk. With ring
// cp the keys and values are gathered over the ring and their gradients summed back after the chunk loop, so even
// one chunk per piece differs from keep's ring attention in the order of sums: within rounding there too.
TEST_P(MpiActivationPolicies, StreamFollowsKeepWithinRounding) {
  const PolicyCase& c = GetParam();
  if (c.name.find("stream") == std::string::npos) GTEST_SKIP() << "not a stream case";
  if (world().size() % c.ranks_per_group != 0) GTEST_SKIP() << "the mesh does not divide the world";
  if (world().size() == 8 && c.ranks_per_group < 4) GTEST_SKIP() << "covered by the run on 4 ranks";
  std::vector<std::string> sets = {"model.n_layer=4", "train.max_steps=8", "train.eval_interval=0", "parallel.dp=-1"};
  sets.insert(sets.end(), c.mesh.begin(), c.mesh.end());
  // With cp a rank holds cp.chunks() pieces of 32 / (2 * cp) positions each: chunks of 3 split them too.
  const bool cp = c.name.find("stream_cp") != std::string::npos;
  std::vector<std::string> stream_sets = sets;
  stream_sets.insert(stream_sets.end(), {"memory.activations=stream", cp ? "memory.stream_chunk=3" : "memory.stream_chunk=12"});
  auto keep = trainer::run_training(tiny_config(c.arch, shared_dir() + "/stream_keep_" + c.name, sets),
                                    world().comm(), 1, /*quiet=*/true);
  ASSERT_TRUE(keep.ok()) << keep.status();
  auto stream = trainer::run_training(tiny_config(c.arch, shared_dir() + "/stream_" + c.name, stream_sets),
                                      world().comm(), 1, /*quiet=*/true);
  ASSERT_TRUE(stream.ok()) << stream.status();
  ASSERT_EQ(stream->losses.size(), 8u);
  bool differs = false;  // the chunks did run: the reordered sums show in the last bits
  for (size_t i = 0; i < keep->losses.size(); ++i) {
    EXPECT_LE(std::fabs(stream->losses[i] - keep->losses[i]) / keep->losses[i], 1e-5) << "step " << i + 1;
    differs = differs || stream->losses[i] != keep->losses[i];
  }
  EXPECT_TRUE(differs);
}

const std::vector<std::string> kAll = {"memory.activations=recompute"};
const std::vector<std::string> kStreamWhole = {"memory.activations=stream,keep,stream,recompute",
                                               "memory.stream_chunk=32"};
// Token-wise swap: every chunk (one per sequence here) of the first two blocks goes to a tier and comes back.
const std::vector<std::string> kStreamSwapWhole = {"memory.activations=stream_swap_host,stream_swap_ssd,stream,keep",
                                                   "memory.stream_chunk=32"};
const std::vector<std::string> kSegments = {"memory.activations=recompute", "memory.recompute_segment=2"};
const std::vector<std::string> kMixed = {"memory.activations=keep,recompute,recompute,recompute",
                                         "memory.recompute_segment=0"};
const std::vector<std::string> kSsd = {"memory.activations=swap_ssd"};
const std::vector<std::string> kHost = {"memory.activations=swap_host"};
const std::vector<std::string> kAllKinds = {"memory.activations=swap_ssd,recompute,swap_host,swap_ssd"};
const std::vector<std::string> kOptimizerOnSsd = {"offload.optimizer=ssd"};
const std::vector<std::string> kSelective = {"memory.activations=recompute_attention"};
const std::vector<std::string> kParametersOnSsd = {"offload.parameters=ssd"};
const std::vector<std::string> kParametersOnHost = {"offload.parameters=host"};
const std::vector<std::string> kEverythingOnSsd = {"offload.parameters=ssd", "offload.optimizer=ssd",
                                                   "memory.activations=swap_ssd"};

INSTANTIATE_TEST_SUITE_P(
    Meshes, MpiActivationPolicies,
    ::testing::Values(PolicyCase{"gpt2_dp_zero3", "gpt2", 1, {"zero.stage=3"}, kSegments},
                      PolicyCase{"llama_dp_zero2", "llama", 1, {"zero.stage=2"}, kMixed},
                      PolicyCase{"gpt2_tp2_sp", "gpt2", 2, {"parallel.tp=2", "parallel.sequence_parallel=true",
                                                               "zero.stage=1"}, kAll},
                      PolicyCase{"llama_cp2", "llama", 2, {"parallel.cp=2", "zero.stage=3"}, kSegments},
                      PolicyCase{"gpt2_pp2_1f1b", "gpt2", 2, {"parallel.pp=2", "parallel.pp_schedule=1f1b",
                                                                 "train.grad_accum=4"}, kMixed},
                      PolicyCase{"llama_pp2_zb", "llama", 2, {"parallel.pp=2", "parallel.pp_schedule=zb-h1",
                                                                 "train.grad_accum=4"}, kSegments},
                      PolicyCase{"llama_tp2_lora_dropout", "llama", 2, {"parallel.tp=2", "lora.r=4",
                                                                           "lora.dropout=0.1", "zero.stage=2"},
                                    kAll},
                      PolicyCase{"gpt2_dp_zero3_ssd", "gpt2", 1, {"zero.stage=3"}, kSsd},
                      PolicyCase{"llama_tp2_host", "llama", 2, {"parallel.tp=2", "zero.stage=1"}, kHost},
                      PolicyCase{"llama_cp2_ssd", "llama", 2, {"parallel.cp=2", "zero.stage=2"}, kSsd},
                      PolicyCase{"gpt2_pp2_1f1b_mixed", "gpt2", 2, {"parallel.pp=2", "parallel.pp_schedule=1f1b",
                                                                    "train.grad_accum=4"}, kAllKinds},
                      PolicyCase{"llama_pp2_zb_ssd", "llama", 2, {"parallel.pp=2", "parallel.pp_schedule=zb-h1",
                                                                  "train.grad_accum=4"}, kSsd},
                      PolicyCase{"gpt2_dp_zero2_optimizer_ssd", "gpt2", 1, {"zero.stage=2"}, kOptimizerOnSsd},
                      PolicyCase{"llama_cp2_tp2_selective", "llama", 4, {"parallel.cp=2", "parallel.tp=2"},
                                 kSelective},
                      // Unified SP: the all-to-all runs again with the recomputed blocks' attention.
                      PolicyCase{"llama_cp4_a2a2", "llama", 4, {"parallel.cp=4", "parallel.cp_a2a=2", "zero.stage=2"},
                                 kSegments},
                      PolicyCase{"gpt2_cp2_a2a2_selective", "gpt2", 2, {"parallel.cp=2", "parallel.cp_a2a=2"},
                                 kSelective},
                      PolicyCase{"gpt2_tp2_sp_selective", "gpt2", 2, {"parallel.tp=2",
                                                                      "parallel.sequence_parallel=true"}, kSelective},
                      PolicyCase{"llama_tp2_zero1_optimizer_ssd", "llama", 2, {"parallel.tp=2", "zero.stage=1"},
                                 kOptimizerOnSsd},
                      PolicyCase{"gpt2_dp_zero3_parameters_ssd", "gpt2", 1, {"zero.stage=3",
                                                                             "train.checkpoint_interval=3"},
                                 kParametersOnSsd},
                      PolicyCase{"llama_dp_zero3_qwz_parameters_host", "llama", 1, {"zero.stage=3",
                                                                                    "zero.quantized_weights=true",
                                                                                    "optim.name=adamw8bit",
                                                                                    "train.grad_accum=2"},
                                 kParametersOnHost},
                      PolicyCase{"gpt2_pp2_zero3_parameters_host", "gpt2", 2, {"parallel.pp=2", "zero.stage=3",
                                                                               "train.grad_accum=4"},
                                 kParametersOnHost},
                      PolicyCase{"llama_tp2_zero3_everything_ssd", "llama", 2, {"parallel.tp=2", "zero.stage=3"},
                                 kEverythingOnSsd},
                      PolicyCase{"gpt2_dp_zero3_stream", "gpt2", 1, {"zero.stage=3"}, kStreamWhole},
                      PolicyCase{"llama_tp2_zero2_stream", "llama", 2, {"parallel.tp=2", "zero.stage=2"}, kStreamWhole},
                      PolicyCase{"llama_tp4_stream", "llama", 4, {"parallel.tp=4", "zero.stage=1"}, kStreamWhole},
                      PolicyCase{"gpt2_pp2_1f1b_stream", "gpt2", 2, {"parallel.pp=2", "parallel.pp_schedule=1f1b",
                                                                     "train.grad_accum=4"}, kStreamWhole},
                      PolicyCase{"llama_tp2_zero3_stream_swap", "llama", 2, {"parallel.tp=2", "zero.stage=3"},
                                 kStreamSwapWhole},
                      PolicyCase{"gpt2_pp2_1f1b_stream_swap", "gpt2", 2, {"parallel.pp=2", "parallel.pp_schedule=1f1b",
                                                                          "train.grad_accum=4"}, kStreamSwapWhole},
                      PolicyCase{"llama_stream_cp2_zero3", "llama", 2, {"parallel.cp=2", "zero.stage=3"}, {}},
                      PolicyCase{"gpt2_stream_cp4_zero2", "gpt2", 4, {"parallel.cp=4", "zero.stage=2"}, {}},
                      PolicyCase{"llama_stream_cp2_tp2", "llama", 4, {"parallel.cp=2", "parallel.tp=2"}, {}},
                      PolicyCase{"llama_stream_cp4_grad_accum", "llama", 4, {"parallel.cp=4", "train.grad_accum=2"},
                                 {}}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace memtrain
