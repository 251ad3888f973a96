"""Image transforms on whole batches: uint8 HWC -> float CHW, resize, normalise, augment.

The model side takes float32 (n, 3, S, S) tensors normalised with per-dataset mean/std
(:func:`normalization_for`). Cross-domain runs (Table 8: FC100 images are 32x32, MiniImageNet
images 84x84, section 5.4) resize every batch to one input size with antialiased bilinear
interpolation; the paper does not say at which size it ran them.
Training augmentation (:func:`random_crop_flip`): random crops of the image padded by 4 pixels and
horizontal flips. The paper only says it trains "with the same standard hyperparameters as done in
Zagoruyko & Komodakis (2016)" (section 5.1); their CIFAR augmentation pads with reflections
(``pad_mode="reflect"``, the default here), torchvision-style recipes pad with zeros
(``pad_mode="zeros"``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from metahyper.errors import UserError

# Channel statistics of each dataset's training images (RGB, in [0, 1]).
_CIFAR100 = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": _CIFAR100,
    "fc100": _CIFAR100,
    "cifar-fs": _CIFAR100,
    # 120.40/255, 115.59/255, 104.54/255 and 70.68/255, 68.28/255, 72.55/255 (MetaOptNet, FEAT)
    "miniimagenet": ((0.4721, 0.4533, 0.4100), (0.2772, 0.2677, 0.2845)),
    # MetaOptNet's tieredImageNet loader uses the MiniImageNet statistics (both are ImageNet subsets)
    "tieredimagenet": ((0.4721, 0.4533, 0.4100), (0.2772, 0.2677, 0.2845)),
    # Chen et al. 2019 (CloserLookFewShot TransformLoader): the ImageNet statistics, for CUB too
    "cub": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # pixels in [0, 1], strokes 1: MAML's and torchmeta's Omniglot pipelines do not normalise
    "omniglot": ((0.0,) * 3, (1.0,) * 3),
    # white glyphs on black, measured on the default build
    "glyphs-a": ((0.1625,) * 3, (0.3443,) * 3),
    "glyphs-b": ((0.1625,) * 3, (0.3443,) * 3),
}


def normalization_for(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` per RGB channel for dataset ``name``."""
    try:
        return NORMALIZATION[name]
    except KeyError:
        raise UserError(
            f"no normalization statistics for dataset {name!r}; known: {', '.join(NORMALIZATION)}"
        ) from None


def to_tensor(
    images: np.ndarray | torch.Tensor,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    size: int | tuple[int, int] | None = None,
) -> torch.Tensor:
    """uint8 (n, H, W, 3) -> float32 (n, 3, S, S): resized to ``size`` (antialiased), then normalised
    (``(x / 255 - mean) / std``; in [0, 1] when ``mean`` is None)."""
    if isinstance(images, np.ndarray):  # numpy's uint8 transpose copy is the fastest route to NCHW
        x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float()
    else:
        x = images.permute(0, 3, 1, 2).contiguous().float()
    x = resize(x, size)
    std = std if mean is not None else (1.0,) * x.shape[1]
    mean = mean if mean is not None else (0.0,) * x.shape[1]
    # (x / 255 - mean) / std as one fused per-channel scale and shift
    scale = torch.tensor([1.0 / (255.0 * s) for s in std]).view(1, -1, 1, 1)
    shift = torch.tensor([-m / s for m, s in zip(mean, std)]).view(1, -1, 1, 1)
    return x.mul_(scale).add_(shift)


def resize(x: torch.Tensor, size: int | tuple[int, int] | None) -> torch.Tensor:
    """Resize a float (n, C, H, W) batch (antialiased bilinear); no-op when already that size."""
    if size is None:
        return x
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(x.shape[-2:]) == hw:
        return x
    return F.interpolate(x, size=hw, mode="bilinear", antialias=True, align_corners=False)


PAD_MODES = {"reflect": "reflect", "zeros": "constant"}  # pad_mode -> numpy.pad mode


def random_crop_flip(
    images: np.ndarray, padding: int = 4, generator: np.random.Generator | None = None, pad_mode: str = "reflect"
) -> np.ndarray:
    """Training augmentation on uint8 (n, H, W, C): pad ``padding`` pixels on each side
    (``pad_mode``: ``reflect``, mirroring without repeating the edge, or ``zeros``), random crop
    back to H x W, random horizontal flip."""
    if pad_mode not in PAD_MODES:
        raise UserError(f"pad mode must be one of {', '.join(PAD_MODES)}, got {pad_mode!r}")
    rng = generator if generator is not None else np.random.default_rng()
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)), mode=PAD_MODES[pad_mode])
    out = np.empty_like(images)
    tops = rng.integers(0, 2 * padding + 1, size=n)
    lefts = rng.integers(0, 2 * padding + 1, size=n)
    flips = rng.random(n) < 0.5
    for i in range(n):
        crop = padded[i, tops[i] : tops[i] + h, lefts[i] : lefts[i] + w]
        out[i] = crop[:, ::-1] if flips[i] else crop
    return out
