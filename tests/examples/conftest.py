"""Tests of the examples' own code (`glucose_github`): the example folder is importable, as a user's
project folder is for cascade (`module:attr` imports resolve against the config file's folder)."""

from __future__ import annotations

import sys

from tests.conftest import GLUCOSE_EXAMPLE

if str(GLUCOSE_EXAMPLE) not in sys.path:
    sys.path.insert(0, str(GLUCOSE_EXAMPLE))
