"""A fake Android phone behind the adb transport: a sandbox file system, a real /bin/sh, and a battery.

Device paths (/data, /sys, /system, ...) map into a sandbox directory: command lines are rewritten
before `/bin/sh -c` runs them, so quoting is parsed by a real shell. `getprop`, `setprop`,
`dumpsys` and `taskset` are small programs in the sandbox's PATH reading the phone's state files.
A gauge thread plays the fuel gauge: it writes `current_now`/`voltage_now` at `gauge_hz` from the
scripted idle current plus the scripted load current while the stand-in benchmark_model is in
its measured phase, and accumulates rail energy for the Power Stats HAL's dump.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

FAKES = Path(__file__).resolve().parent
DEVICE_ROOTS = ("data", "sys", "system", "vendor", "sdcard", "storage")
_DEVICE_PATH = re.compile(r"(?<![\w.~/-])/(%s)(?=/|\b)" % "|".join(DEVICE_ROOTS))


@dataclass(frozen=True)
class PhoneSpec:
    """What the fake phone is and how its battery behaves."""

    props: dict = field(
        default_factory=lambda: {
            "ro.product.model": "Pixel 7",
            "ro.product.manufacturer": "Google",
            "ro.product.device": "panther",
            "ro.product.name": "panther",
            "ro.build.version.release": "14",
            "ro.build.version.sdk": "34",
            "ro.product.cpu.abi": "arm64-v8a",
            "ro.soc.manufacturer": "Google",
            "ro.soc.model": "GS201",
            "ro.board.platform": "gs201",
            "ro.hardware": "panther",
        }
    )
    clusters_khz: tuple = ((4, 1_803_000), (2, 2_348_000), (2, 2_850_000))
    governor: str = "schedutil"
    idle_ma: float = 150.0
    load_ma: float = 400.0  # added while the benchmark's measured phase runs
    voltage_v: float = 3.9
    current_unit: str = "uA"  # or "mA"
    discharge_negative: bool = False  # the vendor's sign convention
    gauge_hz: float = 25.0
    noise_ma: float = 1.5  # alternating ripple, so every gauge update shows as a change
    charging: bool = False  # a USB charger feeds the phone
    charge_ma: float = 1500.0
    suspend: str | None = "dumpsys"  # which charging switch this build has: "dumpsys", "setprop" or None
    rails: bool = False  # Power Stats HAL with rail energy meters
    ambient_c: float = 31.0
    heat_c_per_s: float = 0.4  # while loaded; cools back towards ambient at the same rate
    disconnect_after_s: float | None = None  # pull the cable this long after a benchmark session starts


class FakePhone:
    """The handler a FakeAdbDevice serves: spawn, stat, read, write and list in the sandbox."""

    def __init__(self, root: Path, spec: PhoneSpec = PhoneSpec()):
        self.root, self.spec = Path(root), spec
        self.state = self.root / ".fake"
        self.device = None  # the FakeAdbDevice, set by whoever starts it (for disconnects)
        self._stop = threading.Event()
        self._build()
        self._gauge = threading.Thread(target=self._gauge_loop, daemon=True)
        self._gauge.start()

    # -- handler protocol -------------------------------------------------------------------------
    def spawn(self, command: str) -> subprocess.Popen:
        """Run a device command line with /bin/sh in the sandbox."""
        if self.spec.disconnect_after_s is not None and "@@exit" in command and self.device is not None:
            threading.Timer(self.spec.disconnect_after_s, self.device.disconnect).start()
        env = {
            "PATH": f"{self.root / 'system/bin'}:/usr/bin:/bin",
            "HOME": str(self.root / "data/local/tmp"),
            "FAKE_PHONE_STATE": str(self.state),
            "FAKE_PHONE_ROOT": str(self.root),
            "PYTHONPATH": str(FAKES.parents[1]),
        }
        return subprocess.Popen(
            ["/bin/sh", "-c", self.rewrite(command)],
            cwd=self.root,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def stat(self, path: str):
        try:
            st = self.local(path).stat()
        except OSError:
            return None
        return st.st_mode, st.st_size, int(st.st_mtime)

    def write_file(self, path: str, data: bytes, mode: int, mtime: int):
        target = self.local(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            target.chmod(mode & 0o7777)
            os.utime(target, (mtime, mtime))
        except OSError as exc:
            return f"{path}: {exc.strerror}"
        return None

    def read_file(self, path: str):
        try:
            return self.local(path).read_bytes()
        except OSError:
            return None

    def list_dir(self, path: str):
        entries = []
        for child in sorted(self.local(path).iterdir()) if self.local(path).is_dir() else []:
            st = child.stat()
            entries.append((child.name, st.st_mode, st.st_size, int(st.st_mtime)))
        return entries

    # -- sandbox ----------------------------------------------------------------------------------
    def local(self, device_path: str) -> Path:
        """Where a device path lives in the sandbox."""
        return self.root / device_path.lstrip("/")

    def rewrite(self, command: str) -> str:
        """The command line with device paths pointing into the sandbox (/proc stays the host's clock)."""
        return _DEVICE_PATH.sub(lambda m: f"{self.root}/{m.group(1)}", command)

    def truth(self) -> dict:
        """What the stand-in benchmark recorded of its last measured phase (uptime clock) and arguments."""
        return json.loads((self.state / "truth.json").read_text())

    def close(self) -> None:
        """Stop the fuel gauge."""
        self._stop.set()
        self._gauge.join(timeout=5)

    def _build(self) -> None:
        for sub in ("data/local/tmp", "system/bin", "sys/class/power_supply/battery", "sys/class/power_supply/usb"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.state.mkdir(exist_ok=True)
        (self.state / "spec.json").write_text(json.dumps(asdict(self.spec)))
        cpu = 0
        for count, khz in self.spec.clusters_khz:
            for _ in range(count):
                freq = self.root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
                freq.mkdir(parents=True)
                for name, value in (
                    ("cpuinfo_max_freq", khz),
                    ("scaling_max_freq", khz),
                    ("scaling_cur_freq", khz // 3),
                    ("scaling_governor", self.spec.governor),
                ):
                    (freq / name).write_text(f"{value}\n")
                cpu += 1
        for i, name in enumerate(("cpu-0-0-0", "battery", "skin-therm")):
            zone = self.root / f"sys/class/thermal/thermal_zone{i}"
            zone.mkdir(parents=True)
            (zone / "type").write_text(name + "\n")
        for tool in ("getprop", "setprop", "dumpsys", "taskset"):
            script = self.root / "system/bin" / tool
            script.write_text(
                f"#!{sys.executable}\nimport sys\nfrom tests.fakes.phone_tools import main\n"
                f"sys.exit(main({tool!r}, sys.argv[1:]))\n"
            )
            script.chmod(0o755)
        if self.spec.charging:
            (self.state / "plugged").write_text("USB")
        self._write_gauge(self.spec.idle_ma, False, self.spec.ambient_c, 0.0)

    def _gauge_loop(self) -> None:
        period, temp, rails_mj, tick = 1 / self.spec.gauge_hz, self.spec.ambient_c, 0.0, 0
        last = time.monotonic()
        while not self._stop.wait(period):
            now = time.monotonic()
            loaded = (self.state / "load").exists()
            draw = self.spec.idle_ma + (self.spec.load_ma if loaded else 0.0)
            rails_mj += draw * self.spec.voltage_v * (now - last)  # mA x V x s = mJ
            step = self.spec.heat_c_per_s * (now - last)
            temp = temp + step if loaded else max(self.spec.ambient_c, temp - step)
            last, tick = now, tick + 1
            self._write_gauge(draw + (self.spec.noise_ma if tick % 2 else -self.spec.noise_ma), loaded, temp, rails_mj)

    def _write_gauge(self, draw_ma: float, loaded: bool, temp_c: float, rails_mj: float) -> None:
        spec = self.spec
        charging = (self.state / "plugged").exists() and not (self.state / "suspended").exists()
        battery_ma = draw_ma - spec.charge_ma if charging else draw_ma  # positive: the battery discharges
        sign = -1 if spec.discharge_negative else 1
        current = sign * battery_ma * (1000 if spec.current_unit == "uA" else 1)
        battery = self.root / "sys/class/power_supply/battery"
        _atomic(battery / "current_now", f"{int(round(current))}\n")
        _atomic(battery / "voltage_now", f"{int(spec.voltage_v * 1e6)}\n")
        _atomic(battery / "status", "Charging\n" if charging else "Discharging\n")
        _atomic(self.root / "sys/class/power_supply/usb/online", "1\n" if (self.state / "plugged").exists() else "0\n")
        for i, offset in enumerate((0.0, -3.0, -5.0)):
            _atomic(self.root / f"sys/class/thermal/thermal_zone{i}/temp", f"{int((temp_c + offset) * 1000)}\n")
        max_khz = [khz for count, khz in spec.clusters_khz for _ in range(count)]
        for cpu, khz in enumerate(max_khz):
            _atomic(
                self.root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq",
                f"{khz if loaded else khz // 3}\n",
            )
        _atomic(
            self.state / "rails.json",
            json.dumps(
                {
                    "[S4M_VDD_CPUCL2]:CPU(BIG)": rails_mj * 0.7,
                    "[S3M_VDD_CPUCL0]:CPU(LITTLE)": rails_mj * 0.2,
                    "[VSYS_PWR_DISPLAY]:Display": rails_mj * 0.1,
                }
            ),
        )


def standin_binary(directory: Path) -> Path:
    """The 'benchmark_model' a user would pass: a launcher of the stand-in, executable on the fake phone."""
    path = Path(directory) / "benchmark_model"
    path.write_text(
        f"#!{sys.executable}\nimport runpy\n"
        f"runpy.run_path({str(FAKES / 'standin_benchmark.py')!r}, run_name='__main__')\n"
    )
    path.chmod(0o755)
    return path


def _atomic(path: Path, text: str) -> None:
    """Replace a file whole, so a concurrent reader never sees half a value."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
