"""A griffe extension that renders Keras' `Call arguments:` docstring section as a list.

Google-style parsers know `Args:` but not the `Call arguments:` section of Keras
docstrings; griffe shows unknown sections as an admonition whose lines run
together. This extension rewrites each `name: description` entry of that
section into a markdown list item before the docstring is parsed, so

    Call arguments:
        inputs: a tensor of shape
            `(batch, length, d)`.

renders as a list with `inputs` in code font. Used by mkdocs.yml
(`extensions: [scripts/griffe_call_arguments.py]`).
"""

import re

import griffe

_ITEM = re.compile(r"^(\s*)(\*{0,2}\w+)\s*:\s*(.*)$")


def rewrite_call_arguments(text):
    """Returns `text` with the entries of its `Call arguments:` section as list items.

    Args:
        text: a docstring, already dedented.

    Returns:
        The docstring with each `name: description` entry of the section
        written `- `name`: description` (continuation lines kept with it).
    """
    lines = text.splitlines()
    out, in_section, item_indent = [], False, None
    for line in lines:
        if line.strip() == "Call arguments:" and not line.startswith(" "):
            in_section, item_indent = True, None
            out.append(line)
            continue
        if in_section:
            if line and not line.startswith(" "):
                in_section = False  # the next section starts at column 0
            elif line.strip():
                indent = len(line) - len(line.lstrip())
                if item_indent is None:
                    item_indent = indent
                match = _ITEM.match(line)
                if indent == item_indent and match:
                    line = f"{match.group(1)}- `{match.group(2)}`: {match.group(3)}"
                else:  # a continuation line: indent it under its list item
                    line = " " * (item_indent + 2) + line.strip()
        out.append(line)
    return "\n".join(out)


class CallArgumentsSection(griffe.Extension):
    """Rewrites `Call arguments:` sections of every loaded object's docstring."""

    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None and "Call arguments:" in obj.docstring.value:
            obj.docstring.value = rewrite_call_arguments(obj.docstring.value)
