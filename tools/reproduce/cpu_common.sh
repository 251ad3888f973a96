# Shared settings and steps of the CPU miniatures on the built-in glyphs (table8_cpu.sh,
# algorithms_cpu.sh, meta_dataset_cpu.sh; sourced after the script sets RUNS's default, not run).
#
# Environment knobs (all optional): SEEDS ("0 1 2"), METAHYPER (default metahyper), DATA (the
# glyphs cache root, default $RUNS/data, built at 16x16 when missing), PRE_EPOCHS (6),
# PRE_MILESTONES (3,4), EPISODES (test episodes per run, 100).
#
# The script defines `lane MODEL` (every seed of MODEL, one step after another) and calls
# `run_lanes`: the two models' lanes run side by side, one process and one thread each.
set -euo pipefail
SEEDS=${SEEDS:-0 1 2}
METAHYPER=${METAHYPER:-metahyper}
DATA=${DATA:-$RUNS/data}
PRE_EPOCHS=${PRE_EPOCHS:-6}
PRE_MILESTONES=${PRE_MILESTONES:-3,4}
EPISODES=${EPISODES:-100}
MODELS=(wrn-10-1 hyper-wrn-10-1)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # tiny models: one thread is fastest on shared cores
start=$(date +%s)
mkdir -p "$RUNS"

# shellcheck disable=SC2086  # METAHYPER may be "python -m metahyper"
mh() { $METAHYPER "$@"; }

if ! mh datasets --root "$DATA" | grep -q "glyphs-b *test.*ok"; then
    mh prepare glyphs --root "$DATA" --image-size 16 --force
fi

# pretrain_glyphs MODEL SEED OUT: the demo's pretraining on glyphs-a (6 epochs of batch 64, lr 0.05
# x0.2 after epochs 3 and 4; 2 epochs of batch 128 left the glyphs-a val accuracy at chance),
# skipped when OUT finished.
pretrain_glyphs() {
    local model=$1 seed=$2 out=$3
    [[ -f "$out/summary.json" ]] || mh pretrain --dataset glyphs-a --model "$model" --variant 1 --out "$out" \
        --epochs "$PRE_EPOCHS" --batch-size 64 --lr 0.05 --milestones "$PRE_MILESTONES" --val-fraction 0.1 \
        --seed "$seed" --data-root "$DATA" --device cpu --quiet
}

# run_lanes: `lane MODEL` for each model in MODELS, side by side, each logged to $RUNS/lane-MODEL.log.
run_lanes() {
    local model pid failed=0 pids=()
    for model in "${MODELS[@]}"; do
        lane "$model" > "$RUNS/lane-$model.log" 2>&1 &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    if (( failed )); then
        echo "a lane failed; see $RUNS/lane-*.log" >&2
        exit 1
    fi
}

# timed OUT COMMAND...: run COMMAND and write its wall seconds to OUT/<first word>.seconds.
timed() {
    local out=$1 t0
    shift
    t0=$(date +%s)
    mh "$@"
    mkdir -p "$out"
    echo $(( $(date +%s) - t0 )) > "$out/$1.seconds"
}

# wall_time: the script's wall time, printed and written to $RUNS/wall-time.txt.
wall_time() {
    echo "wall time: $(( $(date +%s) - start )) s" | tee "$RUNS/wall-time.txt"
}
