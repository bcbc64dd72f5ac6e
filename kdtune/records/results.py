"""The study's results tables, written part by part so that a crash loses at most the epochs in flight.

``results.parquet/`` holds one row per (trial, seed, epoch); ``trials.parquet/`` one row per trial end (its
final state, objective, error). Both are Parquet datasets: folders of part files, each written under a
temporary name and renamed, so ``pyarrow.parquet.read_table(path)`` (or pandas, polars, duckdb) reads them
whole at any moment, also while the study runs. :func:`read_results` joins the two into what every later
step (status, recommend, report) reads: rows carry their trial's final state.

Rows are keyed by (trial_id, seed, epoch): a key already on disk is never written again, so a resumed study
that re-reports an epoch from its last checkpoint does not duplicate it.
"""

from __future__ import annotations

import array
import itertools
import os
import shutil
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from kdtune.records.folder import StudyFolder
from kdtune.records.folder import atomic_write


CONDITION_COLUMNS = ("dataset", "noise_level", "noise_type", "teacher_epochs", "teacher_select", "teacher_seed",
                     "teacher_error", "student_arch", "teacher_size", "student_size")

RESULT_SCHEMA = pa.schema([
    ("study", pa.string()),
    ("condition", pa.string()),
    ("dataset", pa.string()),
    ("noise_level", pa.float64()),
    ("noise_type", pa.string()),
    ("teacher_epochs", pa.int64()),
    ("teacher_select", pa.string()),
    ("teacher_seed", pa.int64()),
    ("teacher_error", pa.float64()),
    ("student_arch", pa.string()),
    # A condition's model sizes (names of conditions.teacher_size / student_size); null where the study sets none,
    # and in study folders written before they existed (a column a part file lacks is read as null).
    ("teacher_size", pa.string()),
    ("student_size", pa.string()),
    ("trial_id", pa.string()),
    ("phase", pa.string()),  # search | baseline | confirm
    ("alpha", pa.float64()),  # weight on the true labels; 1 = no distillation
    ("temperature", pa.float64()),
    ("lr", pa.float64()),
    ("batch_size", pa.int64()),
    ("epochs", pa.int64()),
    ("divergence", pa.string()),  # language task: forward_kl | reverse_kl | jsd (null for the other tasks)
    ("beta", pa.float64()),  # language task: JSD's beta
    ("top_k", pa.int64()),  # language task: the k a run read of a top-k target cache, searched or its condition's
    # (conditions.top_k); null: all it holds
    ("seed", pa.int64()),
    ("epoch", pa.int64()),
    ("train_loss", pa.float64()),
    ("val_loss", pa.float64()),
    ("val_accuracy", pa.float64()),
    ("test_loss", pa.float64()),
    ("test_accuracy", pa.float64()),
    ("test_macro_f1", pa.float64()),
    ("test_per_class_accuracy", pa.list_(pa.float64())),
    ("teacher_agreement", pa.float64()),
    ("correction_rate", pa.float64()),
    ("memorisation_rate", pa.float64()),
    ("test_excess_mse", pa.float64()),  # linear task: test MSE against the noise-free targets
    ("val_perplexity", pa.float64()),  # language task: exp(val_loss); val_accuracy/test_accuracy: next-token accuracy
    ("test_perplexity", pa.float64()),
    ("seconds", pa.float64()),
    ("node_id", pa.string()),
    ("attempt", pa.int64()),  # 0 for the first run of the trial, +1 per restart after a failure
    ("written_at", pa.float64()),
])

TRIAL_SCHEMA = pa.schema([
    ("trial_id", pa.string()),
    ("condition", pa.string()),
    ("phase", pa.string()),
    ("params", pa.string()),  # JSON
    ("state", pa.string()),  # COMPLETE | PRUNED | FAIL
    ("objective", pa.float64()),  # mean over seeds at each seed's best validation epoch
    ("epochs_done", pa.int64()),
    ("restarts", pa.int64()),  # times the trial was restarted from its checkpoint after a failure
    ("node_id", pa.string()),  # the Ray node of its last report
    ("error", pa.string()),
    ("ended_at", pa.float64()),
    # Seconds the trial ran in Ray actors (Tune's time_total_s: set-up, epochs, reports; attempts restored from a
    # checkpoint add to the time it recorded); minus the rows' ``seconds`` it is what Tune cost inside the trial.
    # Null in study folders written before it existed.
    ("seconds", pa.float64()),
])


class PartWriter:
    """Appends rows to a Parquet dataset folder, one part file per call, skipping keys already written."""

    def __init__(self, folder: Path, schema: pa.Schema, key: tuple[str, ...]) -> None:
        self.folder = Path(folder)
        self.schema = schema
        self.key = key
        self.folder.mkdir(parents=True, exist_ok=True)
        self._seen: set[tuple[Any, ...]] = set()
        if any(self.folder.glob("*.parquet")):
            existing = _read(self.folder, schema, columns=list(key))
            self._seen = set(zip(*(existing.column(k).to_pylist() for k in key)))

    def append(self, rows: Iterable[dict[str, Any]]) -> int:
        """Write the rows whose key is new; return how many were written."""
        fresh = []
        for row in rows:
            k = tuple(row.get(c) for c in self.key)
            if k not in self._seen:
                self._seen.add(k)
                fresh.append({name: row.get(name) for name in self.schema.names})
        if fresh:
            table = pa.Table.from_pylist(fresh, schema=self.schema)
            name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
            encoded = pa.BufferOutputStream()
            pq.write_table(table, encoded, compression="zstd")
            atomic_write(self.folder / name, encoded.getvalue().to_pybytes(), mode=None)
        return len(fresh)


