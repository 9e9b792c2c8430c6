"""`vcwc demo`: the named recipes, and every working software codec lossless and at a few QPs, on one model,
in one table."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tqdm import tqdm

from ..codecs import ffmpeg, probe
from ..codecs.base import get_codec
from ..eval.datasets import load_dataset
from ..io import load_model
from ..recipe import RECIPES
from .experiment import ModelUnderTest
from .names import SOFTWARE_CODECS
from .sweep import sweep_recipe

BUNDLED_MODEL = "digits_resnet.safetensors"
BUNDLED_DATA = "digits_test.npz"
BUNDLED_ARCH = "digits_resnet"
SMALLEST_STEP_QPS = (-18, -16, -14)  # the smallest recipe's knob, around its default


def bundled_file(name: str) -> Path:
    """A file of the bundled default model: shipped inside the package as vcwc.bundled; an editable install
    does not map that package, so there it is the checkout's models/ folder, where the files live."""
    try:
        candidate = resources.files("vcwc.bundled") / name
        if candidate.is_file():
            return Path(str(candidate))
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parents[2] / "models" / name


@dataclass
class DemoResult:
    model: str
    arch: str
    data: str
    skipped: dict[str, str]  # codec -> why it could not run here
    rows: list[dict]


def run_demo(
    model_path=None,
    arch: str | None = None,
    data_path=None,
    *,
    limit: int | None = None,
    codecs=SOFTWARE_CODECS,
    ffmpeg_path: str | None = None,
    progress: bool = False,
) -> DemoResult:
    model_path = Path(model_path) if model_path else bundled_file(BUNDLED_MODEL)
    data_path = Path(data_path) if data_path else bundled_file(BUNDLED_DATA)
    arch = arch or BUNDLED_ARCH
    subject = ModelUnderTest(
        model_path.name, load_model(model_path), arch, load_dataset(data_path, limit=limit), progress=False
    )
    binary = ffmpeg.find_ffmpeg(ffmpeg_path)
    skipped, settings = {}, []
    for name in codecs:
        status = probe.probe(get_codec(name), binary)
        if not status.works:
            skipped[name] = status.reason
            continue
        codec = get_codec(name)
        settings += [(name, None)] * codec.supports_lossless + [(name, qp) for qp in codec.demo_qps]
    rows = [
        subject.run_baseline("fp32"),
        subject.run_baseline("int8_per_tensor"),
        subject.run_baseline("int8_zstd_per_tensor"),
    ]
    recipes = [RECIPES["lossless"], RECIPES["fast"]] + [
        RECIPES["smallest"].with_changes(step_qp=qp) for qp in SMALLEST_STEP_QPS
    ]
    recipes = [recipe for recipe in recipes if recipe.codec.name not in skipped]
    recipes += [sweep_recipe(name, "per_tensor", qp) for name, qp in settings]
    for recipe in tqdm(recipes, desc="demo", unit="setting", disable=None if progress else True, leave=False):
        row = subject.run_codec(recipe, ffmpeg_path=ffmpeg_path)
        if recipe.name:
            row["method"] = f"recipe {recipe.name}"
        rows.append(row)
    return DemoResult(str(model_path), arch, str(data_path), skipped, rows)
