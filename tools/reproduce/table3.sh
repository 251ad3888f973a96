#!/usr/bin/env bash
# Paper Table 3: WRNs vs Hyper-WRNs (variants 1 and 2) on CIFAR-10/100, and the exported test-time
# parameter counts. Runs: 7 models x 2 datasets x 3 seeds = 42 CIFAR trainings of 200 epochs.
# Time (estimated, not measured, one H100, --workers 8): WRN-40-2 ~0.7 h, WRN-28-4 ~1 h,
# Hyper variants 1.2-1.5x their WRN, WRN-100-4 ~3.5 h per run; about 90 GPU-hours in all.
# Paper (C10 / C100): WRN-40-2 94.80 / 76.06, Hyper (1) 95 / 75.70, Hyper (2) 95.20 / 76.77,
# WRN-28-4 95.65 / 78.62, Hyper (1) 95.65 / 78.49, Hyper (2) 95.9 / 79.20, WRN-100-4 95.9 / 79.23.
source "$(dirname "$0")/common.sh"
for dataset in cifar10 cifar100; do
    for depth_width in 40-2 28-4; do
        cifar "wrn-$depth_width" "$dataset" "wrn-$depth_width"
        cifar "hyper-wrn-$depth_width-v1" "$dataset" "hyper-wrn-$depth_width" --variant 1
        cifar "hyper-wrn-$depth_width-v2" "$dataset" "hyper-wrn-$depth_width" --variant 2
    done
    cifar wrn-100-4 "$dataset" wrn-100-4
    cifar_report "$dataset" wrn-40-2 hyper-wrn-40-2-v1 hyper-wrn-40-2-v2 wrn-28-4 hyper-wrn-28-4-v1 hyper-wrn-28-4-v2 wrn-100-4
done
# Train / test parameter counts beside the paper's, and one export as the deployable plain network.
$METAHYPER models
$METAHYPER export --checkpoint "$RUNS/cifar100/hyper-wrn-28-4-v2/seed0" -o "$RUNS/cifar100/hyper-wrn-28-4-v2/seed0/plain.pt"
