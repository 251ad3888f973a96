#!/usr/bin/env bash
# Paper Figure 3: CIFAR-10 validation curves of Hyper-WRN-28-4 (2) with bias, without bias, and
# without bias + generated-weight L2. Uses (and trains if missing) the seed-0 runs of Tables 1-2.
# Time (estimated): ~4.5 GPU-hours on one H100 if none of the runs exist, seconds otherwise.
source "$(dirname "$0")/common.sh"
SEEDS=0
cifar hyper-wrn-28-4-v2-bias-noreg cifar10 hyper-wrn-28-4 --variant 2 --hyper-bias --generated-l2 0
cifar hyper-wrn-28-4-v2-noreg cifar10 hyper-wrn-28-4 --variant 2 --generated-l2 0
cifar hyper-wrn-28-4-v2 cifar10 hyper-wrn-28-4 --variant 2
$METAHYPER curves "$RUNS/cifar10/hyper-wrn-28-4-v2-bias-noreg/seed0" "$RUNS/cifar10/hyper-wrn-28-4-v2-noreg/seed0" \
    "$RUNS/cifar10/hyper-wrn-28-4-v2/seed0" -o "$RUNS/figure3.png"
