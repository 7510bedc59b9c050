"""The services a `FakeAdbDevice` offers on an OPEN: shell (protocol v2 or v1), exec, and sync.

As adbd of platform-tools 29.0.6 runs them (system/core/adb: shell_protocol.h,
file_sync_protocol.h, daemon/services.cpp, daemon/shell_service.cpp,
daemon/file_sync_service.cpp); the work itself goes to a `DeviceHandler`. The transport they
run on (streams, flow control, connections) is in adb_device.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import struct
import subprocess
import threading
from typing import Callable

from tests.fakes.adb_device import SYNC_DATA_MAX, DeviceHandler, Stream, StreamClosed

log = logging.getLogger(__name__)

_STDIN, _STDOUT, _STDERR, _EXIT, _CLOSE_STDIN = 0, 1, 2, 3, 4  # shell protocol v2 packet ids
_STAT_V2 = struct.Struct("<4sIQQIIIIQqqq")  # id error dev ino mode nlink uid gid size atime mtime ctime
_DENT_V1 = struct.Struct("<4sIIII")  # id mode size mtime namelen; DONE is sent at this size too


def pick_service(handler: DeviceHandler, name: str) -> Callable[[Stream], None] | None:
    """The function serving an OPEN of `name`, or None to refuse it (cf. adbd's daemon_service_to_fd)."""
    if name.startswith("shell"):  # shell[,arg,...]:command, args such as v2, raw, pty, TERM=xterm
        args, colon, command = name[len("shell") :].partition(":")
        if not colon or (args and not args.startswith(",")) or not command:
            return None  # an interactive shell (no command) needs a pty: not offered
        return lambda stream: run_shell(handler, command, "v2" in args.split(","), stream)
    if name.startswith("exec:") and name != "exec:":
        return lambda stream: run_shell(handler, name[len("exec:") :], False, stream)
    if name == "sync:":
        return lambda stream: run_sync(handler, stream)
    return None


def _packet(ident: int, data: bytes) -> bytes:
    return struct.pack("<BI", ident, len(data)) + data


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_shell(handler: DeviceHandler, command: str, v2: bool, stream: Stream) -> None:
    """Run `command` through the handler, streaming output as it comes (shell protocol v2, or raw merged)."""
    try:
        proc = handler.spawn(command)
    except Exception as exc:  # adbd's ReportError: the message on stderr, exit code 126
        message = f"error: {exc}\n".encode()
        return stream.write(_packet(_STDERR, message) + _packet(_EXIT, b"\x7e") if v2 else message)
    finished = threading.Event()
    # The host dropped the stream (client killed, cable pulled): stop what nobody will read.
    stream.on_peer_close = lambda: finished.is_set() or _kill_group(proc)
    if stream.closed:  # closed before the callback was in place
        _kill_group(proc)
    pumps = [
        threading.Thread(target=_pump_output, args=(pipe, ident if v2 else None, stream), daemon=True)
        for pipe, ident in ((proc.stdout, _STDOUT), (proc.stderr, _STDERR))
    ]
    threading.Thread(target=_pump_input, args=(stream, proc.stdin, v2), daemon=True).start()
    try:
        for pump in pumps:
            pump.start()
        for pump in pumps:
            pump.join()
        code = proc.wait()
        finished.set()
        if v2:  # adbd reports death by signal N as 0x80 | N
            stream.write(_packet(_EXIT, bytes([code & 0xFF if code >= 0 else 0x80 | -code])))
    finally:
        if not finished.is_set():
            _kill_group(proc)
            proc.wait()


def _pump_output(pipe, ident: int | None, stream: Stream) -> None:
    # os.read returns whatever the process has written so far: lines reach the host as printed.
    try:
        while chunk := os.read(pipe.fileno(), SYNC_DATA_MAX):
            stream.write(chunk if ident is None else _packet(ident, chunk))
    except StreamClosed:
        pass
    finally:
        pipe.close()


def _pump_input(stream: Stream, stdin, v2: bool) -> None:
    # Reads (and so acknowledges) until the stream ends, even after the process's stdin is closed.
    while True:
        if v2:
            header = stream.read_exact(5)
            ident, length = struct.unpack("<BI", header) if header else (None, 0)
            if header is None or (data := stream.read_exact(length) if length else b"") is None:
                break
        elif not (data := stream.read()):
            break
        else:
            ident = _STDIN
        try:
            if ident == _STDIN:
                stdin.write(data)
                stdin.flush()
            elif ident == _CLOSE_STDIN:  # the client's stdin hit EOF
                stdin.close()
            # window-size changes (id 5) mean nothing without a pty
        except (OSError, ValueError):
            pass  # the process closed its stdin or is gone: drop the input
    try:
        stdin.close()
    except OSError:
        pass


def _status(ident: bytes, message: str = "") -> bytes:
    return struct.pack("<4sI", ident, len(message.encode())) + message.encode()


def run_sync(handler: DeviceHandler, stream: Stream) -> None:
    """The file service behind adb push/pull/ls: requests until QUIT or the first failure."""
    while (request := stream.read_exact(8)) is not None:
        ident, length = struct.unpack("<4sI", request)
        if length > 1024:
            return stream.write(_status(b"FAIL", "path too long"))
        if (raw := stream.read_exact(length)) is None:
            return
        path = raw.decode("utf-8", "surrogateescape")
        log.debug("sync %s %s", ident.decode(errors="replace"), path)
        if ident == b"STAT":  # v1 can only say "missing" with all zeros
            mode, size, mtime = handler.stat(path) or (0, 0, 0)
            stream.write(struct.pack("<4sIII", ident, mode, size & 0xFFFFFFFF, mtime))
        elif ident in (b"STA2", b"LST2"):  # the reply carries the request's id
            found = handler.stat(path)
            mode, size, mtime = found or (0, 0, 0)
            stream.write(
                _STAT_V2.pack(
                    ident, 0 if found else errno.ENOENT, 0, 0, mode, int(bool(found)), 0, 0, size, mtime, mtime, mtime
                )
            )
        elif ident == b"LIST":
            stream.write(
                b"".join(
                    _DENT_V1.pack(b"DENT", mode, size & 0xFFFFFFFF, mtime, len(name.encode())) + name.encode()
                    for name, mode, size, mtime in handler.list_dir(path)
                )
                + _DENT_V1.pack(b"DONE", 0, 0, 0, 0)
            )
        elif ident == b"SEND":
            if not _receive_file(handler, stream, path):
                return
        elif ident == b"RECV":
            if (data := handler.read_file(path)) is None:
                return stream.write(_status(b"FAIL", "open failed: No such file or directory"))
            step = SYNC_DATA_MAX - 8  # adbd's DATA header and bytes fit its 64 KiB buffer
            chunks = (data[start : start + step] for start in range(0, len(data), step))
            # one write, so WRTEs carry max_payload each (as adbd's socket reads do), not 64 KiB
            stream.write(
                b"".join(struct.pack("<4sI", b"DATA", len(chunk)) + chunk for chunk in chunks)
                + struct.pack("<4sI", b"DONE", 0)
            )
        elif ident == b"QUIT":
            return
        else:
            return stream.write(_status(b"FAIL", f"unknown command {int.from_bytes(ident, 'little'):08x}"))


def _receive_file(handler: DeviceHandler, stream: Stream, spec: str) -> bool:
    # SEND "path,mode", DATA chunks of at most 64 KiB, DONE(mtime); OKAY or FAIL answers the DONE.
    path, comma, mode = spec.rpartition(",")
    if not comma or not mode.isdigit():
        stream.write(_status(b"FAIL", "bad mode" if comma else "missing , in ID_SEND"))
        return False
    chunks = []
    while (head := stream.read_exact(8)) is not None:
        ident, size = struct.unpack("<4sI", head)
        if ident == b"DONE":
            error = handler.write_file(path, b"".join(chunks), int(mode), size)
            stream.write(_status(b"FAIL", error) if error else _status(b"OKAY"))
            return error is None
        if ident != b"DATA" or size > SYNC_DATA_MAX:
            reason = "invalid data message" if ident != b"DATA" else "oversize data message"
            stream.write(_status(b"FAIL", reason))
            return False
        if (chunk := stream.read_exact(size)) is None:
            return False
        chunks.append(chunk)
    return False
