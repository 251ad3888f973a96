#!/usr/bin/env bash
# Paper Table 4: ResNet-18/34 vs HyperResNet-18/34 (variant 2) on CIFAR-10/100 (the CIFAR ResNets
# of DeVries & Taylor) and on ImageNet (He et al.'s ResNets: 7x7 stride-2 stem + max-pool).
# CIFAR runs: 4 models x 2 datasets x 3 seeds = 24 trainings of 200 epochs.
# Time (estimated, not measured, one H100): ResNet-18 ~1 h, ResNet-34 ~2 h, Hyper 1.3-1.5x; ~50 GPU-hours.
# Paper (C10 / C100): ResNet-18 95.27 / 77.92, HyperResNet-18 (2) 95.52 / 78.81,
# ResNet-34 95.34 / 79, HyperResNet-34 (2) 95.62 / 79.30.
#
# ImageNet column (section 5.2), run when IMAGENET=DIR is set (DIR/train/<wnid>/, DIR/val/<wnid>/,
# see docs/datasets.md). Recipe of section 5.2: SGD momentum 0.9, lr 0.1 divided by 10 every 30
# epochs, 100 epochs, weight decay 1e-4 on the plain weights (the paper's "x10^-4"; He et al.'s
# value), L2 6.25e-5 on generated weights; batch 256 and 224 px crops are He et al.'s (the paper
# gives neither). Runs: 4 models x IMAGENET_SEEDS (default one seed: our choice, the paper does not
# say how many ImageNet runs it averages).
# Time (estimated, not measured): about a day per ResNet-18 run on one H100 with 16 loader workers
# (PIL decoding bounds it), more for ResNet-34 and the hyper models; use several GPUs
# (METAHYPER="torchrun --nproc_per_node 8 -m metahyper", WORKERS per process).
# Paper (ImageNet top-1): ResNet-18 70.05, HyperResNet-18 (2) 70.01, ResNet-34 73.58, HyperResNet-34 (2) 73.87.
source "$(dirname "$0")/common.sh"
IMAGENET=${IMAGENET:-}
IMAGENET_SEEDS=${IMAGENET_SEEDS:-0}

for dataset in cifar10 cifar100; do
    for depth in 18 34; do
        cifar "resnet-$depth" "$dataset" "resnet-$depth"
        cifar "hyper-resnet-$depth-v2" "$dataset" "hyper-resnet-$depth" --variant 2
    done
    cifar_report "$dataset" resnet-18 hyper-resnet-18-v2 resnet-34 hyper-resnet-34-v2
done

# imagenet RUN_NAME MODEL [EXTRA...]: one pretrain run per seed of IMAGENET_SEEDS, validated on val/.
imagenet() {
    local name=$1 model=$2
    shift 2
    for seed in $IMAGENET_SEEDS; do
        run_stage "$RUNS/imagenet/$name/seed$seed" pretrain --dataset imagenet --data-root "$IMAGENET" --model "$model" \
            --stem imagenet --image-size 224 --epochs 100 --batch-size 256 --lr 0.1 --momentum 0.9 \
            --milestones 30,60,90 --gamma 0.1 --weight-decay 1e-4 --seed "$seed" --quiet "$@"
    done
}

if [[ -n "$IMAGENET" ]]; then
    for depth in 18 34; do
        imagenet "resnet-$depth" "resnet-$depth"
        imagenet "hyper-resnet-$depth-v2" "hyper-resnet-$depth" --variant 2
    done
    cifar_report imagenet resnet-18 hyper-resnet-18-v2 resnet-34 hyper-resnet-34-v2
else
    echo "ImageNet column skipped: set IMAGENET=DIR (the ILSVRC folder with train/ and val/) to run it"
fi
$METAHYPER models
