"""Inner update rules (:mod:`metahyper.meta.rules`): a new rule is one new file plus one registry
line. Shown here with a toy rule that has both kinds of state a rule can own: a LEARNED momentum
coefficient (an ``nn.Parameter``, meta-learned and saved with MAML) and a per-task velocity carried
across the inner steps. Its float64 meta-gradients (model and coefficient) equal an independent
implementation of its update rule, on every backend, with and without inner-loop checkpointing."""

from __future__ import annotations

import importlib.util
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from metahyper.errors import UserError
from metahyper.meta import BACKENDS, MAML, MamlSettings
from metahyper.meta.rules import INNER_RULES, SGD
from tests.meta.test_maml import LR, make_maml, make_model, make_tasks, rel_err

STEPS, BETA = 3, 0.7

# The one new file: a rule module as a user writes it.
TOY_RULE = textwrap.dedent('''
    """Heavy-ball SGD across the inner steps with a learned momentum coefficient."""
    import torch
    from torch import nn

    from metahyper.meta.rules.base import InnerRule, Params


    class MomentumSGD(InnerRule):
        name = "momentum"

        def __init__(self, params, lr, steps, beta=0.7):
            super().__init__(params, lr, steps)
            self.beta = nn.Parameter(torch.tensor(beta, dtype=next(iter(params.values())).dtype))

        def init_state(self, params):
            return {n: torch.zeros_like(p) for n, p in params.items()}

        def step(self, params, grads, step, state):
            velocity = {n: self.beta * state[n] + grads[n] for n in params}
            return {n: p - self.lr * velocity[n] for n, p in params.items()}, velocity
''')


