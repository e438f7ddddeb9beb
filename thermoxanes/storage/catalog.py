"""The embedded tiled catalog: SQLite plus files under one folder, served in process.

Layout under ``directory``::

    catalog/   tiled's own storage (catalog.db SQLite, data/ for what tiled writes itself)
               and, while a server runs over it, server.json (its URI with the API key)
    raw/       HDF5 files written by the cameras, referenced by the run documents

Raw runs live in the container ``raw`` (spec ``CatalogOfBlueskyRuns`` 3.0), so they can
be looked up by uid, by scan id or by position (``runs[-1]``). Derived maps live in the
container ``maps`` beside it (:mod:`thermoxanes.storage.results`).

Another process that needs the catalog while a server runs over it (the analysis service
storing maps during the demo) connects to that server, through :func:`open_catalog`,
instead of opening the same SQLite file a second time.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import threading
from pathlib import Path
from typing import Any

#: API key of every embedded server of this process. tiled 0.2.20 keeps its server
#: settings in one process-wide cached object and each new app writes its
#: ``single_user_api_key`` there, so a second server in the process silently invalidates
#: the first one's key (401 for every request). Sharing one key makes that harmless.
PROCESS_API_KEY = secrets.token_hex(16)

RUNS_CONTAINER = "raw"
RUNS_SPEC = ("CatalogOfBlueskyRuns", "3.0")


class EmbeddedCatalog:
    """Start (or re-open) a tiled server on loopback over an on-disk catalog.

    Parameters
    ----------
    directory : path
        Folder that holds ``catalog/`` and ``raw/``; created if missing, re-used if not.
    api_key : str, optional
        API key of the server (part of :attr:`uri`). Default: :data:`PROCESS_API_KEY`,
        random per process and shared by all embedded servers of the process (a
        different key per server would break the servers started earlier, see there).

    Examples
    --------
    >>> cat = EmbeddedCatalog("demo_output")          # doctest: +SKIP
    >>> run = cat.runs[-1]                             # the latest run
    >>> run["primary"]["camera_image"].read().shape    # (68, 512, 512)
    """

    def __init__(self, directory: str | os.PathLike, api_key: str | None = None):
        from tiled.server import SimpleTiledServer

        self.directory = Path(directory).resolve()
        self.raw_dir = self.directory / "raw"
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        with _tiled_init_done_in_process(self.directory / "catalog" / "catalog.db"):
            self._server = SimpleTiledServer(
                self.directory / "catalog", api_key=api_key or PROCESS_API_KEY,
                readable_storage=[self.raw_dir],
            )
        self.uri: str = self._server.uri
        self.client = connect(self.uri)
        self.runs = runs_container(self.client)
        self._info = server_info_path(self.directory)
        _write_private(self._info, json.dumps({"uri": self.uri, "pid": os.getpid()}))

    def writer(self, batch_size: int = 1) -> Any:
        """A ``TiledWriter`` RunEngine callback writing into :attr:`runs`."""
        from bluesky_tiled_plugins import TiledWriter

        return TiledWriter(self.runs, batch_size=batch_size)

    def close(self) -> None:
        """Stop the server (the catalog stays on disk)."""
        with contextlib.suppress(OSError):
            info = json.loads(self._info.read_text())
            if info.get("uri") == self.uri:
                self._info.unlink()
        self._server.close()

    def __enter__(self) -> EmbeddedCatalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def init_catalog_db(db_path: str | os.PathLike) -> None:
    """Create (or check) tiled's SQLite catalog database at ``db_path``, in this process.

    What ``tiled catalog init --if-not-exists`` does: create the tables of a new database
    and stamp its alembic revision; a database at an older revision is left alone (tiled
    reports it when the server starts). Runs in a thread of its own (its own event loop).
    """
    from sqlalchemy.ext.asyncio import create_async_engine
    from tiled.alembic_utils import UninitializedDatabase, check_database, stamp_head
    from tiled.catalog.alembic_constants import ALEMBIC_DIR, ALEMBIC_INI_TEMPLATE_PATH
    from tiled.catalog.core import ALL_REVISIONS, REQUIRED_REVISION, initialize_database
    from tiled.utils import ensure_specified_sql_driver

    uri = ensure_specified_sql_driver(Path(db_path))
    errors: list[BaseException] = []

    async def create_tables() -> None:
        engine = create_async_engine(uri)
        try:
            await check_database(engine, REQUIRED_REVISION, ALL_REVISIONS)
        except UninitializedDatabase:
            await initialize_database(engine)
        finally:
            await engine.dispose()

    def work() -> None:
        import asyncio
        import logging
        import warnings

        path, alembic_log = list(sys.path), logging.getLogger("alembic")
        level = alembic_log.level
        alembic_log.setLevel(logging.WARNING)  # no INFO lines on a CLI's stderr
        try:
            asyncio.run(create_tables())
            with warnings.catch_warnings():  # alembic's about tiled's alembic.ini
                warnings.simplefilter("ignore", DeprecationWarning)
                stamp_head(ALEMBIC_INI_TEMPLATE_PATH, ALEMBIC_DIR, uri)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)
        finally:
            sys.path[:] = path  # alembic prepends the working folder to sys.path
            alembic_log.setLevel(level)

    thread = threading.Thread(target=work, name="tiled-catalog-init")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


_INIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _tiled_init_done_in_process(db_path: Path):
    """Start a ``SimpleTiledServer`` over ``db_path`` without its init subprocess.

    ``SimpleTiledServer`` runs ``python -m tiled catalog init --if-not-exists`` in a
    subprocess every time it starts, about 4 s of Python start-up and imports (more than
    half of ``thermoxanes export``'s run time on a small catalog). The same init done by
    :func:`init_catalog_db` in this process takes a fraction of a second; then tiled's
    catalog is opened without it (only for the calls made from this thread, while the
    server starts). If the in-process init fails, tiled's own path runs unchanged.
    """
    try:
        import tiled.catalog as tiled_catalog

        db_path.parent.mkdir(parents=True, exist_ok=True)
        init_catalog_db(db_path)
    except Exception:  # noqa: BLE001 - tiled's subprocess does it (and reports problems)
        yield
        return
    with _INIT_LOCK:
        original = tiled_catalog.from_uri
        owner = threading.get_ident()

        def from_uri(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() == owner:
                kwargs["init_if_not_exists"] = False
            return original(*args, **kwargs)

        tiled_catalog.from_uri = from_uri
        try:
            yield
        finally:
            tiled_catalog.from_uri = original


def connect(uri: str, api_key: str | None = None) -> Any:
    """A tiled client for ``uri`` (an existing server, e.g. a beamline's)."""
    from tiled.client import from_uri

    return from_uri(uri, api_key=api_key) if api_key else from_uri(uri)


def runs_container(client: Any) -> Any:
    """The ``raw`` container of bluesky runs under ``client``, created if missing."""
    from tiled.structures.core import Spec

    if RUNS_CONTAINER in client:
        return client[RUNS_CONTAINER]
    return client.create_container(
        RUNS_CONTAINER, specs=[Spec(RUNS_SPEC[0], version=RUNS_SPEC[1])]
    )


def how_to_open(directory: str | os.PathLike) -> str:
    """Python lines a user can paste to open the catalog under ``directory``."""
    directory = Path(directory).resolve()
    return (
        "from thermoxanes.storage.catalog import EmbeddedCatalog\n"
        f"cat = EmbeddedCatalog({str(directory)!r})   # serves it on 127.0.0.1 (tiled)\n"
        "from tiled.queries import Key\n"
        "sweeps = cat.runs.search(Key('plan_name') == 'xanes_sweep')\n"
        "run = sweeps[-1]                              # the last sweep, or cat.runs[uid]\n"
        "frames = run['primary']['camera_image'].read()  # (energies, H, W) uint16\n"
        "print(run.metadata['start']['sweep_index'], frames.shape)\n"
        "# maps stored by `thermoxanes analyze --catalog-dir` (docs/storage.md):\n"
        "# from thermoxanes.storage.results import load_maps\n"
        "# maps = load_maps(cat, run.metadata['start']['uid'])"
    )


def server_info_path(directory: str | os.PathLike) -> Path:
    """``directory/catalog/server.json``: URI (with API key) of the server running over it."""
    return Path(directory).resolve() / "catalog" / "server.json"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (it holds an API key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def running_server_uri(directory: str | os.PathLike) -> str | None:
    """URI of a live server over the catalog under ``directory``, or ``None``.

    Reads ``catalog/server.json`` (written by :class:`EmbeddedCatalog`) and checks that
    the server answers; a file left behind by a process that died is ignored.
    """
    path = server_info_path(directory)
    try:
        info = json.loads(path.read_text())
        uri, pid = str(info["uri"]), int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)  # the process that wrote it is still alive
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    try:
        import httpx

        root = uri.split("?", 1)[0].rstrip("/")
        httpx.get(root + "/", timeout=2.0)
    except Exception:  # noqa: BLE001 - any failure means: no server there
        return None
    return uri


def is_catalog_dir(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds an embedded catalog (``catalog/catalog.db``)."""
    return (Path(directory) / "catalog" / "catalog.db").is_file()


class CatalogHandle:
    """A tiled client on a catalog, and what must be closed with it.

    Attributes
    ----------
    client : tiled client
        Root of the catalog.
    where : str
        Human-readable location (folder or URI without API key) for messages.
    """

    def __init__(self, client: Any, where: str, embedded: EmbeddedCatalog | None = None):
        self.client = client
        self.where = where
        self._embedded = embedded

    @property
    def runs(self) -> Any:
        """The ``raw`` container of runs (``ValueError`` if the catalog has none)."""
        if RUNS_CONTAINER not in self.client:
            raise ValueError(f"{self.where}: no {RUNS_CONTAINER!r} container of runs")
        return self.client[RUNS_CONTAINER]

    def close(self) -> None:
        """Stop the embedded server this handle started, if any."""
        if self._embedded is not None:
            self._embedded.close()
            self._embedded = None

    def __enter__(self) -> CatalogHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_catalog(
    directory: str | os.PathLike | None = None,
    uri: str | None = None,
    api_key: str | None = None,
    *,
    create: bool = False,
) -> CatalogHandle:
    """Open a catalog: a tiled server by URI, or the embedded catalog under ``directory``.

    For ``directory``, a server already running over it (the demo's) is used through its
    URI; otherwise an :class:`EmbeddedCatalog` is started and closed with the handle.

    Parameters
    ----------
    directory : path, optional
        Folder of an embedded catalog (holding ``catalog/catalog.db``).
    uri : str, optional
        URI of a tiled server (a beamline's, or ``EmbeddedCatalog.uri``); wins over
        ``directory``.
    api_key : str, optional
        API key for ``uri`` (not needed when the URI carries ``?api_key=``).
    create : bool
        Create an embedded catalog where none exists (otherwise that is an error).

    Raises
    ------
    FileNotFoundError
        ``directory`` holds no catalog and ``create`` is false.
    ValueError
        Neither ``directory`` nor ``uri`` given, or the server cannot be reached.
    """
    if uri:
        try:
            import httpx

            # fail fast (tiled's client retries a refused connection for up to 45 s)
            httpx.get(uri.split("?", 1)[0], timeout=5.0)
            client = connect(uri, api_key)
        except Exception as exc:  # noqa: BLE001 - one clear line for any connection failure
            raise ValueError(f"{_strip_key(uri)}: cannot open the tiled server "
                             f"({one_line(exc)})") from None
        return CatalogHandle(client, _strip_key(uri))
    if directory is None:
        raise ValueError("give a catalog folder (--catalog) or a tiled URI (--catalog-uri)")
    directory = Path(directory)
    if not is_catalog_dir(directory) and not create:
        raise FileNotFoundError(
            f"{directory}: no thermoxanes catalog here (missing catalog/catalog.db)")
    running = running_server_uri(directory)
    if running is not None:
        return CatalogHandle(connect(running), str(directory))
    embedded = EmbeddedCatalog(directory)
    return CatalogHandle(embedded.client, str(directory), embedded)


def one_line(exc: BaseException) -> str:
    """``"ExcType: first line of the message"``, for one-line error reports."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _strip_key(uri: str) -> str:
    """``uri`` without its ``api_key`` query parameter (for messages)."""
    base, _, query = uri.partition("?")
    kept = [p for p in query.split("&") if p and not p.startswith("api_key=")]
    return base + ("?" + "&".join(kept) if kept else "")
