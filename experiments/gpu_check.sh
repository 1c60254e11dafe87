#!/usr/bin/env bash
# The speed and GPU checks a session with a CUDA device should run, in one go:
# about 6 minutes on one H100. Everything it produces goes under OUT_DIR:
#   env.txt           nvidia-smi, CPU, versions
#   bench_cuda.txt    `alexnet bench --device cuda --compile` tables (batch 128, bf16, channels_last)
#   bench_cuda.json   the same figures, with hardware, versions and date
#   pytest_gpu.txt    `pytest -m gpu` (the GPU-only tests of every part)
#   lrn_kernels.txt   bench_lrn.compare_kernels: the three channels_last LRN kernel designs timed
#                     against each other and the reference (decides lrn_triton.CHANNELS_LAST_KERNEL)
#   status.txt        the exit code of each step
# usage: experiments/gpu_check.sh OUT_DIR      (from the repository root; PYTHON=... to choose)
set -u
out=${1:?usage: experiments/gpu_check.sh OUT_DIR}
mkdir -p "$out"
py=${PYTHON:-python}
if [ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ]; then py=.venv/bin/python; fi

{
  date -u
  nvidia-smi || true
  lscpu | grep -E "Model name|^CPU\(s\)" || true
  "$py" -c "import torch, torchvision, PIL, sys; print('python', sys.version.split()[0]); \
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', \
torch.backends.cudnn.version()); print('torchvision', torchvision.__version__); \
print('pillow', PIL.__version__); print('gpus', [torch.cuda.get_device_name(i) for i in \
range(torch.cuda.device_count())])"
} > "$out/env.txt" 2>&1

# 1. every figure of `alexnet bench` on the GPU, eager and compiled (~3 min on an H100)
timeout 330 "$py" -m experiments.bench --device cuda --compile --json "$out/bench_cuda.json" \
  > "$out/bench_cuda.txt" 2>&1
echo "bench: exit $?" > "$out/status.txt"

# 2. the GPU-only tests (LRN kernels, pipeline on CUDA, placement, training loop; ~1 min)
timeout 150 "$py" -m pytest -q -m gpu -p no:cacheprovider > "$out/pytest_gpu.txt" 2>&1
echo "pytest -m gpu: exit $?" >> "$out/status.txt"

# 3. the LRN kernel designs side by side at the towers' conv1/conv2 sizes (~30 s; docs/lrn.md)
timeout 90 "$py" -c "import torch; from experiments import bench_lrn as L
for s in [(128, 48, 55, 55), (128, 128, 27, 27), (128, 96, 55, 55), (128, 256, 27, 27)]:
    for dt in (torch.bfloat16, torch.float32): print(L.compare_kernels(s, dt), flush=True)" \
  > "$out/lrn_kernels.txt" 2>&1
echo "lrn kernels: exit $?" >> "$out/status.txt"

cat "$out/status.txt"
