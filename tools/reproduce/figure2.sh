#!/usr/bin/env bash
# Paper Figure 2: ||P|| / ||grad P|| of the embeddings per stage during CIFAR-10 training of
# Hyper-WRN-28-4 (2), with and without hypernetwork bias (logged every epoch by `pretrain`).
# Model and dataset are ours (the paper names neither for Figure 2). Uses (and trains if missing)
# Table 1's seed-0 runs. Time (estimated): ~3 GPU-hours on one H100 if
# the runs do not exist yet, seconds otherwise.
source "$(dirname "$0")/common.sh"
SEEDS=0
bias="hyper-wrn-28-4-v2-bias-$HYPER_BIAS_INIT-noreg"
cifar "$bias" cifar10 hyper-wrn-28-4 --variant 2 --hyper-bias --hyper-bias-init "$HYPER_BIAS_INIT" --generated-l2 0
cifar hyper-wrn-28-4-v2-noreg cifar10 hyper-wrn-28-4 --variant 2 --generated-l2 0
$METAHYPER curves "$RUNS/cifar10/$bias/seed0" "$RUNS/cifar10/hyper-wrn-28-4-v2-noreg/seed0" \
    --ratio-group embeddings -o "$RUNS/figure2.png"
