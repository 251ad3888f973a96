# Shared settings and helpers of the paper-reproduction scripts (sourced, not run).
#
# Environment knobs (all optional):
#   RUNS     where run directories go            (default: runs/paper)
#   DEVICE   cpu | cuda | cuda:N | auto           (default: auto)
#   SEEDS    seeds averaged as in the paper       (default: "0 1 2", the paper's 3 runs)
#   WORKERS  DataLoader workers                   (default: 8, at most the CPUs)
#   METAHYPER  the command                        (default: metahyper; several GPUs:
#              METAHYPER="torchrun --nproc_per_node 8 -m metahyper", see the README's multi-GPU section)
# The data caches must exist: `metahyper prepare cifar10|cifar100|fc100 --source ...` and
# `metahyper prepare miniimagenet --source ...` (see `metahyper datasets`).
# Every step is skipped when its run finished (summary.json) and resumed when it was interrupted
# (config.json: --resume continues from last.pt, or starts again when it was killed before one), so
# a script can simply be started again after a crash.
set -euo pipefail
RUNS=${RUNS:-runs/paper}
DEVICE=${DEVICE:-auto}
SEEDS=${SEEDS:-0 1 2}
WORKERS=${WORKERS:-$(( $(nproc) < 8 ? $(nproc) : 8 ))}
METAHYPER=${METAHYPER:-metahyper}

# run_stage OUT COMMAND [ARGS...]: `metahyper COMMAND --out OUT ARGS`, skipped/resumed as above.
run_stage() {
    local out=$1 command=$2
    shift 2
    if [[ -f "$out/summary.json" ]]; then
        echo "done already: $out"
        return
    fi
    local resume=()
    [[ -f "$out/config.json" ]] && resume=(--resume)
    # shellcheck disable=SC2086  # METAHYPER may be a torchrun command line
    $METAHYPER "$command" --out "$out" --device "$DEVICE" --workers "$WORKERS" "${resume[@]}" "$@"
}

# cifar RUN_NAME DATASET MODEL [EXTRA...]: the section 5.1 recipe (Zagoruyko & Komodakis): SGD
# momentum 0.9, lr 0.1, batch 128, 200 epochs, lr x0.2 at 60/120/160, weight decay 5e-4 on plain
# weights, L2 6.25e-5 on generated weights; validated on the test set; one run per seed.
cifar() {
    local name=$1 dataset=$2 model=$3
    shift 3
    for seed in $SEEDS; do
        run_stage "$RUNS/$dataset/$name/seed$seed" pretrain --dataset "$dataset" --model "$model" --eval-split test \
            --epochs 200 --batch-size 128 --lr 0.1 --momentum 0.9 --milestones 60,120,160 --gamma 0.2 \
            --seed "$seed" --quiet "$@"
    done
}

# report DATASET NAME...: mean final test accuracy over seeds of each named CIFAR run.
report() {
    local dataset=$1
    shift
    python - "$RUNS/$dataset" "$@" <<'PY'
import json, statistics, sys
from pathlib import Path
root, names = Path(sys.argv[1]), sys.argv[2:]
for name in names:
    accs = []
    for s in sorted((root / name).glob("seed*/summary.json")):
        d = json.loads(s.read_text())
        accs.append(d.get("swa_val_acc") or d["final"]["val_acc"])
    if accs:
        sd = statistics.pstdev(accs) if len(accs) > 1 else 0.0
        print(f"{root.name:>9} {name:<28} {100 * statistics.mean(accs):6.2f} +- {100 * sd:.2f}  ({len(accs)} runs)")
PY
}

# evaluate JSON ARGS...: `metahyper eval ARGS -o JSON` unless JSON exists; prints the result line.
evaluate() {
    local json=$1
    shift
    if [[ -f "$json" ]]; then
        python -c "import json,sys; d=json.load(open(sys.argv[1])); print(f\"{d['model']} [{d['method']}] {d['dataset']} {d['ways']}-way {d['shots']}-shot: {100*d['mean']:.2f} +- {100*d['ci95']:.2f}\")" "$json"
        return
    fi
    $METAHYPER eval --device "$DEVICE" --episodes 600 --queries 15 --quiet -o "$json" "$@"
}

# Few-shot experiments (section 5.4). The paper gives the meta-training recipe (Sun et al. 2019:
# inner SGD lr 0.01, outer Adam 1e-3 halved every 1000 iterations to 1e-4, meta-batch 4, 15 queries)
# but not the number of iterations, inner steps or the pretraining schedule; these knobs hold our
# choices (MAML's 5 / 10 inner steps; the section 5.1 CIFAR recipe for FC100 pretraining).
ITERATIONS=${ITERATIONS:-5000}
INNER_STEPS=${INNER_STEPS:-5}
INNER_STEPS_EVAL=${INNER_STEPS_EVAL:-10}
# Many inner steps (e.g. INNER_STEPS=50): the checkpointed inner loop keeps second-order memory about
# constant in the steps (same meta-gradient, more time); from 20 steps on, every 4th adapted state is
# kept (the lowest peak measured on Hyper-WRN-16-4, docs/inner-checkpoint.md) unless INNER_CHECKPOINT is set.
INNER_CHECKPOINT=${INNER_CHECKPOINT:-$(( INNER_STEPS >= 20 ? 4 : 0 ))}

# fewshot_pretrain OUT DATASET MODEL EPOCHS MILESTONES [EXTRA...]: classification pretraining on the
# meta-train split's classes (section 4.2), 10% of each class held out for validation, seed 0.
fewshot_pretrain() {
    local out=$1 dataset=$2 model=$3 epochs=$4 milestones=$5
    shift 5
    run_stage "$out" pretrain --dataset "$dataset" --model "$model" --epochs "$epochs" --milestones "$milestones" \
        --batch-size 128 --lr 0.1 --val-fraction 0.1 --seed 0 --quiet "$@"
}

# fewshot_meta OUT TRAIN TEST INIT SHOTS: MAML meta-training (5-way, second order) validated on TEST's
# val split, then the 600-episode test on TEST's test split (mean +- 95% CI) into OUT/test.json.
fewshot_meta() {
    local out=$1 train=$2 test=$3 init=$4 shots=$5
    run_stage "$out" meta-train --train "$train" --test "$test" --init "$init" --ways 5 --shots "$shots" --queries 15 \
        --meta-batch 4 --iterations "$ITERATIONS" --inner-steps "$INNER_STEPS" --inner-steps-eval "$INNER_STEPS_EVAL" \
        --inner-checkpoint "$INNER_CHECKPOINT" \
        --inner-lr 0.01 --outer-lr 1e-3 --lr-halve-every 1000 --min-lr 1e-4 --val-every 500 --val-episodes 300 \
        --seed 0 --quiet
    evaluate "$out/test.json" --checkpoint "$out" --dataset "$test" --split test --ways 5 --shots "$shots" --seed 0
}

# table8_runs MODEL...: FC100-train pretraining + FC100 -> MiniImageNet meta-training at 1 and 5 shots.
table8_runs() {
    for model in "$@"; do
        fewshot_pretrain "$RUNS/fc100/pretrain/$model" fc100 "$model" 200 60,120,160
        for shots in 1 5; do
            fewshot_meta "$RUNS/fc100-to-mini/$model-${shots}shot" fc100 miniimagenet "$RUNS/fc100/pretrain/$model" "$shots"
        done
    done
}
