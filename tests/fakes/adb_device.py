"""A fake Android device that the real adb server reaches over TCP (`adb connect 127.0.0.1:PORT`).

It speaks adb's transport protocol as adbd of platform-tools 29.0.6 does (system/core/adb:
protocol.txt, adb.cpp, transport.cpp, shell_protocol.h, file_sync_protocol.h, daemon/services.cpp,
daemon/shell_service.cpp, daemon/file_sync_service.cpp) and knows nothing of Android: shell
commands and file access go to a `DeviceHandler`. The services (shell, exec, sync) are in
adb_services; this module is the transport they run on.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import socket
import struct
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Callable, Protocol

log = logging.getLogger(__name__)

A_CNXN, A_AUTH, A_OPEN, A_OKAY, A_CLSE, A_WRTE = (
    int.from_bytes(name, "little") for name in (b"CNXN", b"AUTH", b"OPEN", b"OKAY", b"CLSE", b"WRTE")
)
A_VERSION = 0x01000001  # "skip checksum": the host ignores data_check and adbd sends 0
MAX_PAYLOAD = 1024 * 1024
AUTH_TOKEN, AUTH_SIGNATURE = 1, 2
TOKEN_SIZE = 20  # the host will not sign a token of any other size
SYNC_DATA_MAX = 64 * 1024
# Only what this fake implements. fixed_push_mkdir makes handler.write_file create parent
# directories; without it the client runs `mkdir` through the shell before a directory push.
FEATURES = ("shell_v2", "stat_v2", "fixed_push_mkdir")
MODES = ("device", "unauthorized", "offline")
_HEADER = struct.Struct("<6I")  # command arg0 arg1 data_length data_check magic


class DeviceHandler(Protocol):
    """What the device does; the transport only moves bytes.

    spawn: start `command` with stdin/stdout/stderr PIPEs and start_new_session=True (the device
        kills that process group when the host drops the stream). An exception is reported to the
        client as "error: ..." with exit code 126, as adbd does when it cannot start a shell.
    stat: (st_mode, size, mtime) of path, following symlinks; None when it does not exist.
    write_file: store a pushed file, creating parent directories; mode is the client's st_mode
        (a symlink push has S_IFLNK and the target as data). None on success, else the FAIL text.
    read_file: the bytes of path; None when it cannot be read.
    list_dir: (name, st_mode, size, mtime) of each entry; [] for a missing directory.
    """

    def spawn(self, command: str) -> subprocess.Popen: ...
    def stat(self, path: str) -> tuple[int, int, int] | None: ...
    def write_file(self, path: str, data: bytes, mode: int, mtime: int) -> str | None: ...
    def read_file(self, path: str) -> bytes | None: ...
    def list_dir(self, path: str) -> list[tuple[str, int, int, int]]: ...


class StreamClosed(Exception):
    """The host closed the stream, or the connection is gone."""


class Stream:
    """One adb stream as a service sees it: bytes in (acknowledged as consumed) and bytes out."""

    def __init__(self, conn: _Connection, local_id: int, remote_id: int):
        self.conn, self.local_id, self.remote_id = conn, local_id, remote_id
        self.on_peer_close: Callable[[], object] | None = None
        self._inbox: list[bytes | None] = []  # None marks the end
        self._buffer = b""
        self._cv = threading.Condition()
        self._write_lock = threading.Lock()
        self._window_open = True  # the host's OPEN implies its READY (protocol.txt)
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether either side has ended the stream."""
        return self._closed

    def on_message(self, command: int, data: bytes) -> None:
        """Take the host's OKAY (our next WRTE may go) or WRTE (queued until a service reads it)."""
        with self._cv:
            if command == A_WRTE and any(chunk is not None for chunk in self._inbox):
                self.conn.device.violations.append(f"host WRTE before our OKAY on stream {self.local_id}")
            if command == A_OKAY and self._window_open:
                self.conn.device.violations.append(f"host OKAY, no WRTE pending, on stream {self.local_id}")
            if command == A_WRTE:
                self._inbox.append(data)
            self._window_open |= command == A_OKAY
            self._cv.notify_all()

    def peer_closed(self) -> None:
        """The host sent CLSE or the connection died: wake readers and writers, run on_peer_close."""
        with self._cv:
            was_closed, self._closed = self._closed, True
            self._inbox.append(None)
            self._cv.notify_all()
        if not was_closed and self.on_peer_close:
            self.on_peer_close()

    def read(self) -> bytes:
        """The next bytes the host wrote, b"" once closed; the OKAY goes out only now (back-pressure)."""
        if self._buffer:
            chunk, self._buffer = self._buffer, b""
            return chunk
        with self._cv:
            self._cv.wait_for(lambda: self._inbox)
            if (chunk := self._inbox[0]) is None:
                return b""
            self._inbox.pop(0)
        self.conn.send(A_OKAY, self.local_id, self.remote_id)
        return chunk

    def read_exact(self, size: int) -> bytes | None:
        """Exactly `size` bytes (messages split the byte stream anywhere), None at the end."""
        data = b""
        while len(data) < size:
            if not (chunk := self.read()):
                return None
            data += chunk
        data, self._buffer = data[:size], data[size:]
        return data

    def write(self, data: bytes) -> None:
        """Send data as WRTEs of at most max_payload, each only after the host's OKAY for the last."""
        with self._write_lock:
            for start in range(0, len(data), self.conn.max_payload):
                with self._cv:
                    self._cv.wait_for(lambda: self._window_open or self._closed)
                    if self._closed:
                        raise StreamClosed
                    self._window_open = False
                chunk = data[start : start + self.conn.max_payload]
                if not self.conn.send(A_WRTE, self.local_id, self.remote_id, chunk):
                    raise StreamClosed

    def close(self) -> None:
        """End the stream from the device side (CLSE, unless the host closed it first)."""
        with self._cv:
            was_closed, self._closed = self._closed, True
            self._inbox.append(None)
            self._cv.notify_all()
        self.conn.forget(self)
        if not was_closed:
            self.conn.send(A_CLSE, self.local_id, self.remote_id)


