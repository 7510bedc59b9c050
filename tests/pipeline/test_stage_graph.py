"""The stage graph: a stage reads only the results and the settings it declares, every setting of a job is
in the cache key of exactly the stages that declare it, and a changed setting reruns exactly its dependents
(and nothing is taken from the cache that should not be)."""

from __future__ import annotations

import re
import tomllib

import numpy as np
import pytest

from edgepipe.pipeline.core.config import Names, default_job_text, validate_job
from edgepipe.pipeline.core.context import DeclaredResults, DeclaredSettings, covers
from edgepipe.pipeline.core.runner import EXPORT, GATE, MODULE_PIPELINE, cached_run, run_job, stage_key
from edgepipe.pipeline.core.settings_key import SETTINGS, job_settings, setting, table_model
from edgepipe.pipeline.core.sources import SOURCE_SETTINGS, SourceSettings, model_source
from edgepipe.pipeline.core.store import Store

STAGES = (*MODULE_PIPELINE, GATE)


def test_reading_an_undeclared_result_raises():
    results = DeclaredResults("report", ("validate", "compress"), {"validate": {"ok": 1}, "export": {"x": 2}})
    assert results["validate"] == {"ok": 1} and dict(results) == {"validate": {"ok": 1}}
    assert results.get("compress", {}) == {}  # declared, but not run in this job
    with pytest.raises(RuntimeError, match="reads the 'export' result, which it does not declare"):
        results["export"]
    with pytest.raises(RuntimeError, match="does not declare"):
        results.get("export", {})


def _job(**changes):
    data = tomllib.loads(default_job_text())
    data["compress"]["prune"] = "none"
    data["job"].update(name="graph", model="mlp_tabular")
    data["train"].update(epochs=1, threads=1)
    data["export"]["variants"] = ["fp32"]
    data["profile"].update(
        runtimes=["onnxruntime"],
        warmup_runs=2,
        min_runs=5,
        min_seconds=0.0,
        op_profile=False,
        throughput_batches=[],
        paired_with=[],
        device="host",
    )
    data["gate"] = {"budget": [{"name": "fits", "format": "onnx", "max_size": "10 MB"}]}
    for section, values in changes.items():
        data[section].update(values)
    return validate_job(data, "test")


def test_reading_an_undeclared_setting_raises():
    job = _job()
    view = DeclaredSettings("profile", ("export.opset", "compress", "validate.inputs"), job)
    assert view.export.opset == 18 and view.compress is job.compress  # a declared section is the config's own
    assert view["validate"]["inputs"] is None  # by TOML key, as RunView.job is read
    message = (
        r"stage 'profile' reads the setting 'export.variants', which it does not declare "
        r"\(it declares export.opset, compress, validate.inputs\): add it to its Stage.settings"
    )
    with pytest.raises(RuntimeError, match=message):
        view.export.variants
    with pytest.raises(RuntimeError, match="reads the setting 'validate.rel_tolerance'"):
        view["validate"]["rel_tolerance"]
    with pytest.raises(RuntimeError, match="reads the setting 'train'"):  # a section it declares nothing of
        view.train.epochs
    with pytest.raises(RuntimeError, match="calls model_dump on the settings of export"):
        view.export.model_dump()


def test_a_derived_setting_reads_its_settings_through_the_view():
    job = _job(compress={"qat": True})
    declared = ("compress.distill", "compress.prune", "compress.qat")
    assert DeclaredSettings("export", declared, job).compress.active
    with pytest.raises(RuntimeError, match="reads the setting 'compress.qat'"):
        DeclaredSettings("export", declared[:2], job).compress.active


def test_a_key_free_setting_is_read_but_not_keyed(tmp_path):
    view = DeclaredSettings("export", EXPORT.settings + EXPORT.key_free, _job())
    assert view.export.converter_timeout_s == 3600.0 and view.validate_.inputs is None
    assert view.export.converter == "auto"
    assert _changed_keys(_job(), _job(export={"converter_timeout_s": 60.0}), tmp_path) == set()
    assert _changed_keys(_job(), _job(export={"converter": "in_process"}), tmp_path) == set()


def test_the_model_source_reads_exactly_its_declared_settings():
    job = _job()
    assert SourceSettings.of(DeclaredSettings("train", SOURCE_SETTINGS, job)) == SourceSettings.of(job)
    for missing in SOURCE_SETTINGS:
        view = DeclaredSettings("profile", tuple(s for s in SOURCE_SETTINGS if s != missing), job)
        with pytest.raises(RuntimeError) as raised:
            model_source(view)
        named = re.search("reads the setting '([a-z_.]+)'", str(raised.value))[1]
        assert covers((named,), missing)  # the setting, or the section of it the stage declares nothing of


def _changed(value):
    """A different value of a setting (the keys are computed without validating the job, so any will do)."""
    if value is None:
        return "changed"
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return f"{value}-changed"
    return (*value, "changed")


