import json

import pytest

from edgepipe.models.shared.errors import OutputDirError
from edgepipe.pipeline.core.store import MANIFEST, Store, sha256_file, write_atomic


def test_commit_moves_files_and_records_sha(tmp_path):
    store = Store.open(tmp_path / "run")
    staging = store.staging_dir("s")
    (staging / "logs").mkdir()
    (staging / "a.bin").write_bytes(b"abc")
    (staging / "logs" / "x.log").write_text("hi")
    store.commit_stage("s", staging, {"key": "k", "result": {}})
    assert not staging.exists()
    entries = {a["path"]: a for a in store.artifacts_of("s")}
    assert set(entries) == {"a.bin", "logs/x.log"}
    assert entries["a.bin"]["sha256"] == sha256_file(tmp_path / "run" / "a.bin") and entries["a.bin"]["size_bytes"] == 3
    on_disk = json.loads((tmp_path / "run" / MANIFEST).read_text())
    assert on_disk["stages"]["s"]["key"] == "k"
    assert store.verify("s")
    (tmp_path / "run" / "a.bin").write_bytes(b"abd")
    assert not store.verify("s")


def test_forget_drops_records(tmp_path):
    store = Store.open(tmp_path)
    staging = store.staging_dir("s")
    (staging / "f").write_text("1")
    store.commit_stage("s", staging, {"key": "k", "result": {}})
    store.forget("s")
    assert store.artifacts_of("s") == [] and "s" not in Store.open(tmp_path).manifest["stages"]


def test_write_atomic_leaves_no_temporary(tmp_path):
    write_atomic(tmp_path / "f.txt", "x")
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_unwritable_output_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputDirError, match="cannot write output directory .*-o DIR"):
        Store.open(blocker / "run")


def test_an_unreadable_manifest_is_said_and_trusted_in_nothing(tmp_path, caplog):
    (tmp_path / MANIFEST).write_text('{"stages": {"train": ')  # cut off mid-write by hand
    store = Store.open(tmp_path)
    assert store.manifest == {"artifacts": [], "stages": {}}
    assert "is not readable JSON" in caplog.text and "every stage runs again" in caplog.text
