"""The README's Python blocks run as written, from the repository root, writing only to a temporary folder;
the recipe files in the docs are valid recipes."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from vcwc.recipe import Recipe

ROOT = Path(__file__).resolve().parents[1]


def blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.DOTALL)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(blocks(ROOT / "README.md", "python"))))
def test_readme_python_blocks_run_as_written(index, tmp_path):
    code = blocks(ROOT / "README.md", "python")[index]
    before = sorted(p.name for p in ROOT.iterdir())
    for _ in range(2):  # any number of times
        completed = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={"TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        )
        assert completed.returncode == 0, completed.stderr
    assert sorted(p.name for p in ROOT.iterdir()) == before


def test_the_readme_has_python_blocks():
    assert blocks(ROOT / "README.md", "python")


@pytest.mark.parametrize("document", ["recipes.md"])
def test_recipe_files_in_the_docs_are_valid(document):
    found = blocks(ROOT / "docs" / document, "toml")
    assert found
    for text in found:
        Recipe.from_dict(tomllib.loads(text))
