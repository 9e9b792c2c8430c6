"""Typed access to a JSON object that names the field at fault in every error: the reading half of the
metadata schema (vcwc.format.schema)."""

from __future__ import annotations

from typing import Any

from ..errors import FormatError


class Fields:
    """Typed access to one JSON object, naming `path.key` in every error."""

    def __init__(self, value: Any, path: str, source: str):
        if not isinstance(value, dict):
            raise error(source, path, f"expected an object, got {kind_of(value)}")
        self.value, self.path, self.source = value, path, source

    def error(self, key: str, problem: str) -> FormatError:
        return error(self.source, f"{self.path}.{key}" if self.path else key, problem)

    def has(self, key: str) -> bool:
        return key in self.value

    def raw(self, key: str, optional: bool = False, default: Any = None) -> Any:
        if key not in self.value:
            if optional:
                return default
            raise self.error(key, "missing")
        return self.value[key]

    def integer(
        self,
        key: str,
        minimum: int = 0,
        maximum: int | None = None,
        optional: bool = False,
        nullable: bool = False,
        default: int | None = None,
    ) -> int | None:
        value = self.raw(key, optional, default)
        if value is None and (nullable or optional):
            return value
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(key, f"expected a whole number, got {kind_of(value)}")
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
            raise self.error(key, f"{value} is outside {bounds}")
        return value

    def text(
        self,
        key: str,
        choices: tuple[str, ...] | None = None,
        optional: bool = False,
        nullable: bool = False,
        default: str | None = None,
    ) -> str | None:
        value = self.raw(key, optional, default)
        if value is None and (nullable or optional):
            return value
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {kind_of(value)}")
        if choices is not None and value not in choices:
            raise self.error(key, f"{value[:40]!r} is not one of {', '.join(choices)}")
        return value

    def flag(self, key: str) -> bool:
        value = self.raw(key)
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {kind_of(value)}")
        return value

    def number(self, key: str) -> float | str | None:
        """A float, or "inf"/"-inf"/"nan" (JSON has no such numbers), or null; absent means null."""
        value = self.raw(key, optional=True)
        if value is None or value in ("inf", "-inf", "nan"):
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"expected a number, got {kind_of(value)}")
        return float(value)

    def items(self, key: str, optional: bool = False) -> list:
        value = self.raw(key, optional, [])
        if not isinstance(value, list):
            raise self.error(key, f"expected a list, got {kind_of(value)}")
        return value

    def mapping(self, key: str, optional: bool = False, nullable: bool = False) -> dict | None:
        value = self.raw(key, optional)
        if value is None and (optional or nullable):
            return None
        if not isinstance(value, dict):
            raise self.error(key, f"expected an object, got {kind_of(value)}")
        return value

    def child(self, key: str) -> Fields:
        return Fields(self.raw(key), f"{self.path}.{key}" if self.path else key, self.source)


def kind_of(value: Any) -> str:
    return "null" if value is None else type(value).__name__.replace("dict", "object").replace("list", "list")


def error(source: str, path: str, problem: str) -> FormatError:
    return FormatError(f"{source}: metadata field {path}: {problem}")
