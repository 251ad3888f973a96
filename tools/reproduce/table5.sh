#!/usr/bin/env bash
# Paper Table 5: SWA for WRN-28-4 and Hyper-WRN-28-4 (2) on CIFAR-10/100. The paper says "300 epochs
# of SWA training" and cites Izmailov et al. for SWA, whose CIFAR-100 WRN recipe this follows: 300
# epochs, lr 0.1, weight decay 5e-4, lr constant for the first half of the 161 pre-averaging epochs,
# linear to swa_lr 0.05 by 90% of them, then constant; weights averaged every epoch from epoch 161
# (1-based; --swa-start 160 here), BatchNorm statistics recomputed at the end. Everything else as
# section 5.1 / Zagoruyko & Komodakis (Nesterov, reflection padding; Izmailov et al.'s own code uses
# plain momentum and zero padding: add --no-nesterov --pad-mode zeros for theirs exactly).
# Runs: 2 models x 2 datasets x 3 seeds = 12 trainings of 300 epochs.
# Time (estimated, not measured, one H100): ~1.5 h (WRN) / ~2.2 h (Hyper) per run; ~22 GPU-hours.
# Paper (C10 / C100): WRN-28-4 + SWA 95.86 / 80.76, Hyper-WRN-28-4 (2) + SWA 96.35 / 81.59.
source "$(dirname "$0")/common.sh"
swa=(--epochs 300 --lr-schedule swa --swa-start 160 --swa-lr 0.05 --weight-decay 5e-4)
for dataset in cifar10 cifar100; do
    cifar wrn-28-4-swa "$dataset" wrn-28-4 "${swa[@]}"
    cifar hyper-wrn-28-4-v2-swa "$dataset" hyper-wrn-28-4 --variant 2 "${swa[@]}"
    cifar_report "$dataset" wrn-28-4-swa hyper-wrn-28-4-v2-swa
done
