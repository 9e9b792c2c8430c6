"""A model a sweep measures: its file, architecture and evaluation data, as the command line or a TOML
model list gives them, and the files that go with it wherever its points run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tomllib

from ..errors import InputError
from ..eval.datasets import is_image_data
from ..io import model_files

HF_COMPANIONS = ("config.json", "tokenizer.json")


@dataclass(frozen=True)
class ModelSpec:
    """A model file, its architecture, and the data it is scored on: labelled images, or a text (a text
    model, whose architecture and tokenizer may come from the Hugging Face folder the file sits in)."""

    name: str
    path: str
    arch: str | None  # None: a text model's Hugging Face folder tells it
    data: str
    limit: int | None = None  # images, or a text's windows (language model) or lines (encoder)
    input_shape: tuple[int, ...] | None = None  # the noise's shape, for a MODULE:CALLABLE architecture
    tokenizer: str | None = None  # a text model's tokenizer.json; None: the one beside the model

    @property
    def is_image_data(self) -> bool:
        return is_image_data(self.data)

    @property
    def files(self) -> tuple[str, ...]:
        """The files a point of this model reads: the model, its data and its tokenizer."""
        return tuple(path for path in (self.path, self.data, self.tokenizer) if path)

    @property
    def companions(self) -> tuple[str, ...]:
        """The files beside the model file that go wherever it goes: a sharded model's shards, and a text
        model's Hugging Face files (its architecture and tokenizer). None for a folder: it travels whole."""
        if Path(self.path).is_dir():
            return ()
        folder = Path(self.path).parent
        shards = [file.name for file in model_files(self.path)[1:]]
        text = [] if self.is_image_data else [name for name in HF_COMPANIONS if (folder / name).is_file()]
        return tuple(dict.fromkeys(shards + text))

    @classmethod
    def parse(cls, text: str) -> list[ModelSpec]:
        """`PATH:ARCH:DATA[:LIMIT]`, or a .toml file with [[model]] tables (name, path, arch, data, limit,
        input_shape, tokenizer)."""
        if text.endswith(".toml"):
            return cls.from_toml(Path(text))
        parts = text.split(":")
        if len(parts) not in (3, 4):
            raise InputError(
                f"model spec {text!r}: expected PATH:ARCH:DATA[:LIMIT] or a .toml file "
                "(where a MODULE:CALLABLE architecture goes)"
            )
        limit = int(parts[3]) if len(parts) == 4 else None
        return [cls(Path(parts[0]).stem, parts[0], parts[1], parts[2], limit)]

    @classmethod
    def from_toml(cls, path: Path) -> list[ModelSpec]:
        try:
            config = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InputError(f"{path}: cannot read model list ({exc})") from None
        base = path.parent
        specs = []
        for index, entry in enumerate(config.get("model", [])):
            missing = [key for key in ("path", "data") if key not in entry]
            if missing:
                raise InputError(f"{path}: [[model]] number {index + 1} lacks {', '.join(missing)}")
            model_path, data, tokenizer = (
                (str((base / entry[key]).resolve()) if not Path(entry[key]).is_absolute() else entry[key])
                if key in entry
                else None
                for key in ("path", "data", "tokenizer")
            )
            if "arch" not in entry and is_image_data(data):
                raise InputError(f"{path}: [[model]] number {index + 1} lacks arch (images need the architecture)")
            shape = entry.get("input_shape")
            if shape is not None and not (
                isinstance(shape, list) and shape and all(isinstance(n, int) and n > 0 for n in shape)
            ):
                raise InputError(f"{path}: [[model]] number {index + 1}: input_shape must be a list of positive ints")
            name = entry.get("name", Path(model_path).stem)
            specs.append(
                cls(
                    name,
                    model_path,
                    entry.get("arch"),
                    data,
                    entry.get("limit"),
                    tuple(shape) if shape else None,
                    tokenizer,
                )
            )
        if not specs:
            raise InputError(f"{path}: no [[model]] entries")
        return specs
