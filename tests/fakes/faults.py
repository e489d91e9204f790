"""A BranchCatalog wrapper that fails the first N calls of chosen methods with a transient fault."""

from __future__ import annotations

from collections import Counter
from typing import Any

from cascade_ci.errors import ServiceUnavailableError


class FlakyCatalog:
    """Delegates to `inner`; `failures={"tables": 2}` makes the first two `tables()` calls fail."""

    def __init__(self, inner: Any, failures: dict[str, int]) -> None:
        self._inner = inner
        self._failures = dict(failures)
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target) or name not in self._failures:
            return target

        def flaky(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            if self.calls[name] <= self._failures[name]:
                raise ServiceUnavailableError(f"injected fault: catalog {name}() unavailable (call {self.calls[name]})")
            return target(*args, **kwargs)

        return flaky
