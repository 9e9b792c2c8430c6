"""Style and structure, checked with every test run: ruff (lint and format) and the one-way import rule."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(tool: str, *arguments: str) -> subprocess.CompletedProcess:
    executable = shutil.which(tool, path=str(Path(sys.executable).parent)) or shutil.which(tool)
    if executable is None:
        pytest.fail(f"{tool} is not installed; pip install -e '.[test]'")
    return subprocess.run([executable, *arguments], cwd=ROOT, capture_output=True, text=True)


def test_ruff_finds_nothing():
    result = run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_code_is_formatted():
    result = run("ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_packages_import_one_way_and_pure_layers_need_no_torch():
    result = run("lint-imports")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr


def test_no_module_is_much_over_400_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "vcwc").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 440
    }
    assert not long, long
