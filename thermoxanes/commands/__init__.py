"""Subcommands of the ``thermoxanes`` command, one module each.

Every module here defines ``add_subparser(subparsers) -> argparse.ArgumentParser`` that
registers its subcommand and sets ``func`` (``args -> exit status``) as a default.
:func:`thermoxanes.cli.build_parser` discovers them, so a new command is a new file.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def command_modules() -> list[ModuleType]:
    """The subcommand modules of this package, in name order."""
    modules = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            modules.append(importlib.import_module(f"{__name__}.{info.name}"))
    return modules
