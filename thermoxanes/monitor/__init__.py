"""Live monitor: a browser page fed by the map updates and the acquisition stream.

``start_monitor(maps_endpoint, data_endpoint, host="127.0.0.1", port=0)`` returns a
handle with ``.url`` and ``.close()``; ``thermoxanes monitor`` runs it from the command
line. See docs/monitor.md.
"""

from __future__ import annotations

from thermoxanes.monitor.server import MonitorHandle, start_monitor
from thermoxanes.monitor.state import MonitorConfig, MonitorState

__all__ = ["MonitorConfig", "MonitorHandle", "MonitorState", "start_monitor"]
