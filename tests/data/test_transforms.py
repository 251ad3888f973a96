"""Batch transforms: uint8 HWC -> normalised float CHW, resize, augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metahyper.data import normalization_for, random_crop_flip, to_tensor
from metahyper.errors import UserError


def test_to_tensor_normalises_and_resizes():
    x = np.zeros((2, 4, 6, 3), np.uint8)
    x[..., 0] = 255
    t = to_tensor(x, (0.5, 0.0, 0.0), (0.5, 1.0, 1.0))
    assert t.shape == (2, 3, 4, 6) and t.dtype == torch.float32
    assert torch.allclose(t[:, 0], torch.ones(1)) and torch.allclose(t[:, 1:], torch.zeros(1))
    r = to_tensor(x, *normalization_for("fc100"), size=8)
    assert r.shape == (2, 3, 8, 8)
    with pytest.raises(UserError, match="unknown|no normalization"):
        normalization_for("nope")


def test_random_crop_flip():
    x = np.arange(2 * 6 * 6 * 3, dtype=np.uint8).reshape(2, 6, 6, 3)
    y = random_crop_flip(x, padding=2, generator=np.random.default_rng(0))
    assert y.shape == x.shape and y.dtype == np.uint8
    z = random_crop_flip(x, padding=0, generator=np.random.default_rng(1))  # only flips remain
    for a, b in zip(x, z):
        assert np.array_equal(a, b) or np.array_equal(a[:, ::-1], b)
