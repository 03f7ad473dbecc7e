"""Griffe extension for the API reference: the docstrings' reST roles as Markdown code spans.

The code's docstrings cross-reference with Sphinx roles (``:func:`train```, ``:class:`~x.Y```);
Markdown would show the role names. This turns each into a code span of the name it points to.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const):`~?([^`]+)`")


class ReSTRoles(griffe.Extension):
    """Rewrites ``:role:`target``` to ```target``` in every docstring once it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(r"`\1`", obj.docstring.value)
