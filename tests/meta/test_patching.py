"""metahyper.meta.patching: per-instance overrides shadow the class method inside the block only,
and are removed even when the block raises."""

import pytest
from torch import nn

from metahyper.meta.patching import instance_methods


def test_instance_methods_shadow_and_restore():
    a, b, other = nn.Identity(), nn.Identity(), nn.Identity()
    with instance_methods([a, b], "forward", lambda m: (lambda x: ("patched", m))):
        assert a(1) == ("patched", a) and b(2) == ("patched", b)
        assert other(3) == 3
    assert a(1) == 1 and "forward" not in a.__dict__
    with pytest.raises(RuntimeError), instance_methods([a], "forward", lambda m: (lambda x: 0)):
        raise RuntimeError("inside")
    assert a(1) == 1 and "forward" not in a.__dict__
