"""ImageNet (ILSVRC-2012) for classification pretraining (paper section 5.2, Table 4).

Read from the standard folder layout through torchvision's ``ImageFolder``: ``DIR/train/<wnid>/*``
and ``DIR/val/<wnid>/*`` (torchvision's image extensions, hidden files skipped): the validation
images sorted into class folders, as PyTorch's ImageNet example expects, e.g. with its
``valprep.sh``. The transforms are the standard ones of He et al.
(2016) as PyTorch's ImageNet example implements them: training ``RandomResizedCrop(size)`` and a
horizontal flip; validation ``Resize(size * 256 / 224)`` and ``CenterCrop(size)`` (size 224);
both normalised with the ImageNet channel mean and std below. The random crops come from
torch's generator in each loader worker, so unlike the cached datasets a resumed ImageNet run
does not repeat the uninterrupted run's augmentations exactly.
"""

from __future__ import annotations

from pathlib import Path

from torchvision import transforms as T
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

from metahyper.errors import UserError

IMAGE_SIZE = 224
# torchvision's ImageNet statistics (RGB, in [0, 1]), used by its pretrained models and examples
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class ImageNetFolder(ImageFolder):
    """An ``ImageFolder`` with what the pretraining loop asks of a dataset (``num_classes``,
    ``set_epoch``, which is a no-op: the augmentations use torch's generator)."""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def set_epoch(self, epoch: int) -> None:
        """Nothing to select: kept for the loop's interface (see the module docstring)."""


def _is_image(path: str) -> bool:
    """An image file by torchvision's extensions, not hidden (``._*`` files of macOS archives)."""
    return has_file_allowed_extension(path, IMG_EXTENSIONS) and not Path(path).name.startswith(".")


def imagenet_transforms(image_size: int = IMAGE_SIZE) -> tuple[T.Compose, T.Compose]:
    """``(train, val)`` transforms: random-resized crop + flip; resize to ``size * 256 / 224`` + center crop."""
    normalize = [T.ToTensor(), T.Normalize(MEAN, STD)]
    train = T.Compose([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), *normalize])
    val = T.Compose([T.Resize(round(image_size * 256 / IMAGE_SIZE)), T.CenterCrop(image_size), *normalize])
    return train, val


def imagenet_folders(root: str | Path, image_size: int = IMAGE_SIZE) -> tuple[ImageNetFolder, ImageNetFolder]:
    """``(train, val)`` of the ImageNet folder ``root``; a one-line :class:`UserError` when a part
    is missing, a class folder holds no image, or val's classes are not train's."""
    root = Path(root).expanduser()
    fix = (
        "pass --data-root DIR with DIR/train/<class>/ and DIR/val/<class>/ "
        "(validation images sorted into class folders)"
    )
    parts = []
    for part, transform in zip(("train", "val"), imagenet_transforms(image_size)):
        if not (root / part).is_dir():
            raise UserError(f"ImageNet folder {root} has no {part}/ folder; {fix}")
        try:
            parts.append(ImageNetFolder(str(root / part), transform=transform, is_valid_file=_is_image))
        except (FileNotFoundError, OSError) as err:  # no class folders, or a class without images
            raise UserError(f"ImageNet {part} folder {root / part}: {err}; {fix}") from None
    train, val = parts
    if val.classes != train.classes:
        odd = sorted(set(val.classes) ^ set(train.classes))
        raise UserError(
            f"ImageNet {root}: val/ and train/ have different class folders (e.g. {', '.join(odd[:3])}); {fix}"
        )
    return train, val
