"""A language condition's inputs, built once and kept under the cache root: token blocks, the teacher, its targets.

Everything is content-addressed under ``<cache root>/lm/`` (the teacher-logit cache's root, ``KDTUNE_CACHE_DIR``):

* ``blocks/<key>/{train,val,test}.parquet``: the corpus split by document and cut into blocks
  (:mod:`kdtune.tasks.language.blocks`), and ``blocks.json`` (what they were made of: corpus, tokenizer, context,
  split, when). The key covers the corpus's text (a sha256 over its documents, from the corpus's first pass), the
  tokenizer's fingerprint, the context, the split fractions and the data seed.
* ``teachers/<key>/``: the teacher's weights (``model.pt``) and ``teacher.json`` (its recipe, corpus, vocabulary
  and context, the sha256 of ``model.pt``, its curve, its selected epoch, its validation and test loss,
  perplexity and next-token accuracy). The key covers the blocks' fingerprint and everything that trains the
  teacher (architecture, kwargs with the condition's size merged in, epochs, lr, batch size, seed, selection,
  epoch blocks). A rerun finds it and never trains again.
* ``targets/<teacher key>-<layout>-<k>.parquet``: the teacher's targets for the training split
  (:mod:`kdtune.tasks.language.cache_codec`: dense, top-k or sampled), verified when opened and per row group
  when read.

Each entry is built under a lock file of its own (two conditions sharing a teacher train it once) into a
temporary name and renamed. An entry found is verified in full before it is used (every row group's checksum,
the teacher's weights against its record: :func:`open_blocks`, :func:`load_teacher`, :func:`open_targets`, which
``kdtune cache verify`` runs too); a damaged one is built again. The corpus is streamed from its file, never
held (:mod:`kdtune.tasks.language.corpus`). What a trial receives is the paths and a few numbers, never arrays: a
trial reads the blocks and the targets one row group at a time, so a corpus or a cache larger than memory works.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from kdtune.errors import SpecError


if TYPE_CHECKING:
    from kdtune.tasks.language.corpus import Corpus


#: Bumped when what an entry holds changes: old entries then stop matching (2: a split's documents are packed
#: in corpus order, not in the split permutation's order).
LM_CACHE_FORMAT = 2
DEFAULT_CONTEXT = 128
DEFAULT_TEST_FRACTION = 0.1
DEFAULT_TOKENIZER = "byte"
DEFAULT_TEXT_FIELD = "text"
#: The dataset names of the language task: the default corpus, and the user's text (``dataset.corpus``).
DEFAULT_DATASET = "python_docs"
TEXT_DATASET = "text"
#: What a blocks entry records about what it was made of, beside its split files.
BLOCKS_RECORD = "blocks.json"


@dataclass(frozen=True)
class TextSettings:
    """The spec's dataset section as the language task reads it, defaults filled in."""

    corpus: str | None  # None: the default corpus (python-docs)
    text_field: str
    tokenizer: str
    context: int
    val_fraction: float
    test_fraction: float
    seed: int
    epoch_blocks: int | None

    @classmethod
    def of(cls, spec: Any) -> TextSettings:
        d = spec.dataset
        return cls(corpus=d.corpus, text_field=d.text_field or DEFAULT_TEXT_FIELD,
                   tokenizer=d.tokenizer or DEFAULT_TOKENIZER, context=d.context or DEFAULT_CONTEXT,
                   val_fraction=d.val_fraction, test_fraction=d.test_fraction or DEFAULT_TEST_FRACTION, seed=d.seed,
                   epoch_blocks=d.epoch_blocks)

    def documents(self) -> Corpus:
        """The corpus, validated and counted by a first pass over it (nothing is held)."""
        from kdtune.tasks.language.corpus import load_corpus

        return load_corpus(self.corpus, text_field=self.text_field, field="dataset.corpus")

    def steps(self, batch_size: int) -> int | None:
        """Optimizer steps of an epoch when ``epoch_blocks`` caps it (None: one pass over the training blocks)."""
        return None if self.epoch_blocks is None else max(1, math.ceil(self.epoch_blocks / batch_size))


def lm_root(cache_dir: str | None) -> Path:
    """``<cache root>/lm``; the language task's entries need a local (or NFS) folder."""
    from kdtune.cache.store import default_cache_root

    root = cache_dir if cache_dir is not None else default_cache_root()
    if "://" in str(root):
        raise SpecError("--cache-dir", str(root), "the language task keeps its token blocks and targets in a local "
                        "folder (read by row group); give a local cache folder")
    return Path(root).expanduser() / "lm"


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:32]


