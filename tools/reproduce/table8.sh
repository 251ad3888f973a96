#!/usr/bin/env bash
# Paper Table 8 (the main result): pretrain and meta-train on FC100's 60 train classes, test on
# 600 5-way MiniImageNet test episodes (cross-domain), WRN-16-4 / 28-4 vs Hyper-WRN (variant 1).
# Models see 32x32 inputs throughout: MiniImageNet test images are resized to the input size the
# model was trained at (eval's default; pass --image-size to eval to change it).
# Pretraining: the section 5.1 recipe (200 epochs, lr x0.2 at 60/120/160) on FC100 train (36k images).
# Meta-training: ITERATIONS (default 5000) second-order iterations, 5 / 10 inner steps.
# Time (estimated, not measured, one H100): pretraining ~0.5 h (16-4) / ~0.8 h (28-4) per model, x1.3
# for hyper; meta-training ~0.3 s (16-4) / ~0.5 s (28-4) per iteration, i.e. 0.5-1 h per run plus
# validation; 4 models x (1 pretrain + 2 meta runs) ~ 10 GPU-hours.
# Paper (1-shot / 5-shot): WRN-16-4 40.75 / 53.2, Hyper (1) 43.17 / 58.66; WRN-28-4 39.65 / 49.8,
# Hyper (1) 43.56 / 58.3.
source "$(dirname "$0")/common.sh"
table8_runs wrn-16-4 hyper-wrn-16-4 wrn-28-4 hyper-wrn-28-4
# Pretrain-only baseline on the same episodes (frozen features + linear head), for context.
for model in wrn-16-4 hyper-wrn-16-4 wrn-28-4 hyper-wrn-28-4; do
    for shots in 1 5; do
        evaluate "$RUNS/fc100/pretrain/$model/mini-test-${shots}shot.json" --checkpoint "$RUNS/fc100/pretrain/$model" \
            --dataset miniimagenet --split test --ways 5 --shots "$shots" --seed 0
    done
done
