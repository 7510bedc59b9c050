"""The fake device against the real adb 29 client and server (private server port, temporary HOME).

What real adb 29.0.6 does, as these tests pin down:
- unauthorized: `adb connect` exits 0 printing "failed to authenticate to SERIAL"; `adb devices -l`
  lists "SERIAL  unauthorized transport_id:N"; commands exit 1 with "error: device unauthorized.".
- offline (TCP accepted, CNXN never answered): `adb connect` waits its 10 s handshake timeout,
  exits 0 printing "failed to connect to SERIAL"; the device stays listed "offline"; commands
  exit 1 with "error: device offline".
- disconnect mid-shell: the running `adb shell` ends at once with exit code 0 (the shell v2
  client returns 0 when the stream ends without an exit packet), stdout cut short and nothing on
  stderr. Only the next command tells: exit 1, "error: device offline".
"""

from __future__ import annotations

import os
import random
import re
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from tests.fakes.adb_device import A_CLSE, A_CNXN, A_OKAY, A_OPEN, A_VERSION, A_WRTE, FakeAdbDevice
from tests.fakes.adb_host import AdbHost, private_host

PIXEL = {"ro.product.name": "sunfish", "ro.product.model": "Pixel 4a", "ro.product.device": "sunfish"}


class SandboxHandler:
    """Device paths live under root; commands run with /bin/sh -c in root; /system is read-only."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def local(self, path: str) -> Path:
        """The host path behind a device path."""
        return self.root / path.lstrip("/")

    def spawn(self, command: str) -> subprocess.Popen:
        """Run command in the sandbox, in its own process group."""
        return subprocess.Popen(
            ["/bin/sh", "-c", command],
            cwd=self.root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def stat(self, path: str) -> tuple[int, int, int] | None:
        """(mode, size, mtime) or None."""
        try:
            st = os.stat(self.local(path))
        except OSError:
            return None
        return st.st_mode, st.st_size, int(st.st_mtime)

    def write_file(self, path: str, data: bytes, mode: int, mtime: int) -> str | None:
        """Store a pushed file; refuse /system like a locked phone does."""
        if path.startswith("/system/"):
            return "couldn't create file: Read-only file system"
        target = self.local(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(mode & 0o777)
        os.utime(target, (mtime, mtime))
        return None

    def read_file(self, path: str) -> bytes | None:
        """File bytes or None."""
        try:
            return self.local(path).read_bytes()
        except OSError:
            return None

    def list_dir(self, path: str) -> list[tuple[str, int, int, int]]:
        """Entries of a directory, [] when missing."""
        folder = self.local(path)
        if not folder.is_dir():
            return []
        return [
            (entry.name, st.st_mode, st.st_size, int(st.st_mtime))
            for entry in folder.iterdir()
            for st in [entry.lstat()]
        ]


@pytest.fixture(scope="module")
def adb(tmp_path_factory) -> AdbHost:
    """A private adb server for this module, killed at the end."""
    host = private_host(tmp_path_factory.mktemp("adb-home"))
    host.start_server()
    yield host
    host.kill_server()


@pytest.fixture(scope="module")
def phone(adb, tmp_path_factory):
    """A connected Pixel-like fake device over a sandbox directory."""
    with FakeAdbDevice(SandboxHandler(tmp_path_factory.mktemp("phone")), banner=PIXEL) as device:
        adb.connect(device.port)
        yield device
    # the host waited for each of our OKAYs before its next WRTE, and vice versa
    assert device.violations == []


def shell(adb: AdbHost, device: FakeAdbDevice, command: str, **kwargs) -> subprocess.CompletedProcess:
    """`adb -s SERIAL shell COMMAND`."""
    return adb.run("-s", device.serial, "shell", command, **kwargs)


def test_connect_lists_the_device_with_its_banner(adb, phone):
    listing = adb.run("devices", "-l").stdout
    line = re.escape(phone.serial)
    line += r" +device product:sunfish model:Pixel_4a device:sunfish transport_id:\d+$"
    assert re.search("^" + line, listing, re.M), listing
    assert phone.connection_banner() == (
        "device::ro.product.name=sunfish;ro.product.model=Pixel 4a;ro.product.device=sunfish;"
        "features=shell_v2,stat_v2,fixed_push_mkdir"
    )
    assert adb.run("-s", phone.serial, "get-state").stdout.strip() == "device"


def test_shell_v2_separates_stdout_stderr_and_exit_code(adb, phone):
    result = shell(adb, phone, "echo hi; echo err >&2; exit 3")
    assert (result.stdout, result.stderr, result.returncode) == ("hi\n", "err\n", 3)
    assert re.fullmatch(r"shell,v2,(TERM=[^,]*,)?raw:echo hi; echo err >&2; exit 3", phone.opened[-1])
    killed = shell(adb, phone, "kill -9 $$")
    assert killed.returncode == 128 + 9  # adbd reports a signal N as 0x80 | N


def test_shell_output_is_streamed_as_printed(adb, phone):
    client = adb.popen("-s", phone.serial, "shell", "echo first; sleep 1; echo second", text=True)
    try:
        assert client.stdout.readline() == "first\n"
        first_at = time.monotonic()
        assert client.stdout.readline() == "second\n"
        assert time.monotonic() - first_at > 0.7  # the first line arrived while the device slept
        assert client.wait(timeout=10) == 0
    finally:
        client.kill()
        client.communicate()


def test_stdin_reaches_the_process_and_eof_closes_it(adb, phone):
    assert shell(adb, phone, "tr a-z A-Z", input="hello\n").stdout == "HELLO\n"
    # stdin is /dev/null: the client sends close-stdin at once, so cat ends
    assert shell(adb, phone, "cat; echo done", timeout=10).stdout == "done\n"


def test_shell_v1_and_exec_merge_the_streams(adb, phone):
    legacy = adb.run("-s", phone.serial, "shell", "-x", "echo out; sleep 0.2; echo err >&2; exit 3")
    assert (legacy.stdout, legacy.returncode) == ("out\nerr\n", 0)  # no exit code without shell v2
    assert phone.opened[-1] == "shell:echo out; sleep 0.2; echo err >&2; exit 3"
    raw = adb.run("-s", phone.serial, "exec-out", "printf 'a\\0b'")
    assert raw.stdout == "a\0b"


def test_push_3mb_is_identical_and_pulls_back(adb, phone, tmp_path):
    data = random.Random(7).randbytes(3 * 1024 * 1024 + 17)
    local = tmp_path / "model.tflite"
    local.write_bytes(data)
    result = adb.run("-s", phone.serial, "push", str(local), "/data/local/tmp/edge/model.tflite")
    assert result.returncode == 0, result.stderr
    pushed = phone.handler.local("/data/local/tmp/edge/model.tflite")
    assert pushed.read_bytes() == data
    assert int(pushed.stat().st_mtime) == int(local.stat().st_mtime)  # DONE carries the mtime
    back = tmp_path / "back.tflite"
    result = adb.run("-s", phone.serial, "pull", "/data/local/tmp/edge/model.tflite", str(back))
    assert result.returncode == 0, result.stderr
    assert back.read_bytes() == data
    listing = adb.run("-s", phone.serial, "ls", "/data/local/tmp/edge").stdout
    assert re.search(r"^[0-9a-f]{8} 0030001[1-9a-f] [0-9a-f]{8} model\.tflite$", listing, re.M), listing


def test_push_and_pull_failures_reach_the_client(adb, phone, tmp_path):
    (tmp_path / "f.txt").write_text("x")
    refused = adb.run("-s", phone.serial, "push", str(tmp_path / "f.txt"), "/system/f.txt")
    # adb 29's LinePrinter writes these errors to stdout when it is not a terminal
    assert refused.returncode == 1
    assert "remote couldn't create file: Read-only file system" in refused.stdout + refused.stderr
    missing = adb.run("-s", phone.serial, "pull", "/data/nothing", str(tmp_path / "n"))
    assert missing.returncode == 1
    assert "No such file or directory" in missing.stdout + missing.stderr
    assert shell(adb, phone, "echo still here").stdout == "still here\n"


def test_concurrent_streams_on_one_connection(adb, phone, tmp_path):
    ticker = adb.popen("-s", phone.serial, "shell", "for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.2; done", text=True)
    try:
        assert ticker.stdout.readline() == "tick 1\n"
        data = random.Random(8).randbytes(1024 * 1024)
        (tmp_path / "blob").write_bytes(data)
        quick = adb.popen("-s", phone.serial, "shell", "echo quick", text=True)
        push = adb.run("-s", phone.serial, "push", str(tmp_path / "blob"), "/data/blob")
        assert push.returncode == 0, push.stderr
        assert quick.communicate(timeout=10)[0] == "quick\n"
        rest, _ = ticker.communicate(timeout=10)
        assert rest.splitlines() == [f"tick {i}" for i in range(2, 7)]
        assert phone.handler.local("/data/blob").read_bytes() == data
    finally:
        ticker.kill()
        ticker.communicate()


def test_killing_the_client_kills_the_device_process_group(adb, phone):
    client = adb.popen("-s", phone.serial, "shell", "sleep 30 & echo $! > bg.pid; echo up; wait", text=True)
    assert client.stdout.readline() == "up\n"
    pid = int(phone.handler.local("bg.pid").read_text())
    client.kill()
    client.communicate()
    assert _gone(pid, within=5), "the background child survived the closed stream"


def test_unknown_services_are_refused_and_the_device_keeps_working(adb, phone):
    for args in (["reverse", "--list"], ["root"], ["shell"]):  # reverse:, root:, interactive shell
        result = adb.run("-s", phone.serial, *args, timeout=10)
        assert (result.returncode, result.stderr.endswith("closed\n")) == (1, True), (args, result)
    assert phone.opened[-3:] == ["reverse:list-forward", "root:", phone.opened[-1]]
    assert re.fullmatch(r"shell,v2,(TERM=[^,]*,)?raw:", phone.opened[-1])
    assert shell(adb, phone, "echo ok").stdout == "ok\n"


def test_unauthorized_device(adb, tmp_path):
    with FakeAdbDevice(SandboxHandler(tmp_path), banner=PIXEL, mode="unauthorized") as device:
        assert adb.run("connect", device.serial).stdout == f"failed to authenticate to {device.serial}\n"
        listing = adb.run("devices", "-l").stdout
        assert re.search("^" + re.escape(device.serial) + r" +unauthorized transport_id:\d+$", listing, re.M)
        result = shell(adb, device, "echo hi")
        assert result.returncode == 1 and result.stderr.startswith("error: device unauthorized.")
        assert device.opened == []
        adb.run("disconnect", device.serial)


@pytest.mark.slow  # waits out adb's 10 s handshake timeout
def test_offline_device(adb, tmp_path):
    with FakeAdbDevice(SandboxHandler(tmp_path), mode="offline") as device:
        started = time.monotonic()
        connect = adb.popen("connect", device.serial, text=True)
        adb.wait_for_state(device.serial, "offline", timeout=5)
        out, _ = connect.communicate(timeout=20)
        assert (out, connect.returncode) == (f"failed to connect to {device.serial}\n", 0)
        assert 9 < time.monotonic() - started < 15  # adb's 10 s handshake timeout
        assert adb.devices()[device.serial] == "offline"
        result = shell(adb, device, "echo hi")
        assert (result.returncode, result.stderr) == (1, "error: device offline\n")
        adb.run("disconnect", device.serial)


def test_disconnect_mid_shell(adb, tmp_path):
    with FakeAdbDevice(SandboxHandler(tmp_path), banner=PIXEL) as device:
        adb.connect(device.port)
        client = adb.popen("-s", device.serial, "shell", "echo $$ > sh.pid; echo start; sleep 30; echo end", text=True)
        assert client.stdout.readline() == "start\n"
        pid = int(device.handler.local("sh.pid").read_text())
        device.disconnect()
        out, err = client.communicate(timeout=10)
        # adb 29 reports nothing: exit 0, output cut short, empty stderr
        assert (client.returncode, out, err) == (0, "", "")
        assert _gone(pid, within=5)
        assert adb.devices()[device.serial] == "offline"  # adb keeps retrying a TCP device
        after = shell(adb, device, "echo hi")
        assert (after.returncode, after.stderr) == (1, "error: device offline\n")
        adb.run("disconnect", device.serial)


def test_two_devices_at_once(adb, tmp_path):
    other = {"ro.product.name": "oriole", "ro.product.model": "Pixel 6", "ro.product.device": "oriole"}
    with (
        FakeAdbDevice(SandboxHandler(tmp_path / "a"), banner=PIXEL) as first,
        FakeAdbDevice(SandboxHandler(tmp_path / "b"), banner=other) as second,
    ):
        for device, name in ((first, "a"), (second, "b")):
            adb.connect(device.port)
            device.handler.local("name").write_text(name)
        listing = adb.run("devices", "-l").stdout
        assert re.search(re.escape(second.serial) + r" +device product:oriole model:Pixel_6 ", listing)
        assert shell(adb, first, "cat name").stdout == "a"
        assert shell(adb, second, "cat name").stdout == "b"
        for device in (first, second):
            adb.run("disconnect", device.serial)


def test_device_waits_for_each_okay_before_its_next_write(tmp_path):
    """Spoken to by a bare-socket host: a second WRTE only after our OKAY for the first."""
    with (
        FakeAdbDevice(SandboxHandler(tmp_path), banner=PIXEL) as device,
        socket.create_connection(("127.0.0.1", device.port), timeout=5) as sock,
    ):
        _send(sock, A_CNXN, A_VERSION, 4096, b"host::\0")
        assert _recv(sock)[:2] == (A_CNXN, A_VERSION)
        _send(sock, A_OPEN, 7, 0, b"shell,v2,raw:echo a; sleep 0.2; echo b\0")
        command, local_id, remote_id, _ = _recv(sock)
        assert (command, remote_id) == (A_OKAY, 7)
        assert _recv(sock) == (A_WRTE, local_id, 7, b"\x01\x02\x00\x00\x00a\n")
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):  # "b" is printed by now, but held back
            _recv(sock)
        sock.settimeout(5)
        _send(sock, A_OKAY, 7, local_id)
        output = b""
        while (message := _recv(sock))[0] == A_WRTE:
            output += message[3]
            _send(sock, A_OKAY, 7, local_id)
        assert output == b"\x01\x02\x00\x00\x00b\n" + b"\x03\x01\x00\x00\x00\x00"  # stdout b, exit 0
        assert message[:3] == (A_CLSE, local_id, 7)


def _send(sock: socket.socket, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
    sock.sendall(struct.pack("<6I", command, arg0, arg1, len(data), sum(data), command ^ 0xFFFFFFFF) + data)


def _recv(sock: socket.socket) -> tuple[int, int, int, bytes]:
    command, arg0, arg1, length, _, _ = struct.unpack("<6I", _recv_exact(sock, 24))
    return command, arg0, arg1, _recv_exact(sock, length)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "the device closed the connection"
        data += chunk
    return data


def _gone(pid: int, within: float) -> bool:
    # An orphan killed under a PID 1 that does not reap stays a zombie: count that as gone.
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX":
                return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        time.sleep(0.05)
    return False
