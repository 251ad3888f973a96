#!/usr/bin/env bash
# Paper Table 5: SWA (300 epochs) for WRN-28-4 and Hyper-WRN-28-4 (2) on CIFAR-10/100.
# The paper gives only "300 epochs of SWA training"; here: the section 5.1 schedule for the first
# 160 epochs (lr x0.2 at 60 and 120), then SWA from epoch 160 to 300 with SWALR to 0.05 and the
# BatchNorm statistics recomputed at the end (torch.optim.swa_utils). The averaged model is the run's.
# Runs: 2 models x 2 datasets x 3 seeds = 12 trainings of 300 epochs.
# Time (estimated, not measured, one H100): ~1.5 h (WRN) / ~2.2 h (Hyper) per run; ~22 GPU-hours.
# Paper (C10 / C100): WRN-28-4 + SWA 95.86 / 80.76, Hyper-WRN-28-4 (2) + SWA 96.35 / 81.59.
source "$(dirname "$0")/common.sh"
for dataset in cifar10 cifar100; do
    cifar wrn-28-4-swa "$dataset" wrn-28-4 --epochs 300 --milestones 60,120 --swa-start 160 --swa-lr 0.05
    cifar hyper-wrn-28-4-v2-swa "$dataset" hyper-wrn-28-4 --variant 2 --epochs 300 --milestones 60,120 --swa-start 160 --swa-lr 0.05
    report "$dataset" wrn-28-4-swa hyper-wrn-28-4-v2-swa
done
