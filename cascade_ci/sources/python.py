"""`python = "module:function"`: the user's own function reads the data.

The function takes the SourceContext and returns rows per table (see `cascade_ci.sources.base`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from cascade_ci.errors import SourceError
from cascade_ci.plugins import import_attr

if TYPE_CHECKING:
    from cascade_ci.config import Settings, SourceConfig
    from cascade_ci.sources.base import Rows, SourceContext


class PythonSource:
    """Calls `module:function` with the context."""

    def __init__(self, config: SourceConfig, settings: Settings) -> None:
        self.spec = str(config.python or config.target)
        self.function = import_attr(self.spec, settings.root)
        if not callable(self.function):
            raise SourceError(f"{self.spec} is not callable")

    def read(self, ctx: SourceContext) -> Mapping[str, Rows]:
        """What the function returns, checked to be a mapping of table name to rows."""
        rows = self.function(ctx)
        if not isinstance(rows, Mapping):
            raise SourceError(f"{self.spec} returned {type(rows).__name__}, not a mapping of table name to rows")
        return rows
