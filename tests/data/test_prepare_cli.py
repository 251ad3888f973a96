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


def test_prepare_new_datasets_through_the_cli(tmp_path):
    from tests.data.sources.test_omniglot import make_omniglot
    from tests.data.sources.test_tieredimagenet import make_tiered

    runner = CliRunner()
    root = str(tmp_path / "data")
    res = runner.invoke(main, ["prepare", "cub", "--rotations", "--source", str(tmp_path), "--root", root])
    assert res.exit_code == 2 and "--rotations does not apply to cub" in res.output
    res = runner.invoke(main, ["prepare", "tieredimagenet", "--download", "--root", root])
    assert res.exit_code == 2 and "cannot be downloaded automatically" in res.output
    res = runner.invoke(main, ["prepare", "glyphs", "--source", str(tmp_path), "--root", root])
    assert res.exit_code == 2 and "takes no --source" in res.output
    make_omniglot(tmp_path / "omni", per_class=20)
    res = runner.invoke(
        main,
        [
            "prepare",
            "omniglot",
            "--source",
            str(tmp_path / "omni"),
            "--root",
            root,
            "--image-size",
            "12",
            "--rotations",
        ],
    )
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert res.exit_code == 2 and len(errors) == 1 and "1617 characters of the Vinyals split are missing" in errors[0]
    make_tiered(tmp_path / "tiered")
    res = runner.invoke(main, ["prepare", "tieredimagenet", "--source", str(tmp_path / "tiered"), "--root", root])
    assert res.exit_code == 2 and "3 classes instead of 351" in res.output
    res = runner.invoke(main, ["datasets", "--root", root])
    assert res.exit_code == 0 and "no caches found" in res.output
