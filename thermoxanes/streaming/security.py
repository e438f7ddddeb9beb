"""CURVE authentication and encryption for cross-host streaming (optional).

By default publishers bind ``127.0.0.1`` and use no security mechanism.  For
cross-host use, give the publisher a :class:`CurveServer` and each subscriber a
:class:`CurveClient`: all traffic is then encrypted (CurveZMQ) and only clients whose
public key is listed in ``CurveServer.allowed_clients`` are admitted (ZAP handler:
``zmq.auth.thread.ThreadAuthenticator`` on the publisher's own context).

Keys are Z85-encoded 40-byte strings as returned by ``zmq.curve_keypair()`` and stored
by ``zmq.auth.create_certificates``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

log = logging.getLogger(__name__)


def _key(value: bytes | str) -> bytes:
    key = value.encode("ascii") if isinstance(value, str) else bytes(value)
    if len(key) != 40:
        raise ValueError("CURVE keys are 40-character Z85 strings")
    return key


@dataclass(frozen=True)
class CurveKeys:
    """A CURVE key pair (Z85-encoded).

    Attributes
    ----------
    public : bytes
        Public key, 40 bytes of Z85.
    secret : bytes
        Secret key, 40 bytes of Z85; keep it private.
    """

    public: bytes
    secret: bytes

    @classmethod
    def generate(cls) -> CurveKeys:
        """Return a fresh key pair (``zmq.curve_keypair``)."""
        public, secret = zmq.curve_keypair()
        return cls(public=public, secret=secret)

    @classmethod
    def from_certificate(cls, path: str | Path) -> CurveKeys:
        """Load a key pair from a ``.key_secret`` certificate file written by zmq.auth.

        Parameters
        ----------
        path : str or Path
            Certificate file holding both keys.

        Returns
        -------
        CurveKeys
        """
        public, secret = zmq.auth.load_certificate(str(path))
        if secret is None:
            raise ValueError(f"{path} holds no secret key")
        return cls(public=_key(public), secret=_key(secret))


@dataclass
class CurveServer:
    """Publisher-side CURVE settings.

    Attributes
    ----------
    keys : CurveKeys
        The server's key pair; clients need ``keys.public``.
    allowed_clients : iterable of bytes, or None
        Z85 public keys of admitted clients.  ``None`` admits any client that knows the
        server key (encryption without client authentication); an empty collection
        admits nobody.
    """

    keys: CurveKeys
    allowed_clients: Iterable[bytes] | None = field(default=None)

    def allowed(self) -> frozenset[bytes] | None:
        """Return the admitted client keys as a set (``None``: any)."""
        if self.allowed_clients is None:
            return None
        return frozenset(_key(k) for k in self.allowed_clients)


@dataclass(frozen=True)
class CurveClient:
    """Subscriber-side CURVE settings.

    Attributes
    ----------
    server_public : bytes
        The publisher's public key (Z85).
    keys : CurveKeys
        The client's own key pair.
    """

    server_public: bytes
    keys: CurveKeys


class _KeyCheck:
    """Credentials provider for ``ThreadAuthenticator.configure_curve_callback``."""

    def __init__(self, allowed: frozenset[bytes]) -> None:
        self._allowed = allowed

    def callback(self, domain: str, key: bytes) -> bool:
        ok = bytes(key) in self._allowed
        if not ok:
            log.warning("CURVE client key rejected (domain %r)", domain)
        return ok


def start_authenticator(context: zmq.Context, config: CurveServer) -> ThreadAuthenticator:
    """Start a ZAP authenticator on ``context`` enforcing ``config``.

    Parameters
    ----------
    context : zmq.Context
        The context the server sockets belong to (one authenticator per context).
    config : CurveServer
        Server settings.

    Returns
    -------
    ThreadAuthenticator
        Call ``stop()`` on it when the sockets are closed.
    """
    auth = ThreadAuthenticator(context, log=logging.getLogger(__name__ + ".zap"))
    auth.start()
    allowed = config.allowed()
    if allowed is None:
        auth.configure_curve(domain="*", location=zmq.auth.CURVE_ALLOW_ANY)
    else:
        auth.configure_curve_callback(domain="*", credentials_provider=_KeyCheck(allowed))
    return auth


def apply_server(socket: zmq.Socket, config: CurveServer) -> None:
    """Make ``socket`` a CURVE server (call before ``bind``).

    Parameters
    ----------
    socket : zmq.Socket
        Socket to configure.
    config : CurveServer
        Server settings.
    """
    socket.curve_secretkey = _key(config.keys.secret)
    socket.curve_publickey = _key(config.keys.public)
    socket.curve_server = True


def apply_client(socket: zmq.Socket, config: CurveClient) -> None:
    """Make ``socket`` a CURVE client (call before ``connect``).

    Parameters
    ----------
    socket : zmq.Socket
        Socket to configure.
    config : CurveClient
        Client settings.
    """
    socket.curve_serverkey = _key(config.server_public)
    socket.curve_publickey = _key(config.keys.public)
    socket.curve_secretkey = _key(config.keys.secret)


def is_loopback_endpoint(endpoint: str) -> bool:
    """Return whether a tcp endpoint is bound to a loopback address only.

    Parameters
    ----------
    endpoint : str
        A ZeroMQ endpoint such as ``tcp://127.0.0.1:5577``.

    Returns
    -------
    bool
        ``True`` for ``ipc://``/``inproc://`` and tcp on 127.x.x.x, ``localhost``, ``::1``.
    """
    if not endpoint.startswith("tcp://"):
        return True
    host = endpoint[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
    return host.startswith("127.") or host in ("localhost", "::1")
