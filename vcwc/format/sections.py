"""The sections of a .vcwc file's metadata that describe where the tensors came from and how they were made
(`source`, `methods`, `bias_correction`), checked for vcwc.format.schema."""

from __future__ import annotations

from typing import Any

from .fields import Fields
from .records import SourceRecord


def source_record(fields: Fields, names: list[str]) -> SourceRecord:
    dropped = fields.items("dropped")
    if not all(isinstance(item, str) for item in dropped):
        raise fields.error("dropped", "expected a list of strings")
    shards = fields.mapping("shards", optional=True, nullable=True)
    if shards is not None:
        known = set(names)
        for name, shard in shards.items():
            if name not in known or not isinstance(shard, str) or not _plain_file_name(shard):
                raise fields.error(
                    "shards",
                    f"entry {name[:60]!r}: {str(shard)[:60]!r} is not a shard file name of a tensor in the file",
                )
    return SourceRecord(
        fields.text("prefix"),
        fields.text("container_key", nullable=True),
        fields.mapping("extras"),
        tuple(dropped),
        shards,
        fields.mapping("shard_metadata", optional=True, nullable=True),
    )


def _plain_file_name(name: str) -> bool:
    """A file name that stays inside the output folder: no separators, not . or .., no NUL."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0") and len(name) < 256


def bias_correction_section(top: Fields, names: list[str]) -> dict | None:
    section = top.mapping("bias_correction", optional=True, nullable=True)
    if section is None:
        return None
    fields = top.child("bias_correction")
    for key in ("corrected", "uncorrectable"):
        if not all(isinstance(item, str) for item in fields.items(key, optional=True)):
            raise fields.error(key, "expected a list of tensor names")
    return section


def methods_section(top: Fields) -> dict | None:
    """The methods report (what `vcwc info` prints): sections of plain values, lists and objects of them."""
    section = top.mapping("methods", optional=True, nullable=True)
    if section is None:
        return None
    fields = top.child("methods")
    for key, value in section.items():
        part = fields.child(key)
        for name, entry in value.items():
            if not _plain(entry):
                raise part.error(name, "expected plain values, lists and objects of them")
    return section


def _plain(value: Any, depth: int = 0) -> bool:
    if isinstance(value, (str, int, float)):
        return True
    if depth < 2 and isinstance(value, list):
        return all(_plain(item, depth + 1) for item in value)
    if depth < 2 and isinstance(value, dict):
        return all(_plain(item, depth + 1) for item in value.values())
    return False