@pytest.fixture
def momentum_rule(tmp_path, monkeypatch):
    path = tmp_path / "momentum.py"
    path.write_text(TOY_RULE)
    spec = importlib.util.spec_from_file_location("toy_momentum_rule", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(INNER_RULES, "momentum", module.MomentumSGD)  # the one registry line
    return module.MomentumSGD


def reference(model, tasks, inner, outer, beta: torch.Tensor):
    """Momentum MAML written out: v <- beta v + g, p <- p - lr v, from v = 0; BatchNorm with batch
    statistics on cloned buffers; mean query loss over the tasks, differentiated w.r.t. the outer
    parameters and beta."""
    params, buffers = dict(model.named_parameters()), dict(model.named_buffers())

    def forward(fast, x):
        return functional_call(model, {**fast, **{n: b.clone() for n, b in buffers.items()}}, (x,))

    total = 0.0
    for t in tasks:
        fast, velocity = dict(params), {n: torch.zeros_like(params[n]) for n in inner}
        for _ in range(STEPS):
            loss = F.cross_entropy(forward(fast, t.support_x), t.support_y)
            grads = torch.autograd.grad(loss, [fast[n] for n in inner], create_graph=True)
            for n, g in zip(inner, grads):
                velocity[n] = beta * velocity[n] + g
                fast[n] = fast[n] - LR * velocity[n]
        total = total + F.cross_entropy(forward(fast, t.query_x), t.query_y) / len(tasks)
    wrt = [params[n] for n in outer] + [beta]
    return dict(zip([*outer, "beta"], torch.autograd.grad(total, wrt)))


@pytest.mark.parametrize("kind", ["hyper1", "plain"])
def test_toy_rule_meta_gradients_match_its_update_rule(momentum_rule, kind):
    model, tasks = make_model(kind), make_tasks(2)
    model.train()
    base = make_maml(model, inner_rule="momentum", inner_lr=LR, inner_steps=STEPS)
    beta = torch.tensor(BETA, dtype=torch.float64, requires_grad=True)
    ref = reference(model, tasks, base.inner_params, base.outer_params, beta)
    for backend in BACKENDS:
        for interval in (0, 2) if backend != "vmap" else (0,):
            model.zero_grad(set_to_none=True)
            maml = make_maml(
                model, inner_rule="momentum", inner_lr=LR, inner_steps=STEPS, backend=backend, inner_checkpoint=interval
            )
            maml.meta_step(tasks)
            grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
            grads["beta"] = maml.inner_rule.beta.grad
            assert set(grads) == set(ref), backend
            for n in ref:
                assert rel_err(grads[n], ref[n]) < 1e-8, (backend, interval, n, rel_err(grads[n], ref[n]))
    model.zero_grad(set_to_none=True)


def test_learned_rule_state_is_optimised_and_saved_with_maml(momentum_rule):
    model = make_model("plain")
    maml = make_maml(model, inner_rule="momentum", inner_lr=LR, inner_steps=STEPS)
    assert isinstance(maml, torch.nn.Module) and isinstance(maml.inner_rule, momentum_rule)
    assert maml.outer_parameters()[-1] is maml.inner_rule.beta  # the outer optimiser learns it
    assert "inner_rule.beta" in maml.state_dict()
    opt = torch.optim.SGD(maml.outer_parameters(), lr=0.1)
    maml.meta_step(make_tasks(1))
    opt.step()
    assert maml.inner_rule.beta.item() != BETA
    fresh = make_maml(make_model("plain"), inner_rule="momentum", inner_lr=LR, inner_steps=STEPS)
    fresh.load_state_dict(maml.state_dict())
    assert fresh.inner_rule.beta.item() == maml.inner_rule.beta.item()


def test_sgd_is_the_default_rule_and_unchanged():
    model, tasks = make_model("hyper1"), make_tasks(1)
    by_name = make_maml(model, inner_lr=LR, inner_steps=STEPS)
    assert isinstance(by_name.inner_rule, SGD) and not list(by_name.inner_rule.parameters())
    assert by_name.outer_parameters() == [dict(model.named_parameters())[n] for n in by_name.outer_params]
    adapted = by_name.adapt(tasks[0].support_x, tasks[0].support_y, steps=1, create_graph=False)
    model.train()
    params = dict(model.named_parameters())
    loss = F.cross_entropy(
        functional_call(model, {**params, **{n: b.clone() for n, b in model.named_buffers()}}, (tasks[0].support_x,)),
        tasks[0].support_y,
    )
    grads = torch.autograd.grad(loss, [params[n] for n in by_name.inner_params])
    for n, g in zip(by_name.inner_params, grads):
        assert rel_err(adapted[n], params[n] - LR * g) < 1e-12, n


def test_unknown_rule_is_one_line_error():
    with pytest.raises(UserError, match="unknown inner rule .adamw.; choose from sgd, meta-sgd, lslr"):
        make_maml(make_model("plain"), inner_rule="adamw")
    with pytest.raises(UserError, match="inner_rule must be"):
        make_maml(make_model("plain"), inner_rule=3)
    assert isinstance(MAML, type) and issubclass(MAML, torch.nn.Module)


def test_maml_settings_round_trip_and_earlier_versions():
    settings = MamlSettings(inner=("embeddings", "classifier"), outer=("hypernetworks",), eval_inner_steps=7)
    stored = settings.to_dict()
    assert stored["version"] == MamlSettings.VERSION and stored["inner"] == ["embeddings", "classifier"]
    assert MamlSettings.from_dict(stored) == settings
    earlier = {k: v for k, v in stored.items() if k not in ("version", "inner_rule", "eval_inner_steps")}
    assert MamlSettings.from_dict({**earlier, "inner_steps_eval": 7}) == settings  # version 1: no version key
    with pytest.raises(UserError, match="MAML settings of version 3, this metahyper reads versions 1 to 2"):
        MamlSettings.from_dict({**stored, "version": 3}, "checkpoint x.pt")
    with pytest.raises(UserError, match="incomplete MAML settings"):
        MamlSettings.from_dict({"version": 2, "inner_lr": 0.1})
