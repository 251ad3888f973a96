"""to_tensor converts a batch a chunk of images at a time: the values do not depend on chunking."""

from __future__ import annotations

import numpy as np
import torch

from metahyper.data.transforms import CHUNK, to_tensor


def test_chunked_conversion_equals_per_image_conversion():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(2 * CHUNK + 3, 6, 5, 3), dtype=np.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    whole = to_tensor(images, mean, std)
    expected = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / (
        torch.tensor(std).view(1, 3, 1, 1)
    )
    torch.testing.assert_close(whole, expected)
    one_by_one = torch.cat([to_tensor(images[i : i + 1], mean, std) for i in range(len(images))])
    assert torch.equal(whole, one_by_one) and whole.is_contiguous()
    resized = to_tensor(images, mean, std, size=9)
    assert torch.equal(
        resized, torch.cat([to_tensor(images[i : i + 1], mean, std, size=9) for i in range(len(images))])
    )
    flipped = images[::-1]  # negative strides, read-only memory: converted all the same
    frozen = images.copy()
    frozen.flags.writeable = False
    assert torch.equal(to_tensor(flipped, mean, std), whole.flip(0))
    assert torch.equal(to_tensor(frozen, mean, std), whole)
    assert to_tensor(images[:0], mean, std).shape == (0, 3, 6, 5)
