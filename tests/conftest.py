import os
from pathlib import Path

import pytest

from vcwc.bench.experiment import ModelUnderTest
from vcwc.eval.datasets import load_dataset
from vcwc.io import load_model

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR_ENV = "VCWC_DATA"


def shared_data_dir() -> Path:
    """The shared data: $VCWC_DATA, else ../shared/data beside the repository (as on the team's machines and CI)."""
    return Path(os.environ.get(DATA_DIR_ENV) or REPO_ROOT.parent / "shared" / "data")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data directory ($VCWC_DATA, else <repo root>/../shared/data); skips when absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data directory {path} not found (set VCWC_DATA to point at it)")
    return path


@pytest.fixture(scope="session")
def cifar10_dir(data_dir: Path) -> Path:
    path = data_dir / "cifar10"
    if not path.is_dir():
        pytest.skip(f"{path} not found: the CIFAR-10 models and images are not available")
    return path


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The repository's models/ folder with the bundled digits model and its test set."""
    return REPO_ROOT / "models"


@pytest.fixture(scope="session")
def digits_subject(models_dir):
    """The bundled digits model scored on its held-out images: a real model with BatchNorm, in seconds."""
    loaded = load_model(models_dir / "digits_resnet.safetensors")
    return ModelUnderTest("digits", loaded, "digits_resnet", load_dataset(models_dir / "digits_test.npz"))


@pytest.fixture(autouse=True, scope="session")
def probe_cache_dir(tmp_path_factory) -> Path:
    """Encoder probe results go to a fresh folder: no test reads or writes the user's ~/.cache/vcwc."""
    path = tmp_path_factory.mktemp("vcwc-cache")
    previous = os.environ.get("VCWC_CACHE_DIR")
    os.environ["VCWC_CACHE_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("VCWC_CACHE_DIR", None)
    else:
        os.environ["VCWC_CACHE_DIR"] = previous
