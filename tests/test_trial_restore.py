"""A trial restored from a Tune snapshot that names a deleted checkpoint continues from its newest one.

These tests drive Tune's own trainable class (built by ``wrap_function`` from kdtune's trial function, with the
mixin Tune reads from ``run_trial.__mixins__``) and Tune's own restore, so a Ray upgrade that changes either
fails here rather than in a resumed study.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.fs
import pytest

from kdtune.study.trial import newest_checkpoint


@pytest.fixture
def trial(ray_local: None, short_tmp: Path) -> Iterator[tuple[Any, Path]]:
    """Tune's trainable for kdtune's trial function, and its trial folder (nothing in it yet)."""
    from ray import tune
    from ray.train._internal.storage import StorageContext
    from ray.tune.trainable.function_trainable import wrap_function

    from kdtune.study.trial import run_trial

    cls = wrap_function(tune.with_parameters(run_trial, payloads={}, study={}))
    storage = StorageContext(storage_path=str(short_tmp), experiment_dir_name="kdtune", trial_dir_name="t1")
    trainable = cls(config={}, storage=storage)
    yield trainable, short_tmp / "kdtune" / "t1"
    trainable.stop()  # ends its Train session: one per process


def _restore(trainable: Any, path: Path) -> Any:
    """Restore as Tune's controller does, and return the checkpoint the trial function would be given."""
    from ray import tune
    from ray.train._internal.session import _TrainingResult
    from ray.train._internal.session import get_session

    trainable.restore(_TrainingResult(checkpoint=tune.Checkpoint(str(path)), metrics={"training_iteration": 2}))
    return get_session().loaded_checkpoint


def _checkpoint(trial_dir: Path, index: int) -> Path:
    path = trial_dir / f"checkpoint_{index:06d}"
    path.mkdir(parents=True)
    (path / "students.pt").write_bytes(b"state")
    return path


def test_missing_checkpoint_restores_the_newest_beside_it(trial: tuple[Any, Path]) -> None:
    trainable, trial_dir = trial
    newest = _checkpoint(trial_dir, 10)
    _checkpoint(trial_dir, 9)
    loaded = _restore(trainable, trial_dir / "checkpoint_000002")
    assert loaded.path == str(newest)
    # An empty stand-in where the named one was, so that Tune's bookkeeping can delete it later.
    assert (trial_dir / "checkpoint_000002").is_dir() and not any((trial_dir / "checkpoint_000002").iterdir())


def test_existing_checkpoint_is_restored_as_named(trial: tuple[Any, Path]) -> None:
    trainable, trial_dir = trial
    named = _checkpoint(trial_dir, 2)
    _checkpoint(trial_dir, 3)  # possibly torn by the crash: the named one is what Tune's snapshot vouches for
    assert _restore(trainable, named).path == str(named)


def test_trial_without_any_checkpoint_starts_from_epoch_0(trial: tuple[Any, Path]) -> None:
    trainable, trial_dir = trial
    assert _restore(trainable, trial_dir / "checkpoint_000004") is None


@pytest.mark.parametrize(("entries", "expected"), [
    (["checkpoint_000002/", "checkpoint_000011/", "checkpoint_000003/"], "checkpoint_000011"),
    (["checkpoint_000005", "checkpoint_x/", "params.json", "checkpoint_000001/"], "checkpoint_000001"),  # files skipped
    ([], None),
])
def test_newest_checkpoint_is_the_highest_numbered_folder(short_tmp: Path, entries: list[str], expected: str | None
                                                          ) -> None:
    for entry in entries:
        if entry.endswith("/"):
            (short_tmp / entry).mkdir()
        else:
            (short_tmp / entry).write_text("")
    found = newest_checkpoint(pyarrow.fs.LocalFileSystem(), str(short_tmp))
    assert (None if found is None else Path(found.path).name) == expected


def test_newest_checkpoint_of_a_trial_folder_that_does_not_exist_is_none(short_tmp: Path) -> None:
    assert newest_checkpoint(pyarrow.fs.LocalFileSystem(), str(short_tmp / "never-started")) is None
