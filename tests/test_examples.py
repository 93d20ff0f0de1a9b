"""The examples run end to end in a short smoke setting."""

import importlib.util
import json
import math
import pathlib
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
BENCHMARKS = EXAMPLES.parent / "benchmarks"


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_result(directory, benchmark):
    """The one result JSON an example wrote in `directory`, checked against the schema."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import common
    finally:
        sys.path.remove(str(BENCHMARKS))
    paths = list(pathlib.Path(directory).glob(f"{benchmark}_*.json"))
    assert len(paths) == 1, paths
    result = common.validate_result(json.loads(paths[0].read_text()))
    assert result["benchmark"] == benchmark
    return result


def test_duplication_smoke(tmp_path, capsys):
    duplication = load_example("duplication")
    accuracies = duplication.main([
        "--length", "32", "--hidden-dim", "16", "--chunk-length", "8", "--steps", "4",
        "--batch-size", "4", "--eval-size", "8", "--eval-hashes", "1,2", "--verbose", "0",
        "--results-dir", str(tmp_path),
    ])
    assert set(accuracies) == {1, 2}
    assert all(0.0 <= a <= 1.0 for a in accuracies.values())
    assert "duplication (L=32" in capsys.readouterr().out
    result = load_result(tmp_path, "duplication")
    assert [row["hash_rounds"] for row in result["rows"]] == [1, 2]
    for row in result["rows"]:
        assert {"backend", "hash_rounds", "accuracy", "training_seconds", "status"} <= set(row)
        assert row["accuracy"] == accuracies[row["hash_rounds"]] and row["status"] == "ok"
    assert result["config"]["length"] == 32 and result["config"]["steps"] == 4
    assert "examples/duplication.py" in result["command"]


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
            "--output-dir", str(tmp_path), "--verbose", "0",
            "--results-dir", str(tmp_path / "results")]
    bits = char_lm.main(args)
    assert math.isfinite(bits) and 0 < bits < 10
    assert (tmp_path / "char_lm.keras").exists()
    assert any((tmp_path / "logs").rglob("*"))
    assert "bits per character" in capsys.readouterr().out
    result = load_result(tmp_path / "results", "char_lm")
    [row] = result["rows"]
    assert {"backend", "bits_per_character", "steps", "training_seconds", "status"} <= set(row)
    assert row["bits_per_character"] == bits and row["status"] == "ok"
    assert row["steps"] == row["steps_this_run"] == 2
    assert result["config"]["length"] == 32 and result["config"]["data"] == "stdlib"


@pytest.mark.parametrize("name", ["duplication", "char_lm"])
def test_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_example(name).main(["--help"])
    assert exit_info.value.code == 0
    assert "--" in capsys.readouterr().out
