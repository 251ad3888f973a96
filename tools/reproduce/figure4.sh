#!/usr/bin/env bash
# Paper Figure 4: inner-loop movement of the generated weights (Hyper-WRN-28-4 (1)) vs the raw
# weights (WRN-28-4) during FC100 -> MiniImageNet meta-training, for the paper's three layers
# (stage 1 block 2 conv 1, stage 2 block 2 conv 2, stage 3 block 4 conv 2), log scale.
# Uses (and trains if missing) Table 8's 28-4 runs at 32 px, first seed of SEEDS, of SELECT_ON.
# Ours: 1-shot and 32 px (the paper names neither).
source "$(dirname "$0")/common.sh"
table8_runs 32 wrn-28-4 hyper-wrn-28-4
seed=${SEEDS%% *}
meta="$RUNS/fc100-32/$(table8_meta_dir)"
$METAHYPER movement-plot "$meta/hyper-wrn-28-4-1shot/seed$seed" "$meta/wrn-28-4-1shot/seed$seed" \
    --paper-layers --smooth 20 -o "$RUNS/figure4.png"
