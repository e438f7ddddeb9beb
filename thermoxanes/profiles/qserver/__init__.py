"""bluesky-queueserver startup for thermoxanes: ``startup.py`` plus its two YAML files.

See ``docs/epics.md`` ("Queue server"). The plans are the package's own, unchanged.
"""

from importlib import resources
from pathlib import Path


def qserver_file(name: str) -> Path:
    """Path of a queue-server file shipped with the package (e.g. the permissions YAML)."""
    return Path(str(resources.files(__name__) / name))
