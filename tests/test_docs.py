"""The documentation covers the public API and builds.

Checks, for every public name exported by `keras_reformer.layers`, `.models`
and `.ops`: a docstring with `Args:` (naming every named parameter) and `Returns:`,
a fenced example on public classes, and a `::: keras_reformer...` entry in
docs/api/*.md. Also checks the site's own promises: figures exist with the
command that regenerates them, benchmark tables are generated or marked "not
yet measured", and `mkdocs build --strict` passes when mkdocs is installed.
"""

import importlib
import importlib.util
import inspect
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SUBPACKAGES = ("layers", "models", "ops")


def public_names():
    """(subpackage, name, object) for every public class and function."""
    found = []
    for sub in SUBPACKAGES:
        module = importlib.import_module(f"keras_reformer.{sub}")
        names = getattr(module, "__all__", None) or [
            n for n in vars(module) if not n.startswith("_")
        ]
        for name in names:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                found.append((sub, name, obj))
    return found


@pytest.fixture(autouse=True)
def _fresh_state():
    """Overrides conftest's per-test Keras reset: these tests build no layers,
    and `clear_session` would cost ~0.4 s for each of them."""
    yield


PUBLIC = public_names()
IDS = [f"{sub}.{name}" for sub, name, _ in PUBLIC]


def _section(doc, title):
    """The indented body of the docstring section `title:` (or None)."""
    match = re.search(rf"^{re.escape(title)}:\s*\n((?:[ \t]+.*\n|[ \t]*\n)*)", doc + "\n", re.M)
    return match.group(1) if match else None


def _parameters(obj):
    """The named parameters of a function or of a class's constructor (not
    `*args` / `**kwargs`, which Keras classes forward to their base)."""
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [
        p.name
        for p in inspect.signature(obj).parameters.values()
        if p.name not in ("self", "cls") and p.kind not in variadic
    ]


def _api_entries():
    entries = set()
    for page in sorted((DOCS / "api").glob("*.md")):
        entries.update(re.findall(r"^:::\s+(keras_reformer\.[\w.]+)\s*$", page.read_text(), re.M))
    return entries


def test_there_are_public_names():
    assert PUBLIC, "keras_reformer exports no public class or function"


@pytest.mark.parametrize("sub, name, obj", PUBLIC, ids=IDS)
def test_public_name_has_complete_docstring(sub, name, obj):
    doc = inspect.getdoc(obj) if obj.__doc__ else None
    assert doc, f"keras_reformer.{sub}.{name} has no docstring"
    parameters = _parameters(obj)
    if parameters:
        args = _section(doc, "Args")
        assert args is not None, f"keras_reformer.{sub}.{name}: docstring has no `Args:` section"
        undocumented = [
            p
            for p in parameters
            if not re.search(rf"^\s+{re.escape(p)}\s*(\(.*\))?\s*:", args, re.M)
        ]
        assert not undocumented, (
            f"keras_reformer.{sub}.{name}: `Args:` does not document {undocumented}"
        )
        assert _section(doc, "Returns") is not None, (
            f"keras_reformer.{sub}.{name}: docstring has no `Returns:` section"
        )
    if inspect.isclass(obj):
        assert re.search(r"```python\n.*?keras_reformer\.", doc, re.S), (
            f"keras_reformer.{sub}.{name}: no fenced ```python example using the public path"
        )


@pytest.mark.parametrize("sub, name, obj", PUBLIC, ids=IDS)
def test_docstring_code_spans_do_not_break_across_lines(sub, name, obj):
    # Python-Markdown cannot close a `code span` on the next line: it renders the
    # backticks literally.
    in_fence = False
    for line in (inspect.getdoc(obj) or "").splitlines():
        if line.strip().startswith("```"):
            in_fence = not in_fence
        elif not in_fence:
            assert line.count("`") % 2 == 0, (
                f"keras_reformer.{sub}.{name}: a `code span` is split across lines: {line.strip()!r}"
            )


@pytest.mark.parametrize("sub, name, obj", PUBLIC, ids=IDS)
def test_public_name_is_in_api_reference(sub, name, obj):
    assert f"keras_reformer.{sub}.{name}" in _api_entries(), (
        f"no `::: keras_reformer.{sub}.{name}` entry in docs/api/*.md"
    )


def test_api_reference_lists_only_public_names():
    public = {f"keras_reformer.{sub}.{name}" for sub, name, _ in PUBLIC}
    stale = sorted(_api_entries() - public)
    assert not stale, f"docs/api/*.md documents names that are not exported (yet?): {stale}"


def test_concept_figures_exist_with_their_regeneration_command():
    script = (DOCS / "figures" / "make_concept_figures.py").read_text()
    figure_names = set(re.findall(r'^\s+"(\w+)": fig_\w+,$', script, re.M))
    assert figure_names, "no FIGURES registry found in make_concept_figures.py"
    referenced = set()
    for page in (DOCS / "concepts").glob("*.md"):
        text = page.read_text()
        for name in re.findall(r"!\[[^\]]*\]\(\.\./figures/(\w+)\.png\)", text):
            referenced.add(name)
            assert (DOCS / "figures" / f"{name}.png").is_file(), f"{page.name}: {name}.png missing"
            assert name in figure_names, f"{page.name}: {name}.png is not drawn by the script"
            command = f"python docs/figures/make_concept_figures.py --only {name}"
            assert command in text, f"{page.name}: no `{command}` next to the figure"
    assert referenced == figure_names, (
        f"figures drawn but not shown: {sorted(figure_names - referenced)}"
    )


def test_benchmark_tables_are_generated_or_marked_not_measured():
    page = (DOCS / "benchmarks" / "index.md").read_text()
    included = re.findall(r'^--8<-- "([\w.-]+)"$', page, re.M)
    assert included, "the benchmarks page includes no generated table"
    for name in included:
        table = DOCS / "benchmarks" / "tables" / name
        assert table.is_file(), f"docs/benchmarks/index.md includes a missing file: {table}"
        text = table.read_text()
        generated = text.startswith("<!-- generated by ")
        placeholder = text.startswith("<!-- placeholder") and "Not yet measured" in text
        assert generated or placeholder, (
            f"{table.relative_to(ROOT)} must start with '<!-- generated by <command>' "
            "or be a 'Not yet measured' placeholder: numbers are never typed by hand"
        )


@pytest.mark.backend_independent
@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs not installed")
def test_mkdocs_build_strict(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    problems = [line for line in result.stderr.splitlines() if "WARNING" in line or "ERROR" in line]
    assert result.returncode == 0, "mkdocs build --strict failed:\n" + "\n".join(
        problems or result.stderr.splitlines()[-20:]
    )


@pytest.mark.skipif(importlib.util.find_spec("griffe") is None, reason="griffe not installed")
def test_call_arguments_become_a_list_in_the_rendered_docs():
    spec = importlib.util.spec_from_file_location(
        "griffe_call_arguments", ROOT / "scripts" / "griffe_call_arguments.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    doc = (
        "Summary.\n\nCall arguments:\n    inputs: a tensor of shape\n        `(b, l, d)`.\n"
        "    training: a bool.\n\nReturns:\n    inputs: unchanged."
    )
    assert module.rewrite_call_arguments(doc) == (
        "Summary.\n\nCall arguments:\n    - `inputs`: a tensor of shape\n      `(b, l, d)`.\n"
        "    - `training`: a bool.\n\nReturns:\n    inputs: unchanged."
    )