def split_tokens(docs: Corpus, tokenizer: Any, settings: TextSettings) -> dict[str, int]:
    """Tokens of each split, end-of-document ids included, without writing anything (for the cache size): one
    pass over the corpus, tokenizing each document and keeping only the counts."""
    from kdtune.tasks.language.blocks import SPLITS
    from kdtune.tasks.language.blocks import documents_by_split

    tokens = dict.fromkeys(SPLITS, 0)
    for name, doc in documents_by_split(docs, val_fraction=settings.val_fraction, test_fraction=settings.test_fraction,
                                        seed=settings.seed):
        tokens[name] += len(tokenizer.encode(doc)) + 1
    return tokens


def blocks_key(docs: Corpus, tokenizer: Any, settings: TextSettings) -> str:
    """What the blocks are made of: the corpus's text, the tokenizer, the context, the split and its seed."""
    return _hash({"kind": "lm-blocks", "format": LM_CACHE_FORMAT, "corpus": docs.fingerprint,
                  "tokenizer": tokenizer.fingerprint, "context": settings.context, "val": settings.val_fraction,
                  "test": settings.test_fraction, "seed": settings.seed})


def cached_teacher(root: Path, spec: Any, condition: Any, docs: Corpus, tokenizer: Any,
                   settings: TextSettings) -> str | None:
    """The key of the condition's teacher when the cache holds it and its blocks, else None (nothing is written)."""
    from kdtune.errors import CacheError
    from kdtune.tasks.language.blocks import SPLITS
    from kdtune.tasks.language.blocks import BlockFile
    from kdtune.tasks.language.blocks import blocks_fingerprint

    folder = root / "blocks" / blocks_key(docs, tokenizer, settings)
    try:
        files = {name: BlockFile(folder / f"{name}.parquet") for name in SPLITS}
    except CacheError:
        return None
    key = teacher_key(spec, condition, blocks_fingerprint(files), settings)
    return key if (root / "teachers" / key / "teacher.json").is_file() else None


