#!/usr/bin/env bash
# Paper Figure 5: "Validation curves on 1-shot and 5-shot tasks, with experimental setup similar to
# Table 8", WRN-28-4 vs Hyper-WRN-28-4 (1). The paper does not say which dataset's validation
# classes; these are the curves the runs log, on FC100's val classes (the selection data).
# Uses (and trains if missing) Table 8's 28-4 runs at 32 px, first seed of SEEDS.
source "$(dirname "$0")/common.sh"
table8_runs 32 wrn-28-4 hyper-wrn-28-4
seed=${SEEDS%% *}
for shots in 1 5; do
    $METAHYPER curves "$RUNS/fc100-32/to-mini/hyper-wrn-28-4-${shots}shot/seed$seed" \
        "$RUNS/fc100-32/to-mini/wrn-28-4-${shots}shot/seed$seed" -o "$RUNS/figure5-${shots}shot.png"
done
