#!/bin/sh
# The commands that produced the example reports in this folder (they are copied here unedited).
#   sh experiments/reports/make_examples.sh relu-cpu   [WORK]   Figure 1, tiny, on a CPU
#   sh experiments/reports/make_examples.sh ablate-cpu [WORK]   ablation table + Figures 3-4, tiny, CPU
# WORK (default ./examples_work) holds the generated data and the runs; run from the repo root.
# The data is GENERATED (no download here): `alexnet experiment generate cifar10` writes a learnable
# CIFAR-like set in the real python-batch format, `alexnet prep synthetic` an ImageNet-shaped one.
set -e
WHAT=${1:?usage: make_examples.sh relu-cpu|ablate-cpu [WORK]}
WORK=${2:-examples_work}
HERE=$(cd "$(dirname "$0")" && pwd)
# the repo's packages importable from WORK without an install; PYTHON = the interpreter to use
export PYTHONPATH="$(cd "$HERE/../.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
A="$(command -v "${PYTHON:-python3}") -m paper_alexnet"
mkdir -p "$WORK"
cd "$WORK"
case "$WHAT" in
relu-cpu)
    $A experiment generate cifar10 raw/cifar_small --train 5000 --test 1000
    $A prep cifar10 --input raw/cifar_small --out data/cifar_small
    $A experiment relu-vs-tanh --data data/cifar_small --runs runs_cpu --quiet \
        --search-epochs 2 --epochs 12 \
        --note "GENERATED CIFAR-like data (5,000 training images, not CIFAR-10), 2-core CPU." \
        data.workers=0
    rm -rf "$HERE/relu_vs_tanh_cpu_tiny" && cp -r runs_cpu/relu_vs_tanh/report "$HERE/relu_vs_tanh_cpu_tiny"
    ;;
ablate-cpu)
    $A prep synthetic --classes 10 --train-per-class 20 --val-per-class 5 raw/imagenet_tiny
    $A prep imagenet --input raw/imagenet_tiny --out data/imagenet_tiny --workers 1
    $A experiment ablate --data data/imagenet_tiny --runs runs --seeds 0,1 --quiet \
        --note "Data: a synthetic ImageNet-shaped set (alexnet prep synthetic: 10 classes, 200 training and 50 validation images), 1 epoch of 6 steps per run on a 2-core CPU." \
        model.num_classes=10 train.epochs=1 optim.batch_size=32 data.workers=0
    rm -rf "$HERE/ablate_cpu_tiny" && cp -r runs/ablate/report "$HERE/ablate_cpu_tiny"
    $A experiment figures --run-dir runs/ablate/paper/seed0 --data data/imagenet_tiny --queries 3 \
        --out runs/figures_report
    rm -rf "$HERE/figures_cpu_tiny" && cp -r runs/figures_report "$HERE/figures_cpu_tiny"
    ;;
*)
    echo "unknown example $WHAT (relu-cpu, ablate-cpu)" >&2
    exit 2
    ;;
esac
