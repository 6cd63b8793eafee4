"""MkDocs hook: the docstrings' Sphinx roles read as code in the site.

The library's docstrings use reST roles (``:class:`Correction```, ``:func:`~aligner.x.y```) because
they read well in ``help()`` and editors; rendered as Markdown the role's name would stay in the
text (``:class:Correction``). Each role becomes a plain code span of the name it points at (the last
dotted part for a ``~`` target).
"""
from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj):<code>(~?)([^<]+)</code>")


def _code(match: re.Match[str]) -> str:
    short, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if short else target}</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    return _ROLE.sub(_code, html)
