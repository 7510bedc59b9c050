"""The fake phone's getprop, setprop, dumpsys and taskset, printing what Android's own tools print."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

STATE = Path(os.environ.get("FAKE_PHONE_STATE", "."))
ROOT = Path(os.environ.get("FAKE_PHONE_ROOT", "."))


def main(tool: str, args: list[str]) -> int:
    """Dispatch one tool invocation."""
    spec = json.loads((STATE / "spec.json").read_text())
    return {"getprop": getprop, "setprop": setprop, "dumpsys": dumpsys, "taskset": taskset}[tool](spec, args)


def _props(spec: dict) -> dict:
    extra = STATE / "props.json"
    return {**spec["props"], **(json.loads(extra.read_text()) if extra.exists() else {})}


def getprop(spec: dict, args: list[str]) -> int:
    props = _props(spec)
    if not args:
        print("\n".join(f"[{k}]: [{v}]" for k, v in sorted(props.items())))
    else:
        print(props.get(args[0], args[1] if len(args) > 1 else ""))
    return 0


def setprop(spec: dict, args: list[str]) -> int:
    if len(args) != 2:
        print("usage: setprop NAME VALUE", file=sys.stderr)
        return 1
    name, value = args
    if name == "power.battery_input.suspended":
        if spec["suspend"] != "setprop":
            print(f"Failed to set property '{name}' to '{value}'.", file=sys.stderr)
            return 1
        _flag("suspended", value == "true")
    extra = STATE / "props.json"
    props = json.loads(extra.read_text()) if extra.exists() else {}
    (STATE / "props.json").write_text(json.dumps({**props, name: value}))
    return 0


def dumpsys(spec: dict, args: list[str]) -> int:
    service, rest = (args[0], args[1:]) if args else ("", [])
    if service == "battery":
        return _battery(spec, rest)
    if service == "thermalservice":
        temps = [(f"sys/class/thermal/thermal_zone{i}", i) for i in range(3)]
        print(
            "IsStatusOverride: false\nThermalEventListeners:\n\tcallbacks: 0\nThermal Status: 0\n"
            "HAL Ready: true\nCurrent temperatures from HAL:"
        )
        for zone, _ in temps:
            name = (ROOT / zone / "type").read_text().strip()
            print(
                f"\tTemperature{{mValue={int((ROOT / zone / 'temp').read_text()) / 1000}, mType=0, "
                f"mName={name}, mStatus=0}}"
            )
        return 0
    if service == "android.hardware.power.stats.IPowerStats/default" and spec["rails"]:
        rails = json.loads((STATE / "rails.json").read_text())
        print("\n============= PowerStats HAL 2.0 energy meter ==============")
        print(f"  {'Channel':>32}   {'Cumulative Energy':>18}")
        for name, mj in rails.items():
            print(f"  {name:>32}   {mj:14.2f} mWs")
        print("========== End of PowerStats HAL 2.0 energy meter ==========")
        return 0
    print(f"Can't find service: {service}", file=sys.stderr)
    return 0


def _battery(spec: dict, rest: list[str]) -> int:
    if rest == ["suspend_input"]:
        if spec["suspend"] != "dumpsys":
            print("Unknown option: suspend_input", file=sys.stderr)
            return 255
        _flag("suspended", True)
        return 0
    if rest == ["reset"]:
        _flag("suspended", False)
        return 0
    plugged = (STATE / "plugged").exists()
    charging = plugged and not (STATE / "suspended").exists()
    volts = int((ROOT / "sys/class/power_supply/battery/voltage_now").read_text()) // 1000
    temp = int((ROOT / "sys/class/thermal/thermal_zone1/temp").read_text()) // 100
    print(
        "Current Battery Service state:\n"
        f"  AC powered: false\n  USB powered: {'true' if plugged else 'false'}\n  Wireless powered: false\n"
        f"  Max charging current: {500000 if plugged else 0}\n  Charge counter: 3512000\n"
        f"  status: {2 if charging else 3 if not plugged else 4}\n  health: 2\n  present: true\n"
        f"  level: 83\n  scale: 100\n  voltage: {volts}\n  temperature: {temp}\n  technology: Li-ion"
    )
    return 0


def taskset(spec: dict, args: list[str]) -> int:
    if len(args) < 2:
        print("usage: taskset MASK COMMAND...", file=sys.stderr)
        return 1
    with open(STATE / "taskset.log", "a") as log:
        log.write(args[0] + "\n")
    os.execvp(args[1], args[1:])
    return 127


def _flag(name: str, on: bool) -> None:
    if on:
        (STATE / name).write_text("1")
    else:
        (STATE / name).unlink(missing_ok=True)
