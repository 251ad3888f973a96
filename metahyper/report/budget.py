"""``metahyper report --budget``: section 5.2's "with 70% training budget". For a pair of pretrain
runs, the first epoch at which the hyper run reaches the plain run's final validation accuracy, as
a fraction of the hyper run's epochs.
"""

from __future__ import annotations

from pathlib import Path

from metahyper.errors import UserError
from metahyper.io import read_json
from metahyper.models import ModelConfig


def _history(run: Path) -> tuple[str, list[float], int]:
    """``(model label, validation accuracy per epoch, planned epochs)`` of a pretrain run directory."""
    fix = "pass pretrain run directories trained with a validation split"
    if not ((run / "config.json").is_file() and (run / "history.json").is_file()):
        raise UserError(f"{run} is not a pretrain run with a validation accuracy per epoch (no config.json and "
                        f"history.json); {fix}")  # fmt: skip
    config = read_json(run / "config.json", "run config", fix, expect=dict)
    history = read_json(run / "history.json", "history", fix, expect=list)
    try:
        accs = [float(h["val_acc"]) for h in history]
        label = ModelConfig(config["model"], config.get("variant", 1)).label()
        epochs = int(config.get("epochs", len(accs)))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(
            f"{run} is not a pretrain run with a validation accuracy per epoch ({type(err).__name__}: {err}); "
            "pass pretrain run directories trained with a validation split"
        ) from None
    if not accs:
        raise UserError(f"{run} has no finished epoch; train it first")
    return label, accs, epochs


def budget_to_match(plain_run: str | Path, hyper_run: str | Path) -> dict:
    """The first epoch at which ``hyper_run`` reaches ``plain_run``'s final validation accuracy,
    and that epoch as a fraction of the hyper run's planned epochs (section 5.2: "with 70 %
    training budget hyperresnet-34 achieves the similar performance to resnet-34"). ``epoch`` and
    ``fraction`` are None when it never does; ``finished`` says whether both runs ran every epoch."""
    plain_label, plain, plain_epochs = _history(Path(plain_run))
    hyper_label, hyper, hyper_epochs = _history(Path(hyper_run))
    target = plain[-1]
    epoch = next((i + 1 for i, acc in enumerate(hyper) if acc >= target), None)
    return {
        "plain": plain_label,
        "hyper": hyper_label,
        "plain_final_acc": target,
        "epoch": epoch,
        "epochs": hyper_epochs,
        "fraction": epoch / hyper_epochs if epoch is not None else None,
        "finished": len(plain) >= plain_epochs and len(hyper) >= hyper_epochs,
    }


def budget_text(match: dict) -> str:
    """:func:`budget_to_match` in one line."""
    head = f"{match['hyper']} vs {match['plain']} (final {100 * match['plain_final_acc']:.2f} %): "
    tail = "" if match["finished"] else " (a run is unfinished)"
    if match["epoch"] is None:
        return head + f"not reached in {match['epochs']} epochs" + tail
    return (
        head
        + f"reached at epoch {match['epoch']} of {match['epochs']} ({100 * match['fraction']:.0f} % of the budget)"
        + tail
    )
