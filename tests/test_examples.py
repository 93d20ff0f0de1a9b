"""The examples run end to end in a short smoke setting, and the benchmark that
records them (`benchmarks/example_results.py`) writes their results."""

import importlib.util
import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
BENCHMARKS = EXAMPLES.parent / "benchmarks"
DUPLICATION_SMOKE = [
    "--length",
    "32",
    "--hidden-dim",
    "16",
    "--chunk-length",
    "8",
    "--steps",
    "4",
    "--batch-size",
    "4",
    "--eval-size",
    "8",
    "--eval-hashes",
    "1,2",
    "--verbose",
    "0",
]


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def benchmark_modules():
    """`benchmarks/common.py` and `benchmarks/example_results.py`."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import common
        import example_results
    finally:
        sys.path.remove(str(BENCHMARKS))
    return common, example_results


def load_result(directory, benchmark):
    """The one result JSON written in `directory`, checked against the schema."""
    common, _ = benchmark_modules()
    paths = list(pathlib.Path(directory).glob(f"{benchmark}_*.json"))
    assert len(paths) == 1, paths
    result = common.validate_result(json.loads(paths[0].read_text()))
    assert result["benchmark"] == benchmark
    return result


@pytest.mark.parametrize("name", ["duplication", "char_lm"])
def test_examples_are_self_contained(name):
    """Examples import the package, never the repository's benchmarks (issue 20)."""
    source = (EXAMPLES / f"{name}.py").read_text()
    assert "sys.path" not in source and "import common" not in source
    assert "results-dir" not in source


@pytest.mark.parametrize("name", ["duplication", "char_lm"])
def test_seeding_imports_tensorflow_only_on_its_backend(name):
    """The README's first command runs an example on JAX: seeding must not import
    TensorFlow there (its C++ start-up lines were the run's only noise), and must
    seed Python's and numpy's generators as `keras.utils.set_random_seed` does."""
    program = (
        "import importlib.util, random, sys, numpy as np\n"
        f"spec = importlib.util.spec_from_file_location('e', {str(EXAMPLES / (name + '.py'))!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "module.set_random_seed(7); drawn = (random.random(), np.random.rand())\n"
        "random.seed(7); np.random.seed(7)\n"
        "assert drawn == (random.random(), np.random.rand()), drawn\n"
        "print('tensorflow' in sys.modules)\n"
    )
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    output = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "KERAS_BACKEND": backend},
    ).stdout
    assert output.split()[-1] == str(backend == "tensorflow")


def test_duplication_smoke(capsys):
    accuracies = load_example("duplication").main(DUPLICATION_SMOKE)
    assert set(accuracies) == {1, 2}
    assert all(0.0 <= a <= 1.0 for a in accuracies.values())
    out = capsys.readouterr().out
    assert "hash rounds at evaluation | second-half accuracy" in out
    assert "duplication (L=32" in out and "wrote" not in out


def test_duplication_result_is_what_run_returned(tmp_path, monkeypatch, capsys):
    """The benchmark writes exactly what the example's `run` returns (the real run is
    `test_duplication_smoke`; `char_lm` goes through the benchmark end to end below)."""
    _, example_results = benchmark_modules()
    duplication = load_example("duplication")
    seen = []

    def run(args):
        seen.append(args)
        print("the example's own output")
        return {"accuracies": {1: 0.8125, 2: 0.96875}, "training_seconds": 12.345}

    monkeypatch.setattr(duplication, "run", run)
    monkeypatch.setattr(example_results, "load_example", {"duplication": duplication}.get)
    path = example_results.main(["duplication", "--results-dir", str(tmp_path), *DUPLICATION_SMOKE])
    assert seen[0].length == 32 and seen[0].steps == 4  # the example parsed its own options
    assert capsys.readouterr().out == f"the example's own output\nwrote {path}\n"
    result = load_result(tmp_path, "duplication")
    assert result["rows"] == [
        {
            "backend": result["backend"],
            "hash_rounds": 1,
            "accuracy": 0.8125,
            "training_seconds": 12.3,
            "status": "ok",
        },
        {
            "backend": result["backend"],
            "hash_rounds": 2,
            "accuracy": 0.96875,
            "training_seconds": 12.3,
            "status": "ok",
        },
    ]
    assert result["config"]["length"] == 32 and result["config"]["steps"] == 4
    assert result["command"] == (
        f"KERAS_BACKEND={result['backend']} python benchmarks/example_results.py duplication "
        f"--results-dir {tmp_path} " + " ".join(DUPLICATION_SMOKE)
    )


def test_duplication_task_data_is_0w0w():
    duplication = load_example("duplication")
    import numpy as np

    batch = duplication.duplication_batch(np.random.default_rng(0), 3, 10)
    assert batch.shape == (3, 10)
    assert (batch[:, 0] == 0).all() and (batch[:, 5] == 0).all()
    np.testing.assert_array_equal(batch[:, 1:5], batch[:, 6:])
    assert batch[:, 1:5].min() >= 1 and batch.max() <= 127


def test_char_lm_smoke_recorded_by_the_benchmark(tmp_path, capsys):
    _, example_results = benchmark_modules()
    args = [
        "--max-bytes",
        "20000",
        "--length",
        "32",
        "--hidden-dim",
        "16",
        "--num-heads",
        "2",
        "--num-layers",
        "1",
        "--chunk-length",
        "8",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--validation-steps",
        "1",
        "--batch-size",
        "2",
        "--sample-length",
        "8",
        "--output-dir",
        str(tmp_path),
        "--verbose",
        "0",
    ]
    example_results.main(["char_lm", "--results-dir", str(tmp_path / "results"), *args])
    assert (tmp_path / "char_lm.keras").exists()
    assert any((tmp_path / "logs").rglob("*"))
    out = capsys.readouterr().out
    assert "bits per character" in out and "--- sample ---" in out
    result = load_result(tmp_path / "results", "char_lm")
    [row] = result["rows"]
    assert {"backend", "bits_per_character", "steps", "training_seconds", "status"} <= set(row)
    bits = row["bits_per_character"]
    # Two steps leave the model near its initialisation: its random logits cost
    # a few bits over the uniform 8 of bytes (9.5-10.1 seen, varying with the
    # random draws), and a broken pipeline would give NaN or far more.
    assert math.isfinite(bits) and 0 < bits < 12 and row["status"] == "ok"
    assert f"validation {bits:.3f} bits per character" in out  # what the example printed
    assert row["steps"] == row["steps_this_run"] == 2
    assert result["config"]["length"] == 32 and result["config"]["data"] == "stdlib"
    assert "python benchmarks/example_results.py char_lm" in result["command"]


def test_char_lm_main_returns_the_bits_per_character(tmp_path, monkeypatch):
    """`main` is `run` on the parsed arguments (run itself is exercised above)."""
    char_lm = load_example("char_lm")
    seen = []
    monkeypatch.setattr(
        char_lm, "run", lambda args: seen.append(args) or {"bits_per_character": 2.5}
    )
    assert char_lm.main(["--output-dir", str(tmp_path)]) == 2.5
    assert seen[0].output_dir == str(tmp_path) and not hasattr(seen[0], "results_dir")


@pytest.mark.parametrize("name", ["duplication", "char_lm"])
def test_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_example(name).main(["--help"])
    assert exit_info.value.code == 0
    assert "--" in capsys.readouterr().out


def test_benchmark_help_names_the_examples(capsys):
    _, example_results = benchmark_modules()
    with pytest.raises(SystemExit) as exit_info:
        example_results.main(["--help"])
    assert exit_info.value.code == 0
    assert "duplication,char_lm" in capsys.readouterr().out
