"""docs/python_api.md's examples run: every ```python block, in order, as one script."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "python_api.md"


def python_blocks(text: str) -> list[str]:
    """The code of every ```python fenced block, in order."""
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)


def test_the_page_has_an_example_for_each_part_of_the_api() -> None:
    code = "\n".join(python_blocks(PAGE.read_text()))
    for call in ("DataRecipe", "build_method(", "pretrain(", "evaluate(", "export_backbone("):
        assert call in code, call


@pytest.mark.slow  # a pretraining and three evaluations, each tiny
def test_python_api_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the examples write runs/ where they run
    monkeypatch.setenv("CONTRASTKIT_CACHE", str(tmp_path / "cache"))
    namespace: dict[str, object] = {"__name__": "__python_api__"}
    blocks = python_blocks(PAGE.read_text())
    assert len(blocks) >= 6
    for index, block in enumerate(blocks):
        exec(compile(block, f"{PAGE.name}:block{index + 1}", "exec"), namespace)
    assert (tmp_path / "runs" / "api" / "last.ckpt").is_file()
    assert (tmp_path / "runs" / "backbone.ts.json").is_file()