def results_writer(study_dir: Path) -> PartWriter:
    return PartWriter(StudyFolder(study_dir).results, RESULT_SCHEMA, ("trial_id", "seed", "epoch"))


def trials_writer(study_dir: Path) -> PartWriter:
    # Keyed by trial and state: a trial re-run after a resume may end once more, with the same state.
    return PartWriter(StudyFolder(study_dir).trials, TRIAL_SCHEMA, ("trial_id", "state"))


def compact(study_dir: Path) -> None:
    """Rewrite each table as one part file (a study writes a part every few seconds: quickstart left 221).

    The new folder is written beside the old one and swapped in by two renames; a crash between them is
    finished by the next reader (:func:`_folder`), so no reader ever sees a row twice or a half-written file.
    """
    study = StudyFolder(study_dir)
    for table_dir, schema in ((study.results, RESULT_SCHEMA), (study.trials, TRIAL_SCHEMA)):
        folder = _folder(table_dir)
        parts = sorted(folder.glob("*.parquet"))
        if len(parts) < 2:
            continue
        table = _read(folder, schema)
        fresh, old = folder.with_name(f"{folder.name}.compact"), folder.with_name(f"{folder.name}.old")
        shutil.rmtree(fresh, ignore_errors=True)
        fresh.mkdir()
        pq.write_table(table, fresh / f"part-{time.time_ns():020d}-compact.parquet", compression="zstd")
        os.replace(folder, old)
        os.replace(fresh, folder)
        shutil.rmtree(old)


def _folder(folder: Path) -> Path:
    """A table's folder, after finishing a compaction that a crash interrupted between its two renames."""
    fresh, old = folder.with_name(f"{folder.name}.compact"), folder.with_name(f"{folder.name}.old")
    if not folder.exists() and fresh.exists() and old.exists():
        os.replace(fresh, folder)
        shutil.rmtree(old)
    return folder


def read_trials(study_dir: Path) -> pa.Table:
    """One row per ended trial (its last recorded end); empty while none has ended."""
    folder = _folder(StudyFolder(study_dir).trials)
    if not any(folder.glob("*.parquet")):
        return TRIAL_SCHEMA.empty_table()
    # In order of their ends (a trial re-run after a resume may end twice: the last end stands), sorted in Python
    # and cut out as slices: pyarrow's sort_by and take (any pyarrow.compute kernel) import pandas (see _read).
    table = _read(folder, TRIAL_SCHEMA)
    ended, ids = table.column("ended_at").to_pylist(), table.column("trial_id").to_pylist()
    order = sorted(range(table.num_rows), key=lambda i: (ended[i] is None, ended[i] or 0.0))
    last = {ids[i]: position for position, i in enumerate(order)}
    if not last:
        return TRIAL_SCHEMA.empty_table()
    return pa.concat_tables([table.slice(order[position], 1) for position in sorted(last.values())])


def read_results(study_dir: Path) -> pa.Table:
    """Every epoch row with its trial's final ``trial_state`` (RUNNING while the trial has not ended)."""
    folder = _folder(StudyFolder(study_dir).results)
    if not any(folder.glob("*.parquet")):
        return RESULT_SCHEMA.append(pa.field("trial_state", pa.string())).empty_table()
    rows = _read(folder, RESULT_SCHEMA)
    trials = read_trials(study_dir)
    state = dict(zip(trials.column("trial_id").to_pylist(), trials.column("state").to_pylist()))
    column = [state.get(t, "RUNNING") for t in rows.column("trial_id").to_pylist()]
    return rows.append_column("trial_state", _strings(column))


def _read(folder: Path, schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
    """A table's part files read whole, each on its own and conformed to ``schema`` (a column that a part written
    before it existed lacks is null), in the order they were written; a damaged part (truncated, overwritten) is
    one line naming it. ``pyarrow.parquet.read_table`` of the folder would go through ``pyarrow.dataset``, whose
    import loads pandas: a third of a second of every ``kdtune status`` and ``recommend`` (so does any
    ``pyarrow.compute`` kernel: a column is cast only when its type differs)."""
    from kdtune.errors import StudyError

    target = pa.schema([schema.field(name) for name in columns]) if columns else schema
    tables = []
    for part in sorted(folder.glob("*.parquet")):
        try:
            tables.append(_conform(pq.ParquetFile(part).read(), target))
        except (pa.ArrowException, OSError) as exc:
            raise StudyError(f"{part}: a damaged part of the study's results ({' '.join(str(exc).split())[:200]}); "
                             "move it out of the folder to read the rest (its rows are lost)") from None
    return pa.concat_tables(tables) if tables else target.empty_table()


def _strings(values: list[str]) -> pa.Array:
    """``values`` as an Arrow string array, built from its offsets and bytes: ``pyarrow.array`` of a list asks
    whether it is a pandas object, which imports pandas (see :func:`_read`)."""
    encoded = [v.encode() for v in values]
    offsets = array.array("i", [0, *itertools.accumulate(len(e) for e in encoded)])
    return pa.Array.from_buffers(pa.string(), len(values), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns, in its order and types (missing ones null)."""
    columns = [table.column(f.name) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
               for f in schema]
    return pa.Table.from_arrays([c if c.type == f.type else c.cast(f.type) for c, f in zip(columns, schema)],
                                schema=schema)
