"""Inner update rules, by name: what ``MAML(inner_rule=...)`` and ``meta-train --inner-rule`` take.

A new rule is one module here with an :class:`InnerRule` subclass plus one line in
:data:`INNER_RULES`.
"""

from metahyper.meta.rules.base import InnerRule, Params
from metahyper.meta.rules.lslr import LSLR
from metahyper.meta.rules.meta_sgd import MetaSGD, rate_key
from metahyper.meta.rules.sgd import SGD

INNER_RULES: dict[str, type[InnerRule]] = {
    "sgd": SGD,
    "meta-sgd": MetaSGD,
    "lslr": LSLR,
}

__all__ = ["INNER_RULES", "LSLR", "SGD", "InnerRule", "MetaSGD", "Params", "rate_key"]
