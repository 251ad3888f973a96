#!/usr/bin/env bash
# Paper Figure 5: "Validation curves on 1-shot and 5-shot tasks, with experimental setup similar to
# Table 8", WRN-28-4 vs Hyper-WRN-28-4 (1), convergence "on these cross-domain tasks": the
# MiniImageNet val curves the Table 8 runs log (they validate on FC100 val too: one line per run and
# validated dataset, the selection dataset solid). Uses (and trains if missing) Table 8's 28-4 runs at 32 px, first seed
# of SEEDS, of SELECT_ON (default target; the curves do not depend on it).
source "$(dirname "$0")/common.sh"
table8_runs 32 wrn-28-4 hyper-wrn-28-4
seed=${SEEDS%% *}
meta="$RUNS/fc100-32/$(table8_meta_dir)"
for shots in 1 5; do
    $METAHYPER curves "$meta/hyper-wrn-28-4-${shots}shot/seed$seed" "$meta/wrn-28-4-${shots}shot/seed$seed" \
        -o "$RUNS/figure5-${shots}shot.png"
done
