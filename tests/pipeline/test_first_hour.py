"""What a new user meets first: docs that match the CLI, answers without heavy imports, readable tables and plots."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from edgepipe.pipeline.core.config import JobConfig, default_job_text
from edgepipe.pipeline.core.console import keyed_table
from edgepipe.pipeline.report.plots import Point, tradeoff_figure

ROOT = Path(__file__).parents[2]


def _cli_options() -> dict[str, list[set[str]]]:
    """Each command's options, as the set of names (aliases) of each option."""
    import typer

    from edgepipe.pipeline.cli import app

    group = typer.main.get_command(app)
    return {
        name: [{o for o in (*p.opts, *p.secondary_opts) if o.startswith("-")} for p in command.params]
        for name, command in group.commands.items()
    }


def test_readme_command_table_names_every_option_of_every_command():
    rows = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `edgepipe ")]
    documented: dict[str, set[str]] = {}
    for row in rows:
        usage = row.split("`")[1]
        documented.setdefault(usage.split()[1], set()).update(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", usage))
    commands = _cli_options()
    assert set(documented) == set(commands)
    for command, options in commands.items():
        named = [names for names in options if names]
        assert all(names & documented[command] for names in named), (command, named)
        assert documented[command] <= set().union(*named), command


def test_print_config_shows_every_job_key():
    seen: dict[str, set[str]] = {}
    section = None
    for line in default_job_text().splitlines():
        header = re.match(r"^\[\[?([\w.]+)\]?\]", line)
        if header:
            section = header.group(1)
            parent, _, child = section.partition(".")
            if child:
                seen.setdefault(parent, set()).add(child)
            continue
        key = re.match(r"^#?\s*(\w+)\s*=", line)
        if key and section:
            seen.setdefault(section, set()).add(key.group(1))
    for name, field in JobConfig.model_fields.items():
        annotation = field.annotation
        model = next(
            (a for a in (annotation, *getattr(annotation, "__args__", ())) if hasattr(a, "model_fields")), None
        )
        assert set(model.model_fields) <= seen.get(field.alias or name, set()), name


def test_models_and_a_mistyped_model_answer_without_importing_torch():
    probe = (
        "import sys; from pipeline.cli import entry; sys.argv = ['edgepipe', *sys.argv[1:]]\n"
        "try:\n    entry()\nexcept SystemExit:\n    pass\n"
        "print('torch imported' if 'torch' in sys.modules else 'torch not imported', file=sys.stderr)"
    )
    for args in (["models"], ["export", "cnn_digit"]):
        done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, cwd=ROOT)
        assert "torch not imported" in done.stderr, (args, done.stderr)


def test_key_columns_never_truncate_at_80_columns():
    keys = [f"runs/model-{i}/model_int8_float_io_variant_{i}.tflite" for i in range(3)]
    table = keyed_table(
        ("artifact", "p50 ms", "p90 ms", "p99 ms", "throughput", "energy"), [(k, *"12345") for k in keys]
    )
    console = Console(width=80, record=True, file=open("/dev/null", "w"))
    console.print(table)
    text = console.export_text()
    assert all(k in text for k in keys)


def test_tradeoff_plot_labels_never_overlap_and_ties_are_said():
    points = [
        Point("torch:fp32", 72733, 0.9778),
        Point("onnx:fp32", 42000, 0.9778),
        Point("tflite:fp32", 42240, 0.9778),
        Point("tflite:fp16", 23580, 0.9778),
        Point("tflite:int8", 15072, 0.9778),
        Point("tflite:dynamic", 15500, 0.9778),
    ]
    figure = tradeoff_figure(points, "file size (bytes)", "accuracy", "size vs metric")
    renderer = figure.canvas.get_renderer()
    texts = figure.axes[0].texts
    labels = [t for t in texts if t.get_text() in {p.label for p in points}]
    assert len(labels) == len(points)
    boxes = [t.get_window_extent(renderer) for t in labels]
    assert not [(a, b) for a, b in itertools.combinations(range(len(boxes)), 2) if boxes[a].overlaps(boxes[b])]
    assert any("tie" in t.get_text() for t in texts)