def prepare_blocks(docs: Corpus, tokenizer: Any, settings: TextSettings, root: Path) -> tuple[str, dict[str, Any]]:
    """The blocks of every split, from the cache (verified) or tokenized now: (key, {split: BlockFile})."""
    from kdtune.cache.lock import LocalLock
    from kdtune.cache.store import utc_now
    from kdtune.errors import CacheError
    from kdtune.tasks.language.blocks import build_splits

    key = blocks_key(docs, tokenizer, settings)
    folder = root / "blocks" / key
    with LocalLock(root / "locks" / f"blocks-{key}.lock"):
        try:
            return key, open_blocks(folder)
        except CacheError as exc:
            _warn_damage(folder, exc)
        tmp = folder.with_name(f"{key}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        build_splits(docs, tokenizer, tmp, context=settings.context, val_fraction=settings.val_fraction,
                     test_fraction=settings.test_fraction, seed=settings.seed)
        record = {"corpus": settings.corpus or DEFAULT_DATASET, "documents": len(docs), "tokenizer": tokenizer.name,
                  "context": settings.context, "val_fraction": settings.val_fraction,
                  "test_fraction": settings.test_fraction, "seed": settings.seed, "created": utc_now()}
        (tmp / BLOCKS_RECORD).write_text(json.dumps(record, indent=2) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
        return key, open_blocks(folder)


def open_blocks(folder: Path) -> dict[str, Any]:
    """The splits of a blocks entry ({split: BlockFile}), every row group checked against its footer's checksum and
    the splits against each other (context, tokenizer); :class:`CacheError` naming the file otherwise."""
    from kdtune.errors import CacheError
    from kdtune.tasks.language.blocks import SPLITS
    from kdtune.tasks.language.blocks import BlockFile

    for name in SPLITS:
        if not (folder / f"{name}.parquet").is_file():
            raise CacheError(f"{folder / name}.parquet: missing")
    files = {name: BlockFile(folder / f"{name}.parquet") for name in SPLITS}
    for name, file in files.items():
        if (file.context, file.tokenizer) != (files["train"].context, files["train"].tokenizer):
            raise CacheError(f"{file.path}: context {file.context}, tokenizer {file.tokenizer}; its train split has "
                             f"{files['train'].context}, {files['train'].tokenizer}")
        file.verify()
    return files


def teacher_recipe(spec: Any, condition: Any, settings: TextSettings) -> dict[str, Any]:
    """Everything that trains the condition's teacher: in its cache key, and recorded in its ``teacher.json``."""
    t = spec.teacher
    return {"arch": t.arch, "kwargs": condition.teacher_kwargs(spec), "epochs": condition.teacher_epochs, "lr": t.lr,
            "batch_size": t.batch_size, "seed": condition.teacher_seed, "select": condition.teacher_select,
            "epoch_blocks": settings.epoch_blocks}


def teacher_key(spec: Any, condition: Any, blocks_fingerprint: str, settings: TextSettings) -> str:
    return _recipe_key(blocks_fingerprint, teacher_recipe(spec, condition, settings), LM_CACHE_FORMAT)


def _recipe_key(blocks_fingerprint: str, recipe: dict[str, Any], version: int) -> str:
    return _hash({"kind": "lm-teacher", "format": version, "blocks": blocks_fingerprint, **recipe})


def prepare_teacher(spec: Any, condition: Any, blocks: dict[str, Any], settings: TextSettings, vocab_size: int,
                    root: Path, on_epoch: Callable[[int], None]) -> tuple[Any, dict[str, Any], bool]:
    """The condition's teacher (trained now, or loaded and checked): (model, what ``teacher.json`` holds, trained
    now)."""
    import torch

    from kdtune.cache.lock import LocalLock
    from kdtune.cache.store import utc_now
    from kdtune.errors import CacheError
    from kdtune.tasks.language.blocks import blocks_fingerprint
    from kdtune.tasks.language.models import build_lm

    blocks_fp = blocks_fingerprint(blocks)
    key = teacher_key(spec, condition, blocks_fp, settings)
    folder = root / "teachers" / key
    t = spec.teacher

    def build() -> Any:
        return build_lm(t.arch, condition.teacher_kwargs(spec), vocab_size=vocab_size, context=settings.context,
                        field=condition.model_field("teacher"), seed=condition.teacher_seed)

    model = build()
    with LocalLock(root / "locks" / f"teacher-{key}.lock"):
        try:
            return model, load_teacher(folder, model), False
        except CacheError as exc:
            _warn_damage(folder, exc)
        model = build()  # from its seed: a load that failed may have copied part of the damaged weights into it
        record = _train_teacher(model, spec, condition, blocks, settings, on_epoch)
        tmp = folder.with_name(f"{key}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save(model.state_dict(), tmp / "model.pt")
        record = {**record, "key": key, "format": LM_CACHE_FORMAT, "blocks": blocks_fp,
                  "teacher": teacher_recipe(spec, condition, settings), "corpus": settings.corpus or DEFAULT_DATASET,
                  "tokenizer": settings.tokenizer, "context": settings.context, "vocab_size": vocab_size,
                  "weights_sha256": hashlib.sha256((tmp / "model.pt").read_bytes()).hexdigest(), "created": utc_now()}
        (tmp / "teacher.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    return model, record, True


def load_teacher(folder: Path, model: Any | None = None) -> dict[str, Any]:
    """A teacher entry's ``teacher.json``, checked against its key (the recipe and blocks it records hash to it) and
    its weights against it (their sha256; without a recorded one, an entry of an earlier version, that they load),
    loaded into ``model`` (None: into the model the record describes, when it can be built here);
    :class:`CacheError` naming the file otherwise."""
    import torch

    from kdtune.errors import CacheError
    from kdtune.errors import one_line
    from kdtune.tasks.language.models import build_lm

    sidecar, weights = folder / "teacher.json", folder / "model.pt"
    for path in (sidecar, weights):
        if not path.is_file():
            raise CacheError(f"{path}: missing")
    try:
        record = json.loads(sidecar.read_text())
        if record["key"] != folder.name or not math.isfinite(record["diagnostics"]["test_loss"]):
            raise ValueError(f"key {record['key']!r}, test loss {record['diagnostics']['test_loss']}")
        if "teacher" in record and _recipe_key(record["blocks"], record["teacher"], record["format"]) != folder.name:
            raise ValueError(f"the recipe and blocks it records are not those its key {folder.name} was made of")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CacheError(f"{sidecar}: damaged ({one_line(exc)})") from None
    raw = weights.read_bytes()
    if "weights_sha256" in record and hashlib.sha256(raw).hexdigest() != record["weights_sha256"]:
        raise CacheError(f"{weights}: does not match the sha256 its teacher.json records (the file changed)")
    if model is None and "teacher" in record:
        recipe = record["teacher"]
        try:
            model = build_lm(recipe["arch"], dict(recipe["kwargs"]), vocab_size=int(record["vocab_size"]),
                             context=int(record["context"]), field="teacher.arch")
        except SpecError:  # a Hugging Face model without the optional extra: the weights are checked alone
            model = None
        except (KeyError, TypeError, ValueError) as exc:
            raise CacheError(f"{sidecar}: damaged recipe ({one_line(exc)})") from None
    try:
        state = torch.load(io.BytesIO(raw), weights_only=True)
        if not all(torch.is_tensor(v) and bool(torch.isfinite(v).all()) for v in state.values()):
            raise ValueError("its weights are not all finite")
        if model is not None:
            model.load_state_dict(state)
    except Exception as exc:  # whatever a damaged pickle raises: unpickling, EOF, size mismatch
        raise CacheError(f"{weights}: does not load as the teacher its teacher.json describes "
                         f"({type(exc).__name__}: {one_line(exc, 200)})") from None
    return dict(record)


def _warn_damage(folder: Path, exc: Exception) -> None:
    """Say that an entry found damaged is built again (a missing one is just built)."""
    from kdtune.errors import one_line

    if folder.exists():
        logging.getLogger(__name__).warning("%s; building it again", one_line(exc))


def _train_teacher(model: Any, spec: Any, condition: Any, blocks: dict[str, Any], settings: TextSettings,
                   on_epoch: Callable[[int], None]) -> dict[str, Any]:
    """Train the teacher (alpha = 1), keep its best validation-loss epoch (``best_val``) or its last (``final``),
    and measure it on the whole validation and test splits."""
    from kdtune.tasks.language.train import LMTrainConfig
    from kdtune.tasks.language.train import LMTrainer
    from kdtune.tasks.language.train import evaluate

    t = spec.teacher
    config = LMTrainConfig(alpha=1.0, lr=t.lr, batch_size=t.batch_size, steps_per_epoch=settings.steps(t.batch_size),
                           seed=condition.teacher_seed)
    trainer = LMTrainer(model, blocks["train"], blocks["val"], None, config)
    curve: list[dict[str, float]] = []
    best, best_state, selected = math.inf, None, 0
    for _ in range(condition.teacher_epochs):
        row = trainer.step()
        curve.append(row)
        on_epoch(trainer.epoch)
        if not math.isfinite(row["train_loss"]):
            raise SpecError("teacher.lr", t.lr, f"the teacher's loss is {row['train_loss']} at epoch {trainer.epoch}; "
                            "lower the learning rate")
        if condition.teacher_select == "final" or row["val_loss"] < best:
            best, best_state, selected = row["val_loss"], copy.deepcopy(model.state_dict()), trainer.epoch
    if best_state is not None:
        model.load_state_dict(best_state)
    diagnostics: dict[str, float] = {}
    for name in ("val", "test"):
        loss, accuracy = evaluate(model, blocks[name])
        diagnostics.update({f"{name}_loss": loss, f"{name}_perplexity": math.exp(min(loss, 700.0)),
                            f"{name}_accuracy": accuracy})
    return {"selected_epoch": selected, "curve": curve, "diagnostics": diagnostics}


def prepare_targets(model: Any, teacher_key: str, blocks: dict[str, Any], fmt: Any, seed: int,
                    root: Path) -> tuple[Any, bool]:
    """The teacher's targets for the training split in ``fmt`` (from the cache, or computed now): (file, hit).

    Cached targets are used only when they came from this teacher's weights (the sha256 its ``teacher.json``
    records), so a teacher trained again after its entry was pruned or damaged never meets its predecessor's."""
    from kdtune.cache.lock import LocalLock
    from kdtune.cache.store import utc_now
    from kdtune.errors import CacheError
    from kdtune.tasks.language.train import compute_targets

    path = root / "targets" / f"{teacher_key}-{fmt.layout}-{fmt.k or 'all'}.parquet"
    weights = json.loads((root / "teachers" / teacher_key / "teacher.json").read_text()).get("weights_sha256")
    with LocalLock(root / "locks" / f"targets-{path.stem}.lock"):
        if path.is_file():
            try:
                found = open_targets(path)
                if (found.meta.get("blocks"), found.meta.get("teacher_weights"), found.format) == \
                        (blocks["train"].fingerprint, weights, fmt):
                    return found, True
            except CacheError as exc:
                _warn_damage(path, exc)
        return compute_targets(model, blocks["train"], path, fmt, seed=seed, meta={
            "teacher": teacher_key, "teacher_weights": weights, "created": utc_now()}), False


def open_targets(path: Path) -> Any:
    """A targets entry (TargetFile), every row group verified (schema, rows, checksum, finite values, ids in
    range, block indices) and named after the teacher and format it records; :class:`CacheError` otherwise."""
    from kdtune.errors import CacheError
    from kdtune.tasks.language.cache_codec import TargetFile

    found = TargetFile(path)
    fmt = found.format
    if path.stem != f"{found.meta.get('teacher')}-{fmt.layout}-{fmt.k or 'all'}":
        raise CacheError(f"{path}: holds the {fmt.layout} targets (k {fmt.k}) of teacher {found.meta.get('teacher')}, "
                         "not what its name says")
    found.verify()
    return found
