"""Names a package exports but imports on first use (PEP 562's module ``__getattr__``).

A worker or a producer imports ``sqlq`` and the packages it needs at every start; the parts most
processes never touch (croniter behind ``sqlq.crontab``, the routing declarations behind
``sqlq.Exchange``) stay unimported until a name from them is read. The value is then stored in the
package's namespace, so only the first read goes through here.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_exports(package: str, where: Mapping[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package``: name ``n`` comes from the module ``where[n]``
    (relative to the package, e.g. ``".timing"``); any other name is an ``AttributeError``."""

    def __getattr__(name: str) -> object:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
