#!/usr/bin/env bash
# The GPU benchmark (not part of CI; run through the device tool on a GPU machine). Bundles bench/train.ts, packs it
# with Node, Dawn, the Vulkan loaders and the PyTorch GPU anchor into .gpu/ (../shared/tools/gpu/pack), and prints
# the device call: the server's step at batch 16 and 64 on both WebGPU routes, TensorFlow.js's webgpu backend and
# onnxruntime-node's bundled WebGPU provider (ort-webgpu: the adapted blocks as ONNX graphs), beside PyTorch + PEFT on
# the same GPU, with a per-kernel profile of the TF.js one. Commit what it writes under docs/benchmarks/ with the date
# and the device.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
# ESM for top-level await; the banner gives the bundled CommonJS packages their require() and __dirname (where
# tfjs-backend-wasm looks for its .wasm files).
npx esbuild bench/train.ts --bundle --platform=node --format=esm --external:webgpu --external:onnxruntime-node --log-level=warning --outfile=.gpu-build/bench-train.mjs \
  --banner:js="import { createRequire as bannerRequire } from 'node:module'; import { fileURLToPath as bannerPath } from 'node:url'; const require = bannerRequire(import.meta.url); const __filename = bannerPath(import.meta.url); const __dirname = bannerPath(new URL('.', import.meta.url));"
# Unpacked beside the bundle: onnxruntime-node, which loads a native library (as installed, linux-x64 only); and what
# TF.js's WASM backend (the head, loss and AdamW under ort-webgpu) loads from files: its .wasm builds, and for its
# threads the pthread worker script with the threaded build's scripts it requires.
ort=.gpu-build/ort
wasm=node_modules/@tensorflow/tfjs-backend-wasm
rm -rf "$ort" && mkdir -p "$ort/node_modules/onnxruntime-node/bin/napi-v6/linux" "$ort/$wasm"
cp -r node_modules/onnxruntime-node/package.json node_modules/onnxruntime-node/dist "$ort/node_modules/onnxruntime-node/"
cp -r node_modules/onnxruntime-node/bin/napi-v6/linux/x64 "$ort/node_modules/onnxruntime-node/bin/napi-v6/linux/"
cp -r node_modules/onnxruntime-common "$ort/node_modules/"
cp -r "$wasm/package.json" "$wasm/wasm-out" "$ort/$wasm/"
cp "$wasm"/dist/*.wasm gpu-server/backends/tfjs/wasm-pthread-worker.cjs "$ort/"
tar -C "$ort" -cJf .gpu-build/ort.tar.xz .
../shared/tools/gpu/pack .gpu-build/bench-train.mjs .gpu-build/ort.tar.xz ../shared/anchors/torch_server_step.py
cat <<'CALL'
device call: carry [".gpu"], timeout_s 290, command:
  tar -C .gpu/app -xJf .gpu/app/ort.tar.xz && for b in 16 64; do bash .gpu/run.sh app/bench-train.mjs --batch $b --steps 10 --backends webgpu,ort-webgpu --reference gpu --anchors app --profile > $OUT/train-gpu-b$b.json; done
CALL
