#!/usr/bin/env bash
# Paper Table 1: removing the hypernetwork bias (variant 2), CIFAR-10/100, no generated-weight L2.
# The bias starts as PyTorch's convolution bias (HYPER_BIAS_INIT=zero: at zero; see common.sh).
# Runs: 2 models x 2 (bias / no bias) x 2 datasets x 3 seeds = 24 CIFAR trainings of 200 epochs.
# Time (estimated, not measured): Hyper-WRN-40-2 (2) ~1 h, Hyper-WRN-28-4 (2) ~1.5 h per run on one
# H100 with --workers 8; about 30 GPU-hours in all (fewer with SEEDS=0).
# Paper: 40-2 W bias 91.89 / 68.15, W/O 93.99 / 73.42; 28-4 W bias 92.96 / 70.73, W/O 94.72 / 76.03.
source "$(dirname "$0")/common.sh"
for dataset in cifar10 cifar100; do
    for depth_width in 40-2 28-4; do
        cifar "hyper-wrn-$depth_width-v2-bias-$HYPER_BIAS_INIT-noreg" "$dataset" "hyper-wrn-$depth_width" --variant 2 \
            --hyper-bias --hyper-bias-init "$HYPER_BIAS_INIT" --generated-l2 0
        cifar "hyper-wrn-$depth_width-v2-noreg" "$dataset" "hyper-wrn-$depth_width" --variant 2 --generated-l2 0
    done
    cifar_report "$dataset" "hyper-wrn-40-2-v2-bias-$HYPER_BIAS_INIT-noreg" hyper-wrn-40-2-v2-noreg \
        "hyper-wrn-28-4-v2-bias-$HYPER_BIAS_INIT-noreg" hyper-wrn-28-4-v2-noreg
done
