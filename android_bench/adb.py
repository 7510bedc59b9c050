"""The `adb` client: find the binary, list devices, run quoted shell commands, push files.

Every command string sent to a device is built from `quote()`d parts: adb joins its arguments with
spaces and hands them to the phone's shell, so an unquoted path is a command injection.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from edgepipe.models.shared.errors import DeviceError

INSTALL_HINT = (
    "install Android platform-tools (Debian/Ubuntu: 'apt-get install adb'; elsewhere "
    "https://developer.android.com/tools/releases/platform-tools) or point the ADB environment "
    "variable at the adb binary"
)

STATE_HINTS = {
    "unauthorized": "unlock the phone and accept the 'Allow USB debugging?' prompt (if none shows, revoke USB "
    "debugging authorizations in Developer options and reconnect)",
    "offline": "reconnect the cable or run 'adb reconnect'; an offline phone is often still booting or locked",
    "no permissions": "add a udev rule for the phone's USB vendor id (see 'adb devices' help) or run the adb "
    "server as a user with access to the USB device",
    "recovery": "reboot the phone into Android ('adb reboot')",
    "bootloader": "reboot the phone into Android ('fastboot reboot')",
}

# what the adb client prints when the transport is gone; its exit code is then 1 or 255
_GONE = re.compile(
    r"device '.*' not found|device offline|no devices/emulators found|error: closed|"
    r"connection reset|device still authorizing|device unauthorized|protocol fault",
    re.I,
)


def quote(part: str | Path) -> str:
    """One word of a device shell command, safe whatever characters it holds."""
    return shlex.quote(str(part))


@dataclass(frozen=True)
class DeviceEntry:
    """One line of `adb devices -l`."""

    serial: str
    state: str
    details: dict[str, str] = field(default_factory=dict)

    @property
    def hint(self) -> str | None:
        """What the user should do when the device is not usable, or None."""
        return None if self.state == "device" else STATE_HINTS.get(self.state, f"state {self.state!r}")


@dataclass(frozen=True)
class Adb:
    """The adb binary, with the environment its server runs in."""

    binary: str

    def run(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        """Run `adb ARGS`; a transport failure becomes a DeviceError naming the command."""
        try:
            done = subprocess.run(
                [self.binary, *args], capture_output=True, text=True, timeout=timeout, errors="replace"
            )
        except subprocess.TimeoutExpired:
            raise DeviceError(
                f"'adb {' '.join(args)[:120]}' did not answer within {timeout:.0f} s; "
                "check the cable and that the phone is unlocked"
            ) from None
        if check and done.returncode != 0:
            raise DeviceError(
                f"'adb {' '.join(args)[:120]}' failed (exit {done.returncode}): "
                f"{_last_line(done.stderr or done.stdout)}"
            )
        return done

    def devices(self) -> list[DeviceEntry]:
        """Every device the adb server knows, whatever its state."""
        return parse_devices(self.run("devices", "-l", timeout=30).stdout)

    def shell(self, serial: str, command: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        """Run one already-quoted command line in the phone's shell; exit codes come back (shell protocol v2)."""
        done = self.run("-s", serial, "shell", command, timeout=timeout, check=False)
        if done.returncode != 0 and gone(done.stderr):
            raise DeviceError(
                f"device {serial} went away while running '{command[:80]}': {_last_line(done.stderr)}; "
                "check the cable and 'adb devices'"
            )
        if check and done.returncode != 0:
            raise DeviceError(
                f"on {serial}, '{command[:120]}' failed (exit {done.returncode}): "
                f"{_last_line(done.stderr or done.stdout)}"
            )
        return done

    def shell_stream(self, serial: str, command: str) -> subprocess.Popen:
        """Start a long-running device command whose output is read line by line as it is printed."""
        return subprocess.Popen(
            [self.binary, "-s", serial, "shell", command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            bufsize=1,
        )

    def push(self, serial: str, local: Path, remote: str, timeout: float = 600) -> None:
        """Copy a file to the phone (the sync protocol takes the path as-is: no shell, no quoting)."""
        done = self.run("-s", serial, "push", str(local), remote, timeout=timeout, check=False)
        if done.returncode != 0:
            raise DeviceError(f"pushing {local} to {serial}:{remote} failed: {_last_line(done.stderr or done.stdout)}")


def find_adb() -> Adb:
    """The adb named by the ADB environment variable, or the one on PATH; a DeviceError saying how to get one."""
    named = os.environ.get("ADB")
    if named:
        if not (Path(named).is_file() and os.access(named, os.X_OK)):
            raise DeviceError(
                f"ADB={named} is not an executable file; fix the variable or unset it to use adb from PATH"
            )
        return Adb(named)
    found = shutil.which("adb")
    if found is None:
        raise DeviceError(f"adb was not found on PATH; {INSTALL_HINT}")
    return Adb(found)


def parse_devices(text: str) -> list[DeviceEntry]:
    """Entries of `adb devices -l` output (states may hold a space: 'no permissions')."""
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("List of devices", "*")):
            continue
        serial, _, rest = line.partition("\t") if "\t" in line else line.partition(" ")
        rest = rest.strip()
        state = next(
            (
                s
                for s in (
                    "no permissions",
                    "unauthorized",
                    "offline",
                    "device",
                    "recovery",
                    "sideload",
                    "bootloader",
                    "authorizing",
                    "connecting",
                    "host",
                    "rescue",
                )
                if rest.startswith(s)
            ),
            rest.split(" ")[0] if rest else "unknown",
        )
        details = dict(kv.split(":", 1) for kv in rest[len(state) :].split() if ":" in kv)
        entries.append(DeviceEntry(serial.strip(), state, details))
    return entries


def gone(stderr: str) -> bool:
    """Whether adb's stderr says the device disappeared (not that the command failed)."""
    return bool(_GONE.search(stderr or ""))


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "no output"
