#!/usr/bin/env bash
# Paper Figure 3: CIFAR-10 validation curves of Hyper-WRN-28-4 (2) with bias, without bias, and
# without bias + generated-weight L2, and the plain WRN-28-4 as the baseline the caption's
# "converges significantly faster" is read against. Uses (and trains if missing) the seed-0 runs of
# Tables 1-3.
# Time (estimated): ~6 GPU-hours on one H100 if none of the runs exist, seconds otherwise.
source "$(dirname "$0")/common.sh"
SEEDS=0
bias="hyper-wrn-28-4-v2-bias-$HYPER_BIAS_INIT-noreg"
cifar "$bias" cifar10 hyper-wrn-28-4 --variant 2 --hyper-bias --hyper-bias-init "$HYPER_BIAS_INIT" --generated-l2 0
cifar hyper-wrn-28-4-v2-noreg cifar10 hyper-wrn-28-4 --variant 2 --generated-l2 0
cifar hyper-wrn-28-4-v2 cifar10 hyper-wrn-28-4 --variant 2
cifar wrn-28-4 cifar10 wrn-28-4
$METAHYPER curves "$RUNS/cifar10/$bias/seed0" "$RUNS/cifar10/hyper-wrn-28-4-v2-noreg/seed0" \
    "$RUNS/cifar10/hyper-wrn-28-4-v2/seed0" "$RUNS/cifar10/wrn-28-4/seed0" -o "$RUNS/figure3.png"
