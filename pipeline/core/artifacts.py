"""How the pipeline names an artifact record of the export stage."""

from __future__ import annotations


def artifact_key(record: dict) -> str:
    """'format:variant' (tflite:int8, onnx:fp32): the name under which the ledger, the profile, the
    reports and the gate refer to one artifact."""
    return f"{record['format']}:{record['variant']}"
