#!/usr/bin/env bash
# Paper Figure 5: meta-validation curves (1-shot and 5-shot) of WRN-28-4 vs Hyper-WRN-28-4 (1) in
# the Table 8 setting. Uses (and trains if missing) Table 8's 28-4 runs. Time (estimated): ~5
# GPU-hours on one H100 if missing, seconds otherwise.
source "$(dirname "$0")/common.sh"
table8_runs wrn-28-4 hyper-wrn-28-4
for shots in 1 5; do
    $METAHYPER curves "$RUNS/fc100-to-mini/hyper-wrn-28-4-${shots}shot" "$RUNS/fc100-to-mini/wrn-28-4-${shots}shot" \
        -o "$RUNS/figure5-${shots}shot.png"
done
