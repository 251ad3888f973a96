"""`metahyper prepare` / `metahyper datasets`: thin commands, one-line errors with exit code 2."""

from __future__ import annotations

from click.testing import CliRunner

from metahyper.cli import main


def test_prepare_and_datasets(tmp_path, cifar100_tar):
    src, _ = cifar100_tar
    runner = CliRunner()
    root = str(tmp_path / "data")
    res = runner.invoke(main, ["prepare", "fc100", "--source", str(src), "--root", root])
    assert res.exit_code == 2 and "Error: CIFAR-100 source" in res.output and "instead of 600" in res.output
    res = runner.invoke(main, ["prepare", "miniimagenet", "--root", root])
    assert res.exit_code == 2 and "--source" in res.output
    res = runner.invoke(main, ["prepare", "cifar100", "--source", str(tmp_path / "nope.tar.gz"), "--root", root])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = runner.invoke(main, ["datasets", "--root", root])
    assert res.exit_code == 0 and "no caches found" in res.output
