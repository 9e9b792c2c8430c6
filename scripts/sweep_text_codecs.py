"""H.264, H.265 and AV1 under `--recipe smallest` on the suite's two text models, with `vcwc sweep`.

The sweep a researcher comparing codecs on transformers would run: all-mpnet-base-v2 (a sentence
encoder, scored by the cosine of its embeddings to the original's on 512 lines of tinyshakespeare) and
SmolLM2-135M (a language model, scored by perplexity on 16 windows of 512 tokens), each compressed with
the smallest recipe, as `vcwc compress --recipe smallest` runs it (architecture from the Hugging Face
folder), through x264, x265 and SVT-AV1 at the step QPs around both models' bars; NNCodec at QPs in steps
of 1 around its own, and int8 per channel + zstd -19. Writes results/text_codecs/ (one record per
point, summary.md, headline.md, plots); a rerun measures only what is missing.

    python scripts/prepare_models.py      # once: the suite's models, into the model cache
    python scripts/sweep_text_codecs.py [--out results/text_codecs]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import RESULTS, shared_data_dir
from suite_models import SUITE

from vcwc import cli

MODELS = ("all-mpnet-base-v2", "smollm2-135m")
CODECS = "x264,x265,svtav1"
# all-mpnet-base-v2 meets its bar from -29 with x264, SmolLM2 from -28 (results/generality); NNCodec from -31
# and -30.
STEP_QPS = "-30,-29,-28,-27"
NNCODEC_QPS = "-31,-30,-29"


def models_toml(folder: Path) -> Path:
    text = shared_data_dir() / "text" / "tinyshakespeare.txt"
    tables = []
    for name in MODELS:
        path = SUITE[name].path()
        if not path.exists():
            sys.exit(f"{path}: missing; run python scripts/prepare_models.py first")
        tables.append(f'[[model]]\nname = "{name}"\npath = "{path}"\ndata = "{text}"\n')
    config = folder / "models.toml"
    config.write_text("\n".join(tables))
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS / "text_codecs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        arguments = ["sweep", "--models", str(models_toml(Path(scratch))), "--recipes", "smallest"]
        arguments += ["--codecs", CODECS, f"--step-qps={STEP_QPS}", f"--nncodec-qps={NNCODEC_QPS}"]
        arguments += ["--baselines", "int8_zstd_per_channel", "--out", str(args.out), "-j", "1", "--threads", "2"]
        return cli.main(arguments)


if __name__ == "__main__":
    sys.exit(main())
