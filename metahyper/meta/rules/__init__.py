"""Inner update rules, by name: what ``MAML(inner_rule=...)`` and ``meta-train --inner-rule`` take.

A new rule is one module here with an :class:`InnerRule` subclass plus one line in
:data:`INNER_RULES`.
"""

from metahyper.meta.rules.base import InnerRule, Params
from metahyper.meta.rules.sgd import SGD

INNER_RULES: dict[str, type[InnerRule]] = {
    "sgd": SGD,
}

__all__ = ["INNER_RULES", "SGD", "InnerRule", "Params"]
