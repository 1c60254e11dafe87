#!/bin/sh
# The commands that produced the example reports in this folder (they are copied here unedited).
#   sh experiments/reports/make_examples.sh relu-cpu   [WORK]   Figure 1, tiny, on a CPU
#   sh experiments/reports/make_examples.sh ablate-demo [WORK]  ablation table + Figures 3-4: the
#       demo's recipe and data (experiments/configs/demo.yaml), baseline, remove_conv3, no_lrn, CPU
# WORK (default ./examples_work) holds the generated data and the runs; run from the repo root.
# The data is GENERATED (no download here): `alexnet experiment generate cifar10` writes a learnable
# CIFAR-like set in the real python-batch format, `alexnet prep synthetic` an ImageNet-shaped one.
set -e
WHAT=${1:?usage: make_examples.sh relu-cpu|ablate-demo [WORK]}
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
ablate-demo)
    # the demo's synthetic set and recipe (experiments/configs/demo.yaml: its `demo:` sizes and
    # every key it changes from the paper), as `alexnet demo` makes them; prepared data is immutable
    [ -f data/imagenet_demo/val/manifest.json ] || {
        $A prep synthetic --classes 10 --train-per-class 160 --val-per-class 20 --seed 0 \
            raw/imagenet_demo
        $A prep imagenet --input raw/imagenet_demo --out data/imagenet_demo --workers 2
    }
    VERSIONS=$(${PYTHON:-python3} -c 'import platform, torch; print(f"torch {torch.__version__}, Python {platform.python_version()}")')
    $A experiment ablate --data data/imagenet_demo --runs runs_demo --variants remove_conv3,no_lrn \
        --seeds 0 --quiet \
        --note "Data: the demo's synthetic ImageNet-shaped set (alexnet prep synthetic: 10 classes, 1,600 training and 200 validation images). Every run: the demo's recipe (experiments/configs/demo.yaml: Caffe init, batch 32, 3 epochs of 50 steps, rate divided by 10 after epoch 2), seed 0. Run $(date -u +%Y-%m-%d) on a 2-core shared CPU VM, fp32, $VERSIONS." \
        model.num_classes=10 model.init=caffe optim.batch_size=32 schedule.kind=milestones \
        "schedule.milestones=[2]" train.epochs=3 train.log_every=10 train.checkpoint_every=50 \
        train.keep_last=1 data.workers=0 eval.batch_size=50
    rm -rf "$HERE/ablate_demo_cpu" && cp -r runs_demo/ablate/report "$HERE/ablate_demo_cpu"
    $A experiment figures --run-dir runs_demo/ablate/paper/seed0 --data data/imagenet_demo \
        --queries 3 --out runs_demo/figures_report
    rm -rf "$HERE/figures_demo_cpu" && cp -r runs_demo/figures_report "$HERE/figures_demo_cpu"
    ;;
*)
    echo "unknown example $WHAT (relu-cpu, ablate-demo)" >&2
    exit 2
    ;;
esac