def _with(config, path: str, value):
    """A copy of a config with one setting replaced (a table the job leaves out is made from its defaults)."""
    key, _, rest = path.partition(".")
    name, field = next((n, f) for n, f in type(config).model_fields.items() if (f.alias or n) == key)
    if rest:
        table = getattr(config, name)
        if table is None:
            table = table_model(field.annotation).model_construct()
        value = _with(table, rest, value)
    return config.model_copy(update={name: value})


def _keys(job, store) -> dict[str, str]:
    settings = job_settings(job)
    return {stage.name: stage_key(stage, settings, store, {}) for stage in STAGES}


def _new_keys(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {name for name in before if before[name] != after[name]}


def _changed_keys(base, changed, tmp_path) -> set[str]:
    store = Store.open(tmp_path / "run")
    return _new_keys(_keys(base, store), _keys(changed, store))


def _dependents(path: str) -> set[str]:
    """The stages whose keys must hold a setting: those that declare it, unless they read it key-free."""
    return {s.name for s in STAGES if covers(s.settings, path) and not covers(s.key_free, path)}


def test_every_setting_is_declared_by_a_stage_that_reads_it():
    undeclared = [p for p in SETTINGS if not any(covers(s.settings + s.key_free, p) for s in STAGES)]
    assert not undeclared, f"declare these where they are read (runner.Stage.settings): {undeclared}"


@pytest.mark.parametrize("path", list(SETTINGS))
def test_a_setting_is_in_the_keys_of_exactly_the_stages_that_declare_it(path, tmp_path):
    base = _job()
    changed = _with(base, path, _changed(setting(base, path)))
    assert _changed_keys(base, changed, tmp_path) == _dependents(path)


NAMING = [p for p, info in SETTINGS.items() if any(isinstance(m, Names) for m in info.metadata)]


@pytest.mark.parametrize("path", NAMING)
def test_new_contents_under_a_settings_name_change_the_keys_of_its_stages(path, tmp_path):
    named = tmp_path / "named"
    if any(m is Names.RUN for m in SETTINGS[path].metadata):  # a baseline run, identified by its manifest
        named.mkdir()
        contents = named / "manifest.json"
    else:
        contents = named
    contents.write_text("one")
    job = _with(_job(), path, str(named))
    store = Store.open(tmp_path / "run")
    before = _keys(job, store)
    contents.write_text("two")
    assert _new_keys(before, _keys(job, store)) == _dependents(path)


def test_a_factorys_module_is_in_the_keys_of_the_stages_that_build_it(tmp_path, monkeypatch):
    module = tmp_path / "graph_factory.py"
    module.write_text("def build():\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    job = _job(job={"model": "graph_factory:build"})
    store = Store.open(tmp_path / "run")
    before = _keys(job, store)
    module.write_text("def build():\n    return 1\n")
    assert _new_keys(before, _keys(job, store)) == _dependents("job.model")


def test_a_job_whose_key_cannot_be_computed_is_not_taken_from_the_cache(tmp_path):
    Store.open(tmp_path).save()  # a run directory with a manifest: its keys are computed
    gone = _job(job={"model": "graph_module_that_is_gone:build"})  # running it says the import failed
    assert cached_run(gone, tmp_path) is None


@pytest.mark.slow
def test_a_changed_setting_reruns_exactly_its_dependents(tmp_path):
    run_dir = tmp_path / "run"
    first = run_job(_job(), run_dir)
    assert set(first.stages) == {s.name for s in STAGES}
    assert not any(r["cached"] for r in first.stages.values())
    again = run_job(_job(), run_dir)
    assert all(r["cached"] for r in again.stages.values()), again.stages  # nothing changed: all from the cache
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, features=np.random.default_rng(0).standard_normal((8, 30)).astype(np.float32))
    everything_after = {"report", "gate"}  # they read every stage's files, and profile.json never repeats
    # One change at a time, each on top of the last: the setting, and the stages that must run again (those
    # that declare it, and those reading files that their rerun changed); every other stage is cached.
    changes = [
        ("train", "epochs", 2, {"train", "compress", "export", "validate", "profile"} | everything_after),
        ("export", "variants", ["fp32", "fp16"], {"export", "validate", "profile"} | everything_after),
        ("validate", "rel_tolerance", 2e-4, {"validate"} | everything_after),
        # profile times every file on one held-out sample: where that sample comes from is its setting too
        ("validate", "inputs", str(inputs), {"validate", "profile"} | everything_after),
        ("profile", "min_runs", 6, {"profile"} | everything_after),
        ("job", "name", "graph2", everything_after),  # both show it
        ("compress", "temperature", 2.0, {"compress"}),  # compresses nothing in this job: no file changes
        ("export", "converter_timeout_s", 600.0, set()),  # how long a conversion may take changes no file
        ("gate", "strict", True, {"gate"}),
    ]
    job_changes: dict[str, dict] = {}
    for section, key, value, dependents in changes:
        job_changes.setdefault(section, {})[key] = value
        ran = {name for name, record in run_job(_job(**job_changes), run_dir).stages.items() if not record["cached"]}
        assert ran == dependents, (section, key, ran)
        assert _dependents(f"{section}.{key}") <= ran