class _Connection:
    """One TCP connection from the adb server: the handshake, then the streams it opens."""

    def __init__(self, device: FakeAdbDevice, sock: socket.socket):
        self.device, self.sock = device, sock
        self.max_payload = 4096  # MAX_PAYLOAD_V1 until the host's CNXN says more
        self.online = False
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._streams: dict[int, Stream] = {}
        self._ids = itertools.count(1)

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> bool:
        header = _HEADER.pack(command, arg0, arg1, len(data), 0, command ^ 0xFFFFFFFF)
        try:
            with self._send_lock:
                self.sock.sendall(header + data)
            return True
        except OSError:
            return False

    def forget(self, stream: Stream) -> None:
        with self._lock:
            self._streams.pop(stream.local_id, None)

    def run(self) -> None:
        reader = self.sock.makefile("rb")
        try:
            while len(header := reader.read(_HEADER.size)) == _HEADER.size:
                command, arg0, arg1, length, _check, magic = _HEADER.unpack(header)
                if magic != command ^ 0xFFFFFFFF or length > MAX_PAYLOAD:
                    log.warning("bad message header %r: dropping the connection", header)
                    break
                if len(data := reader.read(length)) < length or not self._dispatch(command, arg0, arg1, data):
                    break
        except OSError:
            pass  # reset by the host, or disconnect()
        finally:
            self._drop_streams()
            reader.close()
            self.sock.close()
            self.device._forget(self)

    def _drop_streams(self) -> None:
        with self._lock:
            streams, self._streams = list(self._streams.values()), {}
        for stream in streams:
            stream.peer_closed()

    def _dispatch(self, command: int, arg0: int, arg1: int, data: bytes) -> bool:
        mode = self.device.mode
        if command == A_CNXN:  # a new handshake ends whatever the old one opened, as in adbd
            self._drop_streams()
            self.max_payload = min(arg1, MAX_PAYLOAD)
            self.online = mode == "device"
            if mode == "device":
                self.send(A_CNXN, A_VERSION, MAX_PAYLOAD, self.device.connection_banner().encode())
            elif mode == "unauthorized":
                self.send(A_AUTH, AUTH_TOKEN, 0, secrets.token_bytes(TOKEN_SIZE))
        elif command == A_AUTH:
            # Every signature fails and the offered public key is never accepted (nobody taps
            # "Allow"), so the host ends up listing the device as unauthorized.
            if mode == "unauthorized" and arg0 == AUTH_SIGNATURE:
                self.send(A_AUTH, AUTH_TOKEN, 0, secrets.token_bytes(TOKEN_SIZE))
        elif command not in (A_OPEN, A_OKAY, A_WRTE, A_CLSE):
            log.warning("unknown command %08x: dropping the connection", command)
            return False
        elif not self.online:
            pass  # adbd ignores stream messages before the handshake
        elif command == A_OPEN:
            if arg0:
                self._open(arg0, data.rstrip(b"\0").decode("utf-8", "surrogateescape"))
        else:
            with self._lock:
                stream = self._streams.get(arg1)
            if stream is None or stream.remote_id != arg0:
                pass  # closed while the message was in flight: ignored, as protocol.txt says
            elif command == A_CLSE:
                self.forget(stream)
                stream.peer_closed()
            else:
                stream.on_message(command, data)
        return True

    def _open(self, remote_id: int, name: str) -> None:
        from tests.fakes.adb_services import pick_service  # lazily: adb_services imports Stream from here

        self.device.opened.append(name)
        if (service := pick_service(self.device.handler, name)) is None:
            log.info("refusing service %r", name)
            self.send(A_CLSE, 0, remote_id)
            return
        stream = Stream(self, next(self._ids), remote_id)
        with self._lock:
            self._streams[stream.local_id] = stream
        self.send(A_OKAY, stream.local_id, remote_id)
        threading.Thread(target=_serve, args=(service, stream), daemon=True, name=f"adb-fake {name[:30]}").start()


