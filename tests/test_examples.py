"""The examples run end to end in a short smoke setting."""

import importlib.util
import math
import pathlib

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_duplication_smoke(capsys):
    duplication = load_example("duplication")
    accuracies = duplication.main([
        "--length", "32", "--hidden-dim", "16", "--chunk-length", "8", "--steps", "4",
        "--batch-size", "4", "--eval-size", "8", "--eval-hashes", "1,2", "--verbose", "0",
    ])
    assert set(accuracies) == {1, 2}
    assert all(0.0 <= a <= 1.0 for a in accuracies.values())
    assert "duplication (L=32" in capsys.readouterr().out


def test_duplication_task_data_is_0w0w():
    duplication = load_example("duplication")
    import numpy as np

    batch = duplication.duplication_batch(np.random.default_rng(0), 3, 10)
    assert batch.shape == (3, 10)
    assert (batch[:, 0] == 0).all() and (batch[:, 5] == 0).all()
    np.testing.assert_array_equal(batch[:, 1:5], batch[:, 6:])
    assert batch[:, 1:5].min() >= 1 and batch.max() <= 127


def test_char_lm_smoke_and_resume(tmp_path, capsys):
    char_lm = load_example("char_lm")
    args = ["--max-bytes", "20000", "--length", "32", "--hidden-dim", "16", "--num-heads", "2",
            "--chunk-length", "8", "--epochs", "1", "--steps-per-epoch", "2",
            "--validation-steps", "1", "--batch-size", "2", "--sample-length", "8",
            "--output-dir", str(tmp_path), "--verbose", "0"]
    bits = char_lm.main(args)
    assert math.isfinite(bits) and 0 < bits < 10
    assert (tmp_path / "char_lm.keras").exists()
    assert any((tmp_path / "logs").rglob("*"))
    assert "bits per character" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["duplication", "char_lm"])
def test_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_example(name).main(["--help"])
    assert exit_info.value.code == 0
    assert "--" in capsys.readouterr().out
