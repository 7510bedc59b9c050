"""Device facts from a probe, taskset masks from big.LITTLE clusters, and adb's device list."""

from __future__ import annotations

import pytest

from edgepipe.android_bench.adb import parse_devices
from edgepipe.android_bench.facts import cpu_mask, parse_facts
from edgepipe.android_bench.rails import parse_rails
from edgepipe.models.shared.errors import ConfigError

PROBE = {
    "prop.model": "SM-S918B",
    "prop.manufacturer": "samsung",
    "prop.android_version": "13",
    "prop.api_level": "33",
    "prop.abi": "arm64-v8a",
    "prop.board_platform": "kalama",
    "prop.soc_model": "",
    **{f"cpu.{c}.max_khz": str(k) for c, k in enumerate([2016000] * 3 + [2803200] * 4 + [3360000])},
    **{f"cpu.{c}.governor": "walt" for c in range(8)},
    "cpu.7.cap_khz": "2000000",
    "cpu.7.cur_khz": "1996800",
    "battery.ac powered": "false",
    "battery.usb powered": "true",
    "battery.status": "2",
    "battery.level": "64",
    "battery.temperature": "312",
    "battery.voltage": "4120",
    "zone.cpu-1-0": "48200",
    "zone.battery": "31",
    "zone.broken": "n/a",
    "thermal_status": "1",
    "uptime": "5120.33",
}


def test_facts_read_every_part_of_the_probe():
    facts = parse_facts("R5CW", PROBE)
    d = facts.to_dict()
    assert (d["model"], d["manufacturer"], d["api_level"], d["soc"]) == ("SM-S918B", "samsung", 33, "kalama")
    assert [(list(c["cpus"]), c["max_mhz"]) for c in d["clusters"]] == [
        ([0, 1, 2], 2016.0),
        ([3, 4, 5, 6], 2803.2),
        ([7], 3360.0),
    ]
    assert d["battery"]["status"] == "charging" and d["battery"]["powered_by"] == ("USB",)
    assert d["battery"]["charging"] is True and d["battery"]["temperature_c"] == pytest.approx(31.2)
    assert d["temperatures_c"] == {"cpu-1-0": 48.2, "battery": 31.0} and d["thermal_status"] == 1
    assert facts.thermal.cap_khz == {7: 2000000}


@pytest.mark.parametrize("which, mask", [("little", "7"), ("big", "f8"), ("all", "ff"), ("0x80", "80"), ("C0", "c0")])
def test_cpu_masks_follow_the_clusters(which, mask):
    assert cpu_mask(parse_facts("R5CW", PROBE), which) == mask


@pytest.mark.parametrize("which", ["zz", "0", "100"])
def test_bad_cpu_masks_are_refused(which):
    with pytest.raises(ConfigError, match="--cpus"):
        cpu_mask(parse_facts("R5CW", PROBE), which)


def test_adb_device_list_with_every_state():
    text = (
        "List of devices attached\n"
        "* daemon started successfully\n"
        "R5CW10ABCD             device usb:1-1 product:dm3qxxx model:SM_S918B device:dm3q transport_id:3\n"
        "127.0.0.1:5555         unauthorized transport_id:4\n"
        "0123456789ABCDEF       no permissions (missing udev rules? user is in the plugdev group); see [http://developer.android.com/tools/device.html] usb:1-2 transport_id:5\n"  # noqa: E501 (one real line)
        "emulator-5554\toffline\n\n"
    )
    entries = parse_devices(text)
    assert [(e.serial, e.state) for e in entries] == [
        ("R5CW10ABCD", "device"),
        ("127.0.0.1:5555", "unauthorized"),
        ("0123456789ABCDEF", "no permissions"),
        ("emulator-5554", "offline"),
    ]
    assert entries[0].details["model"] == "SM_S918B" and entries[0].hint is None
    assert "udev" in entries[2].hint and "adb reconnect" in entries[3].hint


def test_power_stats_energy_meter_rows():
    text = (
        "\n============= PowerStats HAL 2.0 energy consumers ==============\n  CPU_BIG   1.00 mWs\n"
        "============= PowerStats HAL 2.0 energy meter ==============\n"
        "                           Channel    Cumulative Energy\n"
        "     [S4M_VDD_CPUCL0]:CPU(LITTLE)        123456.78 mWs\n"
        "       [VSYS_PWR_DISPLAY]:Display          9000.00 mWs\n"
        "========== End of PowerStats HAL 2.0 energy meter ==========\n"
    )
    assert parse_rails(text) == {"[S4M_VDD_CPUCL0]:CPU(LITTLE)": 123456.78, "[VSYS_PWR_DISPLAY]:Display": 9000.0}
    assert parse_rails("Can't find service: android.hardware.power.stats.IPowerStats/default") == {}