def _serve(service: Callable[[Stream], None], stream: Stream) -> None:
    try:
        service(stream)
    except StreamClosed:
        pass
    except Exception:  # a broken service must not take the device down
        log.exception("service failed")
    finally:
        stream.close()


@dataclass(eq=False)
class FakeAdbDevice:
    """A device on host:port (0 picks a free port); start() it or use it as a context manager.

    mode "device" answers the host's CNXN; "unauthorized" answers with AUTH tokens and never
    accepts a key; "offline" accepts TCP and never answers. `opened` records every service the
    host asked for, `violations` every flow-control rule the host broke. Banner values must not
    contain ':', ';' or '=' (adb splits the banner on them).
    """

    handler: DeviceHandler
    banner: dict[str, str] = field(default_factory=dict)
    mode: str = "device"
    host: str = "127.0.0.1"
    port: int = 0
    features: tuple[str, ...] = FEATURES
    opened: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    _listener: socket.socket | None = field(default=None, repr=False)
    _connections: set[_Connection] = field(default_factory=set, repr=False)
    _threads: list[threading.Thread] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")

    @property
    def serial(self) -> str:
        """The serial adb gives this device after `adb connect`."""
        return f"{self.host}:{self.port}"

    def connection_banner(self) -> str:
        """The CNXN payload: device::prop=value;...;features=a,b."""
        props = [f"{key}={value}" for key, value in self.banner.items()]
        return "device::" + ";".join([*props, "features=" + ",".join(self.features)])

    def start(self) -> FakeAdbDevice:
        """Listen, and serve each connection in its own thread."""
        listener = socket.create_server((self.host, self.port))
        listener.settimeout(0.2)  # lets the accept loop notice disconnect()
        self._listener, self.port = listener, listener.getsockname()[1]
        self._spawn(self._accept_loop, listener)
        return self

    def disconnect(self) -> None:
        """Drop every connection at once and accept no more: the cable is pulled for good."""
        with self._lock:
            listener, self._listener = self._listener, None
            connections = list(self._connections)
        if listener is not None:
            listener.close()
        for conn in connections:
            try:  # no goodbye: reset the connection, which also wakes its reader thread
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        """disconnect(), then wait for the connection threads (which kill their processes)."""
        self.disconnect()
        for thread in list(self._threads):
            thread.join(timeout=10)

    def __enter__(self) -> FakeAdbDevice:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name=f"adb-fake :{self.port}")
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, sock)
            with self._lock:
                if self._listener is not listener:
                    sock.close()
                    return
                self._connections.add(conn)
            self._spawn(conn.run)

    def _forget(self, conn: _Connection) -> None:
        with self._lock:
            self._connections.discard(conn)
