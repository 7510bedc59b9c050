"""Run the real adb client against a private adb server (own port, own HOME), for tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# Settings of the caller's environment that would point adb elsewhere.
_FOREIGN_ENV = (
    "ANDROID_SERIAL",
    "ADB_VENDOR_KEYS",
    "ANDROID_ADB_SERVER_ADDRESS",
    "ADB_SERVER_SOCKET",
    "ADB_TRACE",
    "ANDROID_SDK_HOME",
    "ANDROID_USER_HOME",
    "ANDROID_EMULATOR_HOME",
)


def adb_binary() -> str:
    """The adb on PATH; a missing adb is an error (CI installs Debian's adb), never a skip."""
    path = shutil.which("adb")
    if path is None:
        raise RuntimeError(
            "the `adb` binary is not on PATH: install it (Debian/Ubuntu: apt-get install "
            "adb); these tests drive the real adb client and server"
        )
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parse_devices(text: str) -> dict[str, str]:
    """serial -> state from `adb devices` output."""
    rows = (line.split() for line in text.splitlines()[1:] if line.strip() and not line.startswith("*"))
    return {row[0]: row[1] for row in rows if len(row) >= 2}


@dataclass(frozen=True)
class AdbHost:
    """One private adb server: its port, and the HOME holding its ~/.android keys and its log."""

    port: int
    home: Path
    adb: str = "adb"

    @property
    def log_path(self) -> Path:
        """Where the private server writes its log (adb.log under home)."""
        return self.home / "adb.log"

    def env(self) -> dict[str, str]:
        """The environment for every adb call: private port and HOME, no USB, mDNS or emulator scan."""
        env = {key: value for key, value in os.environ.items() if key not in _FOREIGN_ENV}
        env.update(
            ANDROID_ADB_SERVER_PORT=str(self.port),
            HOME=str(self.home),
            ANDROID_ADB_LOG_PATH=str(self.log_path),
            # adb 29 reads ADB_MDNS, ADB_USB and ADB_EMU (client/main.cpp); newer adbs
            # read ADB_MDNS_AUTO_CONNECT. Without them the server would probe mDNS, libusb
            # and the emulator ports 5555-5585, none of which a test wants.
            ADB_MDNS="0",
            ADB_MDNS_AUTO_CONNECT="0",
            ADB_USB="0",
            ADB_EMU="0",
        )
        return env

    def run(self, *args: str, timeout: float = 30.0, input: str | None = None) -> subprocess.CompletedProcess:
        """Run `adb ARGS`, capturing stdout/stderr as text; stdin is empty unless `input` is given."""
        return subprocess.run(
            [self.adb, *args],
            env=self.env(),
            capture_output=True,
            timeout=timeout,
            encoding="utf-8",
            errors="replace",
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )

    def popen(self, *args: str, **kwargs) -> subprocess.Popen:
        """Start `adb ARGS` with the private environment (pipes for stdout/stderr, empty stdin)."""
        kwargs = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kwargs}
        return subprocess.Popen([self.adb, *args], env=self.env(), **kwargs)

    def start_server(self, timeout: float = 30.0) -> None:
        """Start the private server (generating its key in home/.android on first use)."""
        result = self.run("start-server", timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"adb start-server failed: {result.stderr.strip()}")

    def devices(self) -> dict[str, str]:
        """serial -> state, as `adb devices` lists them."""
        return parse_devices(self.run("devices").stdout)

    def wait_for_state(self, serial: str, state: str | None, timeout: float = 15.0) -> None:
        """Poll `adb devices` until serial is listed in state (None: until it is not listed)."""
        deadline = time.monotonic() + timeout
        while (seen := self.devices().get(serial)) != state:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{serial} is {seen or 'not listed'} after {timeout:.0f}s, expected {state or 'not listed'}"
                )
            time.sleep(0.1)

    def connect(self, port: int, state: str = "device", timeout: float = 15.0) -> str:
        """`adb connect 127.0.0.1:PORT`, then wait until adb lists it in `state`; returns the serial."""
        serial = f"127.0.0.1:{port}"
        self.run("connect", serial, timeout=timeout)
        self.wait_for_state(serial, state, timeout)
        if state == "device":  # get-state needs a usable transport, so it proves more than the list
            got = self.run("-s", serial, "get-state", timeout=timeout).stdout.strip()
            if got != "device":
                raise RuntimeError(f"adb -s {serial} get-state said {got!r}")
        return serial

    def kill_server(self, timeout: float = 15.0) -> None:
        """Stop the private server and wait until its port is free."""
        subprocess.run(
            [self.adb, "kill-server"], env=self.env(), capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"the adb server on port {self.port} did not stop")


def private_host(home: Path) -> AdbHost:
    """An AdbHost on a free port with `home` as HOME (the server is not started yet)."""
    home.mkdir(parents=True, exist_ok=True)
    return AdbHost(port=free_port(), home=home, adb=adb_binary())
