"""swarmd's version, written in this one place: pyproject.toml reads it (``[tool.setuptools.dynamic]``),
``--version``, the process titles and the Web UI's process records show it."""

from __future__ import annotations

__version__ = "0.1.0"
