"""The tools' name for :mod:`kyros.sanitize`, the one sanitiser of kyros (the faces use it
too, and they cannot import the core: the function lives in the base layer)."""

from __future__ import annotations

from kyros.sanitize import clean_text

__all__ = ["clean_text"]
