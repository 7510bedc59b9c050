"""What a phone is and what state it is in, read in one shell round trip.

One probe script prints `key=value` lines (properties, every CPU's clocks and governor, the battery
service's state, thermal zones and status); `parse_probe` turns them into `DeviceFacts`, and the
same probe, taken before and after a run, gives the thermal and clock record of that run.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from edgepipe.android_bench.adb import Adb
from edgepipe.models.shared.errors import ConfigError

PROPS = {
    "model": "ro.product.model",
    "manufacturer": "ro.product.manufacturer",
    "device": "ro.product.device",
    "android_version": "ro.build.version.release",
    "api_level": "ro.build.version.sdk",
    "abi": "ro.product.cpu.abi",
    "soc_manufacturer": "ro.soc.manufacturer",
    "soc_model": "ro.soc.model",
    "board_platform": "ro.board.platform",
    "hardware": "ro.hardware",
}

# Fixed paths only: nothing from a user reaches this script.
PROBE = "; ".join(
    [
        *(f'echo "prop.{key}=$(getprop {prop})"' for key, prop in PROPS.items()),
        "for c in /sys/devices/system/cpu/cpu[0-9]*; do n=${c##*cpu}; f=$c/cpufreq; "
        'echo "cpu.$n.max_khz=$(cat $f/cpuinfo_max_freq 2>/dev/null)"; '
        'echo "cpu.$n.cur_khz=$(cat $f/scaling_cur_freq 2>/dev/null)"; '
        'echo "cpu.$n.cap_khz=$(cat $f/scaling_max_freq 2>/dev/null)"; '
        'echo "cpu.$n.governor=$(cat $f/scaling_governor 2>/dev/null)"; done',
        'dumpsys battery 2>/dev/null | while IFS= read -r l; do echo "battery.$l"; done',
        "for z in /sys/class/thermal/thermal_zone*; do [ -e $z/temp ] && "
        'echo "zone.$(cat $z/type 2>/dev/null)=$(cat $z/temp 2>/dev/null)"; done',
        'echo "thermal_status=$(dumpsys thermalservice 2>/dev/null | grep -m1 "Thermal Status" | sed "s/.*: *//")"',
        'read up _ < /proc/uptime; echo "uptime=$up"',
    ]
)

BATTERY_STATUS = {1: "unknown", 2: "charging", 3: "discharging", 4: "not charging", 5: "full"}


@dataclass(frozen=True)
class Cluster:
    """CPUs sharing one maximum frequency (a big.LITTLE cluster)."""

    cpus: tuple[int, ...]
    max_mhz: float


@dataclass(frozen=True)
class Battery:
    """The battery service's view: level, status, temperature, and what powers the phone."""

    level: int | None
    status: str
    temperature_c: float | None
    voltage_mv: int | None
    powered_by: tuple[str, ...]  # "AC", "USB", "Wireless", "Dock"

    @property
    def external_power(self) -> bool:
        """A charger feeds the phone, so the battery current is not what the phone draws."""
        return bool(self.powered_by) or self.status == "charging"


@dataclass(frozen=True)
class Thermal:
    """Temperatures, thermal status and clocks at one moment."""

    uptime_s: float
    status: int | None  # 0 none, 1 light, 2 moderate, 3 severe, ... (PowerManager.THERMAL_STATUS_*)
    zones_c: dict[str, float]
    cur_khz: dict[int, int]
    cap_khz: dict[int, int]

    @property
    def hottest_c(self) -> float | None:
        """The highest zone temperature, or None when the phone shows none."""
        return max(self.zones_c.values()) if self.zones_c else None


@dataclass(frozen=True)
class DeviceFacts:
    """One phone: identity, CPUs, governor, battery and thermal state."""

    serial: str
    props: dict[str, str]
    cpus_max_khz: dict[int, int]
    governors: dict[int, str]
    battery: Battery
    thermal: Thermal
    clusters: tuple[Cluster, ...] = field(default=())

    def to_dict(self) -> dict:
        """JSON-ready facts, as `edgepipe devices --json` and profile results carry them."""
        soc = " ".join(v for v in (self.props.get("soc_manufacturer"), self.props.get("soc_model")) if v)
        return {
            "kind": "android",
            "serial": self.serial,
            "state": "device",
            "model": self.props.get("model"),
            "manufacturer": self.props.get("manufacturer"),
            "device": self.props.get("device"),
            "android_version": self.props.get("android_version"),
            "api_level": int(self.props["api_level"]) if self.props.get("api_level", "").isdigit() else None,
            "abi": self.props.get("abi"),
            "soc": soc or self.props.get("board_platform") or self.props.get("hardware") or None,
            "hardware": self.props.get("hardware"),
            "cpu_cores": len(self.cpus_max_khz),
            "clusters": [asdict(c) for c in self.clusters],
            "governors": sorted(set(self.governors.values())),
            "battery": {**asdict(self.battery), "charging": self.battery.external_power},
            "thermal_status": self.thermal.status,
            "temperatures_c": self.thermal.zones_c,
        }


