#!/usr/bin/env bash
# Mixed precision on one GPU, in one short run (about 5 minutes on an A100/H100-class GPU):
#   1. the AMP training paths for real: a tiny pre-training through `vimpac pretrain`'s launcher
#      (torchrun, 1 rank, NCCL) in bf16 and in fp16 (with its loss scaler), each resumed once;
#   2. bench/bench_precision.py on the GPU: train steps in fp32 / bf16 / fp16 of the small and
#      Large-Half presets (tokens/s, model FLOP utilisation), DALL-E and VQ-VAE encoding in fp32 vs
#      bf16 (frames/s, code agreement on real frames).
# Figures go to OUT (default bench/out/gpu): machine.txt, amp_runs.json, precision_gpu.json.
#
#   bash bench/gpu.sh [OUT]          # from the repository root, with the project's venv
#   PYTHON=python3 bash bench/gpu.sh # another interpreter (needs a CUDA build of torch)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-bench/out/gpu}"
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

"$PY" - <<'EOF' > "$OUT/machine.txt"
import platform, torch
assert torch.cuda.is_available(), "no CUDA device: this script measures a GPU"
p = torch.cuda.get_device_properties(0)
print(f"date {__import__('datetime').datetime.utcnow():%Y-%m-%d %H:%M} UTC")
print(f"gpu {p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability {p.major}.{p.minor}, {p.multi_processor_count} SMs")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
print(f"bf16 native {torch.cuda.is_bf16_supported(including_emulation=False)}, tf32 matmul {torch.backends.cuda.matmul.allow_tf32}")
print(f"python {platform.python_version()}, cpu {platform.processor() or platform.machine()}")
EOF
cat "$OUT/machine.txt"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv >> "$OUT/machine.txt" 2>/dev/null || true

echo "== AMP training runs (bf16, fp16) through the launcher =="
timeout 600 "$PY" - "$OUT" <<'EOF'
import json, sys, tempfile
from pathlib import Path
from vimpac_core.shards.synthetic import token_rows, write_token_shards
from vimpac_core.train.config import PretrainConfig
from vimpac_core.train.launch import launch_stage


def tiny_shards(root, videos):
    write_token_shards(str(root), token_rows(videos, grid=4, frames=[4, 6, 9], vocab_size=64))
    return str(root)


def tiny_config(data, output, **over):  # a 1-layer, 128-wide model at frame 32, clip of 2 frames
    return PretrainConfig.from_flat(dict(
        layers=1, hid_dim=128, frame_size=32, clip_len=2, vocab_size=64, nce_proj_hid_dim=64, mask_blocks=2,
        frame_rate=1, data=data, output=output, bs_per_gpu=2, num_workers=0, epochs=2, log_every=1, seed=3,
        **over))

out = Path(sys.argv[1])
results = {}
with tempfile.TemporaryDirectory() as tmp:
    data = tiny_shards(Path(tmp) / "data", videos=24)
    for amp in ("bf16", "fp16"):
        cfg = tiny_config(data, f"{tmp}/{amp}", device="cuda", amp=amp, epochs=2, save_every=3, max_steps=8,
                          bs_per_gpu=4)
        first = launch_stage(cfg, on_line=print, timeout_s=240)
        more = launch_stage(cfg.model_copy(update={"resume": True, "max_steps": 12}), on_line=print, timeout_s=240)
        results[amp] = {"first": first, "resumed": more}
        assert first["step"] == 8 and more["step"] == 12, (first, more)
(out / "amp_runs.json").write_text(json.dumps(results, indent=1) + "\n")
print(json.dumps({amp: {k: v.get("loss") for k, v in r.items()} for amp, r in results.items()}))
EOF

echo "== bench_precision on cuda =="
timeout 900 "$PY" -m bench.bench_precision --device cuda --presets small large_half --amps fp32 bf16 fp16 \
    --out "$OUT/precision_gpu.json"
echo "figures: $OUT/machine.txt $OUT/amp_runs.json $OUT/precision_gpu.json"
