#!/usr/bin/env bash
# Paper Table 7: MiniImageNet only (pretrain on the 64 train classes, meta-train on train tasks,
# validate on val, test on 600 test episodes), ResNet-12 vs HyperResNet-12 (variant 1, Algorithm 2).
# Pretraining schedule (not in the paper): 100 epochs at 84x84, lr 0.1 x0.2 at 30/60/90.
# Meta-training: ITERATIONS (default 5000) second-order iterations, 5 / 10 inner steps.
# Time (estimated, not measured, one H100): pretraining ~2 h per model; meta-training of ResNet-12
# at 84x84 (second order, 5 steps, 4 tasks of 80 images) ~1.5 s per iteration, ~2 h per run;
# 4 meta runs + 2 pretrain runs ~ 12 GPU-hours (second-order ResNet-12 needs ~30-40 GB of GPU memory).
# Paper (1-shot / 5-shot): ResNet-12 57.65 / 74.33, HyperResNet-12 58 / 73.
source "$(dirname "$0")/common.sh"
for model in resnet-12 hyper-resnet-12; do
    fewshot_pretrain "$RUNS/miniimagenet/pretrain/$model" miniimagenet "$model" 100 30,60,90 --variant 1
    for shots in 1 5; do
        fewshot_meta "$RUNS/miniimagenet/meta/$model-${shots}shot" miniimagenet miniimagenet "$RUNS/miniimagenet/pretrain/$model" "$shots"
    done
done
