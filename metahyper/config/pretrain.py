"""The pretraining stage's config: :class:`PretrainConfig` (sections 4.2 and 5.1)."""

from __future__ import annotations

from dataclasses import dataclass

from metahyper.config.common import (
    SEED_MAX,
    RunOptions,
    check_dataset,
    dataset_opt,
    image_size_opt,
)
from metahyper.data.layouts import SPLITS
from metahyper.data.transforms import PAD_MODES as TRANSFORM_PAD_MODES
from metahyper.errors import UserError
from metahyper.models import STEMS
from metahyper.options import option

PRETRAIN_ONLY = ("imagenet",)  # read from an ImageNet folder by torchvision (metahyper.data.imagenet)
# `pretrain --dataset imagenet` defaults (the CLI applies them to options left at the CIFAR
# defaults). Section 5.2: SGD, 100 epochs, momentum 0.9, lr 0.1 divided by 10 every 30 epochs;
# its weight decay reads "x10^-4" (the digit is lost in our copy of the text): 1e-4, He et al.
# (2016)'s, whose architecture it uses. Batch 256: He et al.'s too (the paper gives none).
IMAGENET_RECIPE = {"epochs": 100, "milestones": [30, 60, 90], "gamma": 0.1, "weight_decay": 1e-4, "batch_size": 256}
PAD_MODES = tuple(TRANSFORM_PAD_MODES)  # metahyper.data.transforms.random_crop_flip
LR_SCHEDULES = ("step", "swa")  # metahyper.train.pretrain.lr_factor


@dataclass(kw_only=True)
class PretrainConfig(RunOptions):
    """Standard classification training (pretraining of section 4.2; the CIFAR recipe of section
    5.1: SGD, momentum 0.9, lr 0.1, 200 epochs, lr /5 at epochs 60, 120 and 160, weight decay 5e-4
    on plain networks, 6.25e-5 on the generated weights of hyper networks and none on embeddings /
    hypernetworks (section 3)). From Zagoruyko & Komodakis, whose "standard hyperparameters" section
    5.1 says it uses: batch 128, Nesterov momentum, random crops of the image padded by 4 pixels
    with reflections, horizontal flips. ``lr_schedule="swa"`` with ``swa_start``: Izmailov et al.'s
    SWA schedule (:func:`metahyper.train.pretrain.lr_factor`)."""

    dataset: str = dataset_opt(
        "Dataset whose --split classes are learned (or imagenet: --data-root holds its train/ and val/)."
    )
    model: str = option(
        "wrn-16-4", "Architecture, e.g. wrn-16-4 or hyper-wrn-16-4 (see `metahyper models`).", required=True
    )
    variant: int = option(1, "Hypernetwork sharing variant (hyper models).", choices=(1, 2))
    d: int | None = option(None, "Embedding depth d (default C_in).", min=1, flag="--embedding-depth", aliases=("--d",))
    hyper_bias: bool = option(False, "Hypernetwork with bias (Table 1 ablation).")
    hyper_bias_init: str = option(
        "uniform",
        "Initial --hyper-bias: uniform (PyTorch's conv default, +-1/sqrt(d*9)) or zero.",
        choices=("uniform", "zero"),
    )
    compressed: bool = option(False, "Seeded frozen embeddings (section 5.3).")
    embedding_seed: int = option(0, "Seed of the frozen embeddings of --compressed.", min=0, max=SEED_MAX)
    stem: str | None = option(
        None,
        "First layer: cifar (3x3 conv) or imagenet (7x7 stride-2 conv + max-pool, He et al. 2016); "
        "default: imagenet for --dataset imagenet, else cifar.",
        choices=tuple(STEMS),
    )
    split: str = option("train", "Split whose classes are learned.", choices=SPLITS)
    eval_split: str | None = option(
        None,
        "Split to validate on with the same classes (CLI default: test for cifar10/100; "
        "unset: a held-out part of --split).",
        choices=SPLITS,
    )
    # our choice: the paper names no validation data for pretraining on FC100 / MiniImageNet
    val_fraction: float = option(
        0.1, "Held-out images per class for validation when there is no --eval-split (0: none).", min=0, below=1
    )
    image_size: int | None = image_size_opt(
        "Resize images to this size (default: the cache's; imagenet: crops of 224)."
    )
    epochs: int = option(200, "Training epochs.", min=1)
    batch_size: int = option(128, "Global batch size (split over torchrun processes).", min=1)
    lr: float = option(0.1, "SGD learning rate.", above=0)
    momentum: float = option(0.9, "SGD momentum.", min=0, below=1)
    nesterov: bool = option(True, "Nesterov momentum (Zagoruyko & Komodakis).")
    milestones: list[int] = option([60, 120, 160], "Epochs at which the lr is multiplied by --gamma.", min=0)
    gamma: float = option(0.2, "Learning-rate factor at each milestone.", above=0)
    weight_decay: float = option(5e-4, "On plain weights (not embeddings / hypernetworks).", min=0)
    generated_l2: float = option(6.25e-5, "L2 on generated weights (hyper models).", min=0)
    augment: bool = option(True, "Random crop (padding 4) + horizontal flip.")
    pad_mode: str = option(
        "reflect", "Padding of the random crops: reflections (Zagoruyko & Komodakis) or zeros.", choices=PAD_MODES
    )
    lr_schedule: str = option(
        "step",
        "step: lr x --gamma at --milestones (then SWALR to --swa-lr from --swa-start); "
        "swa: Izmailov et al.'s SWA schedule (lr constant for the first half of the "
        "--swa-start epochs, linear to --swa-lr by 90% of them, then constant; needs --swa-start).",
        choices=LR_SCHEDULES,
    )
    swa_start: int | None = option(
        None, "First averaged epoch, 0-based (SWA, Table 5; Izmailov et al.'s 1-based --swa_start=161 is 160 here)."
    )
    swa_lr: float = option(0.05, "SWA learning rate.", above=0)
    stage = "pretrain"

    @property
    def model_stem(self) -> str:
        """``stem``, or by dataset when unset: imagenet for ImageNet, cifar otherwise."""
        return self.stem or ("imagenet" if self.dataset == "imagenet" else "cifar")

    def validate(self) -> None:
        super().validate()
        check_dataset("--dataset", self.dataset, self.data_root, also=PRETRAIN_ONLY)
        if self.dataset == "imagenet" and self.data_root is None:
            raise UserError("--dataset imagenet needs --data-root DIR, the ImageNet folder holding train/ and val/")
        if self.dataset == "imagenet" and self.eval_split is not None:
            raise UserError(
                "--eval-split does not apply to --dataset imagenet, which validates on DIR/val/; leave it out"
            )
        if self.dataset == "imagenet" and self.in_memory != "auto":
            raise UserError(
                "--in-memory does not apply to --dataset imagenet (image files read by torchvision); leave it out"
            )
        if self.swa_start is not None and not 0 <= self.swa_start < self.epochs:
            raise UserError(f"--swa-start must be an epoch in [0, {self.epochs}), got {self.swa_start}")
        if self.nesterov and self.momentum == 0:
            raise UserError("--nesterov needs --momentum > 0; pass --no-nesterov for plain SGD")
        if self.lr_schedule == "swa" and self.swa_start is None:
            raise UserError("--lr-schedule swa needs --swa-start (the epoch averaging starts)")
        if sorted(self.milestones) != list(self.milestones):
            raise UserError(f"--milestones must be increasing, got {self.milestones}")