def probe(adb: Adb, serial: str, timeout: float = 60) -> dict[str, str]:
    """The probe script's key=value lines from one phone."""
    out = adb.shell(serial, PROBE, timeout=timeout).stdout
    pairs = {}
    for line in out.splitlines():
        if line.startswith("battery."):  # 'battery.  level: 87'
            k, _, v = line[len("battery.") :].partition(":")
            pairs["battery." + k.strip().lower()] = v.strip()
            continue
        key, sep, value = line.partition("=")
        if sep:
            pairs[key.strip()] = value.strip()
    return pairs


def device_facts(adb: Adb, serial: str) -> DeviceFacts:
    """Probe one phone and read its facts."""
    return parse_facts(serial, probe(adb, serial))


def parse_facts(serial: str, pairs: dict[str, str]) -> DeviceFacts:
    """Facts from a probe's key=value pairs."""
    props = {k[len("prop.") :]: v for k, v in pairs.items() if k.startswith("prop.") and v}
    max_khz = _per_cpu(pairs, "max_khz", int)
    return DeviceFacts(
        serial,
        props,
        max_khz,
        _per_cpu(pairs, "governor", str),
        parse_battery(pairs),
        parse_thermal(pairs),
        clusters(max_khz),
    )


def parse_thermal(pairs: dict[str, str]) -> Thermal:
    """The thermal and clock part of a probe."""
    zones = {}
    for key, value in pairs.items():
        if key.startswith("zone.") and re.fullmatch(r"-?\d+", value):
            milli = int(value)  # most kernels report millidegrees, a few plain degrees
            zones[key[len("zone.") :]] = milli / 1000 if abs(milli) > 500 else float(milli)
    status = pairs.get("thermal_status", "")
    return Thermal(
        float(pairs.get("uptime", "0") or 0),
        int(status) if status.isdigit() else None,
        zones,
        _per_cpu(pairs, "cur_khz", int),
        _per_cpu(pairs, "cap_khz", int),
    )


def parse_battery(pairs: dict[str, str]) -> Battery:
    """The `dumpsys battery` part of a probe."""

    def num(key: str) -> int | None:
        value = pairs.get(f"battery.{key}", "")
        return int(value) if re.fullmatch(r"-?\d+", value) else None

    powered = tuple(
        kind for kind in ("AC", "USB", "Wireless", "Dock") if pairs.get(f"battery.{kind.lower()} powered") == "true"
    )
    temp = num("temperature")  # tenths of a degree
    return Battery(
        num("level"),
        BATTERY_STATUS.get(num("status") or 1, "unknown"),
        temp / 10 if temp is not None else None,
        num("voltage"),
        powered,
    )


def clusters(max_khz: dict[int, int]) -> tuple[Cluster, ...]:
    """CPUs grouped by maximum frequency, slowest cluster first."""
    groups: dict[int, list[int]] = {}
    for cpu, khz in sorted(max_khz.items()):
        groups.setdefault(khz, []).append(cpu)
    return tuple(Cluster(tuple(cpus), khz / 1000) for khz, cpus in sorted(groups.items()))


def cpu_mask(facts: DeviceFacts, which: str) -> str:
    """A taskset hex mask for 'big', 'little', 'all' or a hex mask of the phone's CPUs."""
    groups = facts.clusters
    if which in ("big", "little", "all") and not groups:
        raise ConfigError(
            f"--cpus {which}: {facts.serial} does not show its CPU frequencies, so clusters are "
            "unknown; pass a hex mask such as f0"
        )
    if which == "all":
        cpus = [c for g in groups for c in g.cpus]
    elif which == "little":
        cpus = list(groups[0].cpus)
    elif which == "big":  # everything faster than the LITTLE cluster; one cluster means no big.LITTLE split
        cpus = [c for g in (groups[1:] or groups) for c in g.cpus]
    else:
        text = which.lower().removeprefix("0x")
        if not re.fullmatch(r"[0-9a-f]+", text) or int(text, 16) == 0:
            raise ConfigError(f"--cpus {which!r}: expected big, little, all or a non-zero hex mask such as f0")
        known = set(facts.cpus_max_khz) or set(range(64))
        wanted = {bit for bit in range(64) if int(text, 16) >> bit & 1}
        if not wanted <= known:
            raise ConfigError(f"--cpus {which}: {facts.serial} has CPUs {sorted(known)}, not {sorted(wanted - known)}")
        cpus = sorted(wanted)
    return format(sum(1 << c for c in cpus), "x")


def _per_cpu(pairs: dict[str, str], field_name: str, kind):
    found = {}
    for key, value in pairs.items():
        m = re.fullmatch(rf"cpu\.(\d+)\.{field_name}", key)
        if m and value:
            try:
                found[int(m.group(1))] = kind(value)
            except ValueError:
                continue
    return found
