"""report.md's int8 sensitivity section: measured layers with their figures, estimated ones with a dash,
and how many layers, groups and samples the figures come from."""

from __future__ import annotations

from edgepipe.pipeline.report.variants import sensitivity_lines


def _layer(name: str, estimated: float, sqnr: float | None = None, float_bytes: int | None = None) -> dict:
    """A LayerLoss.to_dict() row."""
    return {
        "name": name,
        "module": f"blocks.{name}",
        "op": "CONV_2D",
        "shape": [1, 8, 8, 16],
        "sqnr_db": sqnr,
        "layer_sqnr_db": 30.0,
        "rmse_over_scale": 0.3,
        "float_bytes": float_bytes,
        "local_sqnr_db": 30.0,
        "estimated_sqnr_db": estimated,
        "measured": sqnr is not None,
    }


def _artifact() -> dict:
    return {
        "format": "tflite",
        "variant": "int8_mixed",
        "sensitivity": [_layer("a", 24.9, 25.0, 1200), _layer("b", 31.2, 33.5, 40), _layer("c", 36.0)],
        "kept_float": ["a"],
        "mixed_choice": {
            "target_sqnr_db": 31.0,
            "max_float_layers": 1,
            "met": False,
            "steps": [
                {"float_layers": [], "sqnr_db": 22.6, "size_bytes": 1_509_808},
                {"float_layers": ["a"], "sqnr_db": 24.1, "size_bytes": 1_511_008},
            ],
            "search_samples": 16,
            "layers_quantized": 569,
            "group_measurements": 32,
            "layers_measured": 2,
        },
    }


def test_measured_layers_show_their_figures_and_the_others_their_estimate_only():
    text = "\n".join(sensitivity_lines({"export": {"artifacts": [_artifact()]}}))
    assert "| 1 | `blocks.a` | CONV_2D | 1x8x8x16 | 24.9 | 25.0 | 1,200 | yes |" in text
    assert "| 3 | `blocks.c` | CONV_2D | 1x8x8x16 | 36.0 | - | - |  |" in text
    assert "on 16 calibration samples for the 2 of 569 layers estimated worst" in text
    assert "after 32 group measurements" in text
    assert "not reached with the 1 layer(s)" in text and "1 float: 24.1 dB, 1,511,008 bytes" in text


def test_a_record_from_before_the_group_search_reads_as_every_layer_measured():
    artifact = _artifact()
    for key in ("search_samples", "layers_quantized", "group_measurements", "layers_measured"):
        del artifact["mixed_choice"][key]
    for layer in artifact["sensitivity"]:
        del layer["estimated_sqnr_db"], layer["local_sqnr_db"], layer["measured"]
    text = "\n".join(sensitivity_lines({"export": {"artifacts": [artifact]}}))
    assert "on the calibration samples for every layer" in text
    assert "| 1 | `blocks.a` | CONV_2D | 1x8x8x16 | - | 25.0 | 1,200 | yes |" in text
