"""One timm-style registry serves every family of architectures (multi-view and chain)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ArchInfo:
    """Registry entry: what an architecture is and how to build it."""

    name: str
    description: str
    paper: str
    defaults: Mapping[str, object]
    builder: Callable = field(repr=False)


class Registry:
    """Architectures of one family, registered by function name with their default options."""

    def __init__(self, kind: str, defaults: Mapping[str, Mapping[str, object]]):
        self.kind, self.defaults = kind, defaults
        self._entries: dict[str, ArchInfo] = {}

    def register(self, *, description: str, paper: str) -> Callable:
        """Decorator: register the builder under its function name."""

        def deco(fn: Callable) -> Callable:
            name = fn.__name__
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = ArchInfo(name, description, paper, self.defaults[name], fn)
            return fn

        return deco

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, arch: object) -> bool:
        return arch in self._entries

    def info(self, arch: str) -> ArchInfo:
        """The entry of ``arch``; ``KeyError`` suggesting the closest name."""
        try:
            return self._entries[arch]
        except KeyError:
            close = difflib.get_close_matches(str(arch), list(self._entries), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise KeyError(f"unknown {self.kind} {arch!r}{hint} (have {self.names()})") from None
