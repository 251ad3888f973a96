#!/usr/bin/env bash
# Paper Table 6: compression (section 5.3): Hyper-WRN-28-4 (1, C) with seeded frozen embeddings
# (only hypernetworks + plain layers stored, 1.23M) vs WRN-10-4 (1.22M) and WRN-28-4 (5.8M).
# Runs: 3 models x 2 datasets x 3 seeds = 18 CIFAR trainings of 200 epochs (WRN-28-4 shared with Table 3).
# Time (estimated, not measured, one H100): WRN-10-4 ~0.4 h, Hyper (C) ~1.3 h per run; ~12 GPU-hours.
# Paper (C10 / C100): WRN-28-4 95.65 / 78.62, WRN-10-4 92.32 / 71.49, Hyper-WRN-28-4 (C) 94.71 / 74.91.
source "$(dirname "$0")/common.sh"
for dataset in cifar10 cifar100; do
    cifar wrn-28-4 "$dataset" wrn-28-4
    cifar wrn-10-4 "$dataset" wrn-10-4
    cifar hyper-wrn-28-4-compressed "$dataset" hyper-wrn-28-4 --variant 1 --compressed --embedding-seed 0
    cifar_report "$dataset" wrn-28-4 wrn-10-4 hyper-wrn-28-4-compressed
done
$METAHYPER models
