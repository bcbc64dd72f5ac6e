"""The study folder's one owner: its error policy, its atomic writes and how it finds the Optuna storage."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from kdtune.errors import StudyError
from kdtune.errors import UsageError
from kdtune.records.folder import StudyFolder
from kdtune.records.folder import atomic_write


def _study(folder: Path, **meta: object) -> StudyFolder:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "study.json").write_text(json.dumps(meta))
    return StudyFolder(folder)


def test_a_wrong_path_is_the_users_mistake_and_a_broken_file_is_not(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such study folder"):
        StudyFolder(tmp_path / "nowhere").meta()
    with pytest.raises(UsageError, match=r"is not a kdtune study folder \(no study.json\)"):
        StudyFolder(tmp_path).meta()
    assert StudyFolder(tmp_path).meta(missing_ok=True) == {}
    (tmp_path / "study.json").write_text("{not json")
    with pytest.raises(StudyError, match="study.json: not valid JSON"):
        StudyFolder(tmp_path).meta()
    folder = _study(tmp_path / "s", spec={"name": 3})
    with pytest.raises(StudyError, match="the recorded spec is not valid"):
        folder.spec()


def test_teachers_read_as_empty_until_written_and_updates_keep_the_rest(tmp_path: Path) -> None:
    folder = _study(tmp_path, created_at=1.0)
    assert folder.teachers() == {}
    folder.write_teachers({"noise_level=0.1": {"cache_key": "abc"}})
    assert folder.teachers() == {"noise_level=0.1": {"cache_key": "abc"}}
    folder.update(finished_at=2.0)
    assert folder.meta() == {"created_at": 1.0, "finished_at": 2.0}
    assert stat.S_IMODE((tmp_path / "study.json").stat().st_mode) == 0o600
    assert not list(tmp_path.glob(".*.tmp"))


def test_atomic_write_sets_the_mode_it_is_given(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    tmp = tmp_path / ".x.json.tmp"
    tmp.write_text("stale")
    tmp.chmod(0o644)  # an older temporary file keeps its mode through O_CREAT unless it is set again
    atomic_write(path, "one")
    assert path.read_text() == "one" and stat.S_IMODE(path.stat().st_mode) == 0o600
    atomic_write(path, b"two", mode=None)
    assert path.read_bytes() == b"two" and not tmp.exists()


def test_storage_url_follows_a_moved_folder_and_a_redacted_password(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    moved = _study(tmp_path / "moved", storage_url=f"sqlite:///{tmp_path / 'gone' / 'optuna.db'}")
    assert moved.storage_url() == f"sqlite:///{tmp_path / 'gone' / 'optuna.db'}"  # nothing better here
    (tmp_path / "moved" / "optuna.db").write_bytes(b"")
    assert moved.storage_url() == f"sqlite:///{tmp_path / 'moved' / 'optuna.db'}"

    redacted = _study(tmp_path / "pg", storage_url="postgresql://kd:***@db/kd", storage_redacted=True)
    monkeypatch.delenv("KDTUNE_STORAGE", raising=False)
    assert redacted.storage_url() is None
    assert redacted.recorded_storage_url() == "postgresql://kd:***@db/kd"
    monkeypatch.setenv("KDTUNE_STORAGE", "postgresql://kd:secret@db/kd")
    assert redacted.storage_url() == "postgresql://kd:secret@db/kd"
