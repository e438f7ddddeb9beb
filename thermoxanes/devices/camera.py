"""Area-detector camera with an HDF5 file plugin; documents reference the files.

Only the areaDetector PVs a TXM XANES sweep needs (driver ``cam1:``, HDF5 plugin
``HDF1:``), so the same class drives a real detector IOC and the simulated one.
Frames of different types (``frame_type``: dark, flat, data) go to different files: when
the type changes the plugin's capture is stopped (closing the file) and restarted with a
new file name, and a new Resource document is emitted; every frame then gets a Datum
whose ``point_number`` is its index in that file. Each Resource is used by one stream
only, with contiguous indices, as ``bluesky_tiled_plugins.TiledWriter`` expects.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, EpicsSignal, EpicsSignalRO, Signal
from ophyd import FormattedComponent as FCpt
from ophyd.status import Status, StatusBase

from thermoxanes.devices.connection import (
    PVConnectionError,
    PVTimeoutError,
    ca_connected,
    configure_timeouts,
    connection_error,
    fail_status,
    finish_status,
    guard_status,
    put_confirmed,
    pv_errors_named,
)

FRAME_TYPES = ("dark", "flat", "data")


def _with_separator(path: str) -> str:
    return path if path.endswith(("/", "\\")) else path + "/"


@pv_errors_named("stage", "unstage", "trigger", "last_frame")
class ADHDF5Camera(Device):
    """areaDetector camera writing HDF5 files (Stream mode), with Resource/Datum documents.

    Parameters
    ----------
    prefix : str
        Detector IOC prefix (e.g. ``"XF:18IDB-BI{Det:Neo}"``).
    write_dir : str
        Directory the IOC writes to (its own file system).
    read_dir : str, optional
        The same directory as seen by this process (default: ``write_dir``).
    cam, hdf : str
        Driver and HDF5 plugin sub-prefixes.
    capture_timeout_s : float
        Longest wait for the plugin to start or stop capturing, and for each setting
        written at ``stage`` to be confirmed by the IOC (s).

    Notes
    -----
    A frame (``trigger``) fails, naming the PV, when a PV of the camera disconnects
    during it or when it takes longer than ``10 * exposure_s + 30`` s; a put completion
    that Channel Access reports for a channel that disconnected is not taken for a frame.
    """

    acquire = FCpt(EpicsSignal, "{prefix}{cam}Acquire", kind="omitted", put_complete=True)
    exposure_s = FCpt(EpicsSignal, "{prefix}{cam}AcquireTime_RBV",
                      write_pv="{prefix}{cam}AcquireTime", kind="config", tolerance=1e-6)
    image_mode = FCpt(EpicsSignal, "{prefix}{cam}ImageMode", kind="omitted")
    num_images = FCpt(EpicsSignal, "{prefix}{cam}NumImages", kind="omitted")
    array_counter = FCpt(EpicsSignalRO, "{prefix}{cam}ArrayCounter_RBV", kind="omitted")
    size_x = FCpt(EpicsSignalRO, "{prefix}{cam}ArraySizeX_RBV", kind="omitted")
    size_y = FCpt(EpicsSignalRO, "{prefix}{cam}ArraySizeY_RBV", kind="omitted")
    file_path = FCpt(EpicsSignal, "{prefix}{hdf}FilePath", string=True, kind="omitted")
    file_name = FCpt(EpicsSignal, "{prefix}{hdf}FileName", string=True, kind="omitted")
    file_template = FCpt(EpicsSignal, "{prefix}{hdf}FileTemplate", string=True, kind="omitted")
    file_number = FCpt(EpicsSignal, "{prefix}{hdf}FileNumber", kind="omitted")
    auto_increment = FCpt(EpicsSignal, "{prefix}{hdf}AutoIncrement", kind="omitted")
    file_write_mode = FCpt(EpicsSignal, "{prefix}{hdf}FileWriteMode", kind="omitted")
    num_capture = FCpt(EpicsSignal, "{prefix}{hdf}NumCapture", kind="omitted")
    capture = FCpt(EpicsSignal, "{prefix}{hdf}Capture_RBV", write_pv="{prefix}{hdf}Capture",
                   kind="omitted")
    num_captured = FCpt(EpicsSignalRO, "{prefix}{hdf}NumCaptured_RBV", kind="omitted")
    full_file_name = FCpt(EpicsSignalRO, "{prefix}{hdf}FullFileName_RBV", string=True,
                          kind="omitted")

    array_data = FCpt(EpicsSignalRO, "{prefix}image1:ArrayData", kind="omitted", lazy=True,
                      doc="Last frame over CA (NDStdArrays), for viewers; not in documents")
    image = Cpt(Signal, value="", kind="normal", doc="Datum id of the last frame")
    readout_s = Cpt(Signal, value=0.05, kind="config", doc="Readout dead time (s)")
    frame_type = Cpt(Signal, value="data", kind="config", doc="'dark', 'flat' or 'data'")

    FRAME_TYPES = FRAME_TYPES
    TEMPLATE = "%s%s_%6.6d.h5"

    def __init__(self, prefix: str = "", *, write_dir: str, read_dir: str | None = None,
                 cam: str = "cam1:", hdf: str = "HDF1:", capture_timeout_s: float = 10.0,
                 **kwargs: Any):
        self.cam, self.hdf = cam, hdf
        self._write_dir = _with_separator(str(write_dir))
        self._read_dir = _with_separator(str(read_dir if read_dir is not None else write_dir))
        self._capture_timeout_s = float(capture_timeout_s)
        self._file_kind: str | None = None
        self._resource: dict[str, Any] | None = None
        self._index = 0
        self._asset_docs: deque[tuple[str, dict[str, Any]]] = deque()
        self._staged_name = ""
        self._lock = threading.Lock()
        self._shape: tuple[int, int] | None = None
        self._paths: dict[str, str] = {}  # resource uid -> file, for frame_lookup
        super().__init__(prefix, **kwargs)
        self.image.name = self.name + "_image"
        configure_timeouts(self)

    # -- files ----------------------------------------------------------------------------
    def _wait_for(self, signal: Any, value: int) -> None:
        deadline = time.monotonic() + self._capture_timeout_s
        while int(signal.get(use_monitor=False)) != value:
            if time.monotonic() > deadline:
                raise PVTimeoutError(f"{self.name}: {signal.pvname} did not reach {value} "
                                     f"within {self._capture_timeout_s} s")
            time.sleep(0.01)

    def _put(self, signal: Any, value: Any) -> None:
        put_confirmed(signal, value, self._capture_timeout_s)

    def _stop_capture(self) -> None:
        if int(self.capture.get(use_monitor=False)) != 0:
            self.capture.put(0, wait=False)
            self._wait_for(self.capture, 0)

    def _start_file(self, kind: str) -> None:
        self._stop_capture()
        base = f"{self._staged_name}_{kind}_{uuid.uuid4().hex[:8]}"
        self._put(self.file_name, base)
        self.capture.put(1, wait=False)
        self._wait_for(self.capture, 1)
        name = self.TEMPLATE % ("", base, 0)
        self._resource = {
            "uid": str(uuid.uuid4()),
            "spec": "AD_HDF5",
            "root": "/",
            "resource_path": str(PurePosixPath(self._read_dir) / name).lstrip("/"),
            "resource_kwargs": {"dataset": "/entry/data/data"},
            "path_semantics": "posix",
        }
        self._resource["resource_path"] = "/" + self._resource["resource_path"]
        self._asset_docs.append(("resource", self._resource))
        self._paths[self._resource["uid"]] = self._resource["resource_path"]
        while len(self._paths) > 4096:
            self._paths.pop(next(iter(self._paths)))
        self._file_kind, self._index = kind, 0

    def stage(self) -> list[Any]:
        self._staged_name = f"{self.name}_{uuid.uuid4().hex[:12]}"
        self._asset_docs.clear()            # nothing left over from a failed run
        self._stop_capture()
        self._put(self.file_path, self._write_dir)
        self._put(self.file_template, self.TEMPLATE)
        self._put(self.file_number, 0)
        self._put(self.auto_increment, 0)
        self._put(self.file_write_mode, 2)  # Stream
        self._put(self.num_capture, 0)      # until stopped
        self._put(self.image_mode, 0)       # Single
        self._put(self.num_images, 1)
        self._file_kind, self._resource = None, None
        self._shape = (int(self.size_y.get()), int(self.size_x.get()))
        return super().stage()

    def unstage(self) -> list[Any]:
        """Stop capturing (closing the file); the camera is unstaged even if that fails."""
        try:
            self._stop_capture()
        finally:
            self._file_kind, self._resource = None, None
            result = super().unstage()
        return result

    # -- acquisition ----------------------------------------------------------------------
    def trigger(self) -> StatusBase:
        kind = self.frame_type.get()
        if kind not in FRAME_TYPES:
            raise ValueError(f"{self.name}: unknown frame_type {kind!r}")
        if self._staged_name == "" or self._shape is None:
            raise RuntimeError(f"{self.name}: trigger before stage")
        if kind != self._file_kind:
            self._start_file(kind)
        resource, index = self._resource, self._index
        assert resource is not None
        self._index += 1
        datum_id = f"{resource['uid']}/{index}"
        timeout_s = float(self.exposure_s.get()) * 10 + 30.0
        status = Status(obj=self)
        guard_status(status, self, timeout_s=timeout_s, doing=f"acquiring {kind} frame {index}",
                     signals=[self.acquire, self.capture, self.num_captured],
                     pvs=lambda: f"{self.acquire.setpoint_pvname} put not completed")

        def done(st: StatusBase) -> None:
            if st.success and not ca_connected(self.acquire):
                # Channel Access "completes" a put whose channel disconnected.
                fail_status(status, connection_error(self.acquire, f"acquiring {kind} frame"))
            elif st.success:
                if status.done:       # failed meanwhile (disconnect, timeout): no datum
                    return
                self._asset_docs.append(("datum", {
                    "datum_id": datum_id, "resource": resource["uid"],
                    "datum_kwargs": {"point_number": index},
                }))
                self.image.put(datum_id)
                finish_status(status)
            else:
                fail_status(status, st.exception() or PVConnectionError(
                    f"{self.name}: acquisition failed ({self.acquire.setpoint_pvname})"))

        try:
            acquired = self.acquire.set(1, timeout=timeout_s)
        except Exception as exc:
            fail_status(status, exc)
            raise
        acquired.add_callback(done)
        return status

    def describe(self) -> dict[str, dict[str, Any]]:
        description = super().describe()
        if self._shape is None:
            try:
                self._shape = (int(self.size_y.get()), int(self.size_x.get()))
            except Exception:
                self._shape = (0, 0)
        description[self.image.name].update(
            shape=list(self._shape), dtype="array", dtype_numpy="<u2", external="FILESTORE:")
        return description

    def collect_asset_docs(self) -> Iterator[tuple[str, dict[str, Any]]]:
        while self._asset_docs:
            yield self._asset_docs.popleft()

    def last_frame(self) -> np.ndarray:
        """The last frame from the ``image1:`` plugin over Channel Access (H, W)."""
        height, width = int(self.size_y.get()), int(self.size_x.get())
        data = np.asarray(self.array_data.get(timeout=10.0))
        return data[: height * width].reshape(height, width).astype(np.uint16)

    def frame_lookup(self, datum_id: str, resource_path: str | None = None) -> np.ndarray | None:
        """The frame behind ``datum_id`` read back from its HDF5 file (SWMR), or None.

        For the live publisher (``Publisher(frame_lookup=...)``); works where this process
        can read the detector's files (``read_dir``).
        """
        import h5py

        uid, _, index = datum_id.rpartition("/")
        path = resource_path or self._paths.get(uid)
        if path is None:
            return None
        try:
            with h5py.File(path, "r", swmr=True) as f:
                return np.asarray(f["/entry/data/data"][int(index)])
        except (OSError, KeyError, IndexError):
            return None
