"""Runs every fenced ```python block of the docs pages and public docstrings.

Each block runs in a fresh interpreter (under the current KERAS_BACKEND), so a
failure names its page or object and shows the error:

    KERAS_BACKEND=jax python scripts/run_doc_examples.py            # everything
    KERAS_BACKEND=jax python scripts/run_doc_examples.py how-to     # pages / names matching

Blocks that only show a fragment (they use names defined elsewhere, like
`model.save(...)`) are marked by a first line `# fragment` ... or are listed in
FRAGMENTS below, and skipped.
"""

import inspect
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
# Pages whose blocks are fragments of a larger program, not runnable alone.
FRAGMENTS = {"getting-started.md", "saving-loading.md"}


def doc_blocks():
    for page in sorted((ROOT / "docs").rglob("*.md")):
        if page.name in FRAGMENTS:
            continue
        for i, code in enumerate(BLOCK.findall(page.read_text())):
            yield f"{page.relative_to(ROOT)}#{i}", code


def docstring_blocks():
    sys.path.insert(0, str(ROOT))
    import keras_reformer  # noqa: F401

    for sub in ("layers", "models", "ops"):
        module = getattr(keras_reformer, sub)
        for name, obj in sorted(vars(module).items()):
            if name.startswith("_") or inspect.ismodule(obj):
                continue
            for i, code in enumerate(BLOCK.findall(inspect.getdoc(obj) or "")):
                yield f"keras_reformer.{sub}.{name}#{i}", code


def main():
    pattern = sys.argv[1] if len(sys.argv) > 1 else ""
    failures = 0
    for label, code in list(doc_blocks()) + list(docstring_blocks()):
        if pattern not in label:
            continue
        if code.lstrip().startswith("# fragment"):
            continue
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        status = "ok" if result.returncode == 0 else "FAILED"
        failures += result.returncode != 0
        print(f"{status:6} {label}")
        if result.returncode:
            print("       " + "\n       ".join(result.stderr.strip().splitlines()[-4:]))
    print(f"{failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
