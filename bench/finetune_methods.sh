#!/usr/bin/env bash
# The fine-tuning table of docs/benchmarks.md: every optimizer and adapter method memtrain has, fine-tuning the same
# pretrained model on new text. The base: configs/shakespeare_char.toml with biases, as GPT-2 has them (4 layers,
# width 128, byte vocabulary), trained PRE steps with AdamW, exported as a Hugging Face directory (and scored on the
# new text as it is). Each method then trains STEPS steps on Debian's fortune-cookie texts from it (model.from_hf),
# at two learning rates (warmup 10, cosine to lr / 10), and prints its validation loss, the plan's optimizer-state
# and gradient bytes per parameter of the model (= the allocator's), the sum of the run's per-category peak bytes
# and its mean step time over the last 50 steps.
# Usage: [ONLY=REGEX] bench/finetune_methods.sh [BUILD_DIR] [PRE] [STEPS]   (ONLY: the methods whose names match)
set -euo pipefail
build=${1:-build}
pre=${2:-500}
steps=${3:-200}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$build/memtrain" train configs/shakespeare_char.toml --set model.bias=true --set optim.lr=1e-2 \
  --set optim.min_lr=1e-3 --set optim.warmup_steps=10 --set train.max_steps="$pre" --set optim.decay_steps="$pre" \
  --set train.eval_interval=0 --set output.samples=0 --set train.checkpoint_interval="$pre" \
  --set output.dir="$work/pre" | grep val_loss | sed "s/^/base: /"
"$build/memtrain" convert --to-hf "$work/pre" --out "$work/base" > /dev/null
common=(--set model.from_hf="$work/base" --set data.text=/usr/share/games/fortunes --set train.max_steps="$steps"
        --set optim.decay_steps="$steps" --set optim.warmup_steps=10 --set train.eval_interval=0
        --set output.samples=0 --set output.save_weights=false --set train.log_interval=50)
params=$("$build/memtrain" plan configs/shakespeare_char.toml "${common[@]}" | head -1 |
         sed -E 's/.*, ([0-9]+) parameters,.*/\1/')
echo "model: $params parameters; fine-tuning $steps steps on /usr/share/games/fortunes"
"$build/memtrain" eval configs/shakespeare_char.toml "${common[@]}" --weights "$work/base/model.safetensors" |
  sed "s/^/the base, not fine-tuned: /"
lora="--set lora.r=8 --set lora.alpha=16 --set lora.target_modules=c_attn,c_proj,c_fc"
# name | sets | learning rates
while IFS='|' read -r name sets lrs; do
  [[ "$name" =~ ${ONLY:-.} ]] || continue
  for lr in $lrs; do
    out="$work/$name-$lr"
    # shellcheck disable=SC2086  # $sets holds several --set words
    run=(configs/shakespeare_char.toml "${common[@]}" $sets --set optim.lr="$lr"
         --set optim.min_lr="$(python3 -c "print($lr / 10)")" --set output.dir="$out")
    plan=$("$build/memtrain" plan "${run[@]}" --json)
    "$build/memtrain" train "${run[@]}" > "$out.log"
    grep "^QuAILoRA:" "$out.log" || true
    python3 - "$name" "$lr" "$params" "$plan" "$out" <<'PY'
import json, sys
name, lr, params, plan, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5]
lines = [json.loads(l) for l in open(out + "/metrics.jsonl")]
steps = [l for l in lines if "step_ms" in l]
val = [l["val_loss"] for l in lines if "val_loss" in l][-1]
peak = max(sum(l["mem"].values()) for l in steps)
print(f"{name:12s} lr {lr:5s}: val {val:.4f} | state {plan['optimizer_state'] / params:.3f} B/param | "
      f"grad {plan['gradients'] / params:.3f} B/param | peak {peak / 2**20:.2f} MiB | step {steps[-1]['step_ms']:.1f} ms")
PY
    rm -rf "$out" "$out.log"
  done
done <<LIST
adamw|--set optim.name=adamw|1e-3 3e-3
adamw8bit|--set optim.name=adamw8bit|1e-3 3e-3
adafactor|--set optim.name=adafactor|1e-3 3e-3
smmf|--set optim.name=smmf|1e-3 3e-3
galore_r32|--set optim.name=galore_adamw --set optim.rank=32|3e-3 1e-2
apollo_r32|--set optim.name=apollo --set optim.rank=32|3e-3 1e-2
apollo_mini|--set optim.name=apollo_mini|3e-3 1e-2
coap_r32|--set optim.name=coap_adamw --set optim.rank=32|3e-3 1e-2
lisa_1of4|--set optim.lisa_layers=1|1e-3 3e-3
zo_sgd|--set optim.name=zo_sgd|1e-4 3e-4
lora_r8|$lora|3e-3 1e-2
lora_fa_r8|$lora --set lora.fa=true|3e-3 1e-2
qlora_r8|$lora --set lora.quantize_base=nf4|3e-3 1e-2
lora_ga_r8|$lora --set lora.init=lora_ga|3e-3 1e-2
quailora_r8|$lora --set lora.quantize_base=nf4 --set lora.init=quailora|3e-3 1e-2
plora_r8_k50|$lora --set lora.periodic_interval=50|3e-3 1e-2
LIST
