#!/usr/bin/env bash
# Prepares .gpubench/ (ignored by git) for the device tool: this machine's Node (xz), the webgpu
# package's Linux binary, the bundled webgpu bench, the torch script, and the Vulkan loader .debs.
# Then, in one `run` call with carry [".gpubench"]:
#   bash .gpubench/run.sh        (writes $OUT/webgpu.json, $OUT/torch.json, $OUT/log)
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.gpubench/' .git/info/exclude || echo '/.gpubench/' >> .git/info/exclude
rm -rf .gpubench && mkdir -p .gpubench/node_modules/webgpu/dist/linux-x64 .gpubench/debs /tmp/amd64/partial
npm run build >/dev/null
npx esbuild scripts/device/webgpu-bench-entry.mjs --bundle --platform=node --format=esm --target=node20 \
  --external:webgpu --outfile=.gpubench/webgpu-bench.mjs --log-level=warning
cp node_modules/webgpu/index.js node_modules/webgpu/package.json .gpubench/node_modules/webgpu/
cp node_modules/webgpu/dist/linux-x64/dawn.node .gpubench/node_modules/webgpu/dist/linux-x64/
for dep in debug ms; do cp -r "node_modules/$dep" .gpubench/node_modules/ 2>/dev/null || true; done
xz -T0 -6 -c "$(readlink -f "$(command -v node)")" > .gpubench/node.xz
cp scripts/device/torch_vgg19_bench.py scripts/device/torch_transformer_bench.py scripts/torch_transformer.py scripts/train-step-peer.py .gpubench/
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
apt-get $o update -qq && (cd .gpubench/debs && apt-get $o download libvulkan1 >/dev/null)
cat > .gpubench/run.sh <<'RUN'
#!/usr/bin/env bash
set -uo pipefail
cd "$(dirname "$0")"
for f in debs/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
xz -dc node.xz > /tmp/node && chmod +x /tmp/node
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$OUT/log"
timeout 300 /tmp/node webgpu-bench.mjs 10 3 512 512,1024 4x256 > "$OUT/webgpu.json" 2>> "$OUT/log"; echo "webgpu rc $?" | tee -a "$OUT/log"
PYTHONUNBUFFERED=1 timeout 150 python3 torch_vgg19_bench.py --repeat 10 --warmup 3 > "$OUT/torch.json" 2>> "$OUT/log"; echo "torch rc $?" | tee -a "$OUT/log"
PYTHONUNBUFFERED=1 timeout 120 python3 torch_transformer_bench.py --repeat 10 --warmup 3 > "$OUT/torch-transformer.json" 2>> "$OUT/log"; echo "torch transformer rc $?" | tee -a "$OUT/log"
cat "$OUT/webgpu.json" "$OUT/torch.json" "$OUT/torch-transformer.json"
RUN
du -sh .gpubench
