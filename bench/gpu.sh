#!/usr/bin/env bash
# The GPU benchmark (not part of CI; run through the device tool on a GPU machine). Bundles bench/train.ts, packs it
# with Node, Dawn, the Vulkan loaders and the PyTorch GPU anchor into .gpu/ (../shared/tools/gpu/pack), and prints
# the device call: the server's step on WebGPU at batch 16 and 64 beside PyTorch + PEFT on the same GPU, with a
# per-kernel profile. Commit what it writes under docs/benchmarks/ with the date and the device.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
# ESM for top-level await; the banner gives the bundled CommonJS packages their require().
npx esbuild bench/train.ts --bundle --platform=node --format=esm --external:webgpu --log-level=warning --outfile=.gpu-build/bench-train.mjs \
  --banner:js="import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);"
../shared/tools/gpu/pack .gpu-build/bench-train.mjs ../shared/anchors/torch_server_step.py
cat <<'CALL'
device call: carry [".gpu"], timeout_s 290, command:
  for b in 16 64; do bash .gpu/run.sh app/bench-train.mjs --batch $b --steps 10 --backends webgpu --reference gpu --anchors app --profile > $OUT/train-gpu-b$b.json; done
CALL
