"""Language modelling behind the task boundary (:mod:`kdtune.tasks.base`): a corpus cut into token blocks, causal LMs
(the built-in ``transformer`` or Hugging Face ``hf:<name>`` / ``hf-config``), students trained epoch by epoch from
the teacher's cached per-token targets, validation loss minimised.

The objective is the per-token cross-entropy on the validation split in nats, **lower is better**; the test
metric is the test loss at the best validation epoch. A gain over no distillation is the no-distillation
student's test loss minus the distilled student's, in nats per token (positive: distillation helps); the
equivalence margin is in the same unit, default :data:`DEFAULT_MARGIN_NATS`. Each run also records perplexity
(exp of the loss) and next-token accuracy (``val_accuracy``, ``test_accuracy``) per epoch.

The heavy parts (:mod:`kdtune.tasks.language.prepare`, ``train``, ``models``) are imported inside the methods:
importing this module costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any

from kdtune.errors import SpecError
from kdtune.tasks.base import Objective
from kdtune.tasks.base import Task
from kdtune.tasks.base import TrainerSeeds


if TYPE_CHECKING:
    from kdtune.spec.conditions import Condition
    from kdtune.spec.schema import StudySpec
    from kdtune.tasks.base import SeedRuns


#: The default equivalence margin: 0.01 nats per token, a perplexity ratio of exp(0.01) = 1.010. Smaller
#: differences are below what anyone choosing a model acts on (1% perplexity), and well above the paired
#: seed-to-seed noise of the shipped study's students (about 0.003 nats), so "no gain" can be confirmed.
DEFAULT_MARGIN_NATS = 0.01
LOSS = Objective("val_loss", "val_loss", "min", "test_loss", label="validation loss (nats/token)",
                 test_label="test loss (nats/token)", margin_unit="nats/token of test loss", margin_scale=1.0,
                 default_margin=DEFAULT_MARGIN_NATS)
DATASETS = ("python_docs", "text")
ARCHS = "'transformer' (kwargs n_layers, d_model, n_heads, ...), 'hf:<name>' or 'hf-config' (kwargs: a transformers config)"
#: Recipe fields the language trainer does not have (constant Adam only), with their defaults.
_RECIPE_DEFAULTS = {"optimizer": "adam", "weight_decay": 0.0, "schedule": "constant", "warmup_epochs": 0}


class LanguageModelling(Task):
    name = "language"
    kind = "language modelling"
    objectives = (LOSS,)
    search_params = ("alpha", "temperature", "lr", "batch_size", "epochs", "divergence", "beta", "top_k")
    metrics = ("train_loss", "val_loss", "val_perplexity", "val_accuracy", "test_loss", "test_perplexity",
               "test_accuracy", "seconds")
    by_epochs = True
    cache_codec = "token-targets"  # per training block: dense, top-k or sampled (kdtune.tasks.language.cache_codec)
    fidelity_fields = ("epochs", "student")  # a share of the blocks: dataset.epoch_blocks already says it
    label_noise = False  # next tokens are the labels: none to flip

    def claims(self, dataset: str) -> bool:
        return dataset in DATASETS

    def check_spec(self, spec: StudySpec) -> None:
        """What a language study cannot ask: image-only options, more than one corpus, label noise, a teacher
        given as a checkpoint or logits, recipes the LM trainer has not, search values out of range."""
        d, c = spec.dataset, spec.conditions
        if spec.objective not in (None, LOSS.name):
            raise SpecError("objective", spec.objective, f"must be {LOSS.name} for the language task")
        if d.name == "text" and d.corpus is None:
            raise SpecError("dataset.corpus", None, "is required with dataset.name: text (a .txt, .jsonl or .parquet "
                            "file, or a folder of .txt files)")
        if d.name != "text" and d.corpus is not None:
            raise SpecError("dataset.corpus", d.corpus, "needs dataset.name: text (python_docs is the default corpus)")
        for field, value in (("dataset.files", d.files), ("dataset.train_size", d.train_size),
                             ("dataset.data_root", d.data_root), ("conditions.dataset", c.dataset),
                             ("conditions.teacher_error", c.teacher_error), ("teacher.checkpoint", spec.teacher.checkpoint),
                             ("teacher.logits", spec.teacher.logits), ("teacher.patience", spec.teacher.patience)):
            if value is not None:
                raise SpecError(field, value, "does not apply to the language task (remove it)")
        if c.noise_level != [0.0] or c.noise_type != ["symmetric"]:
            raise SpecError("conditions.noise_level", c.noise_level, "does not apply to the language task: text has "
                            "no labels to flip (remove it)")
        if spec.student.augmented or spec.teacher.augment.shift or spec.teacher.augment.rotate:
            section = "student" if spec.student.augmented else "teacher"
            raise SpecError(f"{section}.augment", getattr(spec, section).augment.model_dump(), "needs an image "
                            "dataset; the language task has text (remove it)")
        if spec.teacher.ensemble != 1:
            raise SpecError("teacher.ensemble", spec.teacher.ensemble, "the language task trains one teacher (use 1)")
        for section in ("teacher", "student"):
            for name, default in _RECIPE_DEFAULTS.items():
                if getattr(getattr(spec, section), name) != default:
                    raise SpecError(f"{section}.{name}", getattr(getattr(spec, section), name), f"the language task "
                                    f"trains with constant Adam; remove it (the default is {default})")
        for i, select in enumerate(c.teacher_select or [spec.teacher.select]):
            if select == "best_val_loss":
                raise SpecError(f"conditions.teacher_select[{i}]" if c.teacher_select else "teacher.select", select,
                                "allowed for the language task: best_val (its validation loss), final")
        if spec.allow_negative_alpha:
            raise SpecError("allow_negative_alpha", True, "is only for the linear regression task")
        for role, archs in (("teacher", [spec.teacher.arch]), ("student", c.student_arch or [spec.student.arch])):
            sizes, pretrained = getattr(c, f"{role}_size"), [a for a in archs if a.startswith("hf:")]
            if sizes is not None and pretrained:
                raise SpecError(f"conditions.{role}_size", sizes, f"{pretrained[0]} is a pretrained model of one size "
                                "(it reads no kwargs); sizes need 'transformer' or 'hf-config'")
        self._check_search(spec)

    def _check_search(self, spec: StudySpec) -> None:
        from kdtune.tasks.language.prepare import DEFAULT_TOKENIZER

        search = spec.search
        alpha = search["alpha"]
        low = min(alpha.choices or [0]) if alpha.type == "categorical" else alpha.low
        if isinstance(low, (int, float)) and low < 0:
            raise SpecError("search.alpha.low", low, "must be >= 0 (alpha < 0 is only for the linear regression task)")
        divergence = search.get("divergence")
        if divergence is not None:
            if divergence.type != "categorical" or not divergence.choices:
                raise SpecError("search.divergence.type", divergence.type, "must be categorical with choices among "
                                "forward_kl, reverse_kl, jsd")
            for i, choice in enumerate(divergence.choices):
                if choice not in ("forward_kl", "reverse_kl", "jsd"):
                    raise SpecError(f"search.divergence.choices[{i}]", choice, "allowed: forward_kl, reverse_kl, jsd")
        beta = search.get("beta")
        if beta is not None:
            values = beta.choices or [] if beta.type == "categorical" else [beta.low, beta.high]
            if not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in values):
                raise SpecError("search.beta", beta.model_dump(exclude_none=True), "must lie in [0, 1] (GKD's JSD "
                                "interpolation; 0 = forward KL, 1 = reverse KL)")
        cache = spec.cache
        top_k = search.get("top_k")
        _check_compared_k(spec.conditions.top_k, top_k, cache.top_k)
        if top_k is not None:
            if cache.top_k is None:
                raise SpecError("search.top_k", top_k.model_dump(exclude_none=True), "needs cache.top_k (the largest k "
                                "the cache stores; each run reads its k of them)")
            values = top_k.choices or [] if top_k.type == "categorical" else [top_k.low, top_k.high]
            if not all(isinstance(v, (int, float)) and 1 <= v <= cache.top_k for v in values):
                raise SpecError("search.top_k", top_k.model_dump(exclude_none=True), f"must lie in [1, {cache.top_k}] "
                                "(cache.top_k: the k the cache stores)")
        if cache.samples is not None:
            if cache.top_k is not None:
                raise SpecError("cache.samples", cache.samples, "cannot be combined with cache.top_k; choose one")
            temperatures = search["temperature"].choices if "temperature" in search else None
            if ("temperature" in search and temperatures != [1] and temperatures != [1.0]) \
                    or spec.default_temperature != 1:
                raise SpecError("cache.samples", cache.samples, "the sampled targets are unbiased at T = 1 only: set "
                                "default_temperature: 1 and leave temperature out of search")
            if divergence is not None and divergence.choices != ["forward_kl"]:
                raise SpecError("search.divergence", divergence.choices, "the sampled targets serve forward_kl only")
        tokenizer = spec.dataset.tokenizer or DEFAULT_TOKENIZER
        if not (tokenizer == "byte" or tokenizer.startswith("hf:") or tokenizer.endswith(".json")):
            raise SpecError("dataset.tokenizer", tokenizer, "unknown tokenizer; allowed: 'byte', 'hf:<name>' or a path "
                            "to a tokenizer.json")

    def check_arch(self, arch: str, *, field: str) -> None:
        if arch in ("transformer", "hf-config") or arch.startswith("hf:"):
            if arch != "transformer":
                from kdtune.tasks.language.models import _transformers

                _transformers(field, arch)  # the optional extra, refused in one line without it
            return
        raise SpecError(field, arch, f"unknown language model; allowed: {ARCHS}")

    def check_inputs(self, spec: StudySpec, conditions: list[Condition]) -> bool:
        """Before anything runs or is written: the tokenizer loads, the corpus is UTF-8 text with documents, every
        model builds with the tokenizer's vocabulary and the context, k fits the vocabulary, and the targets fit
        ``cache.max_bytes``."""
        from kdtune.tasks.language.prepare import TextSettings
        from kdtune.tasks.language.prepare import split_tokens

        for c in conditions:
            self.check_arch(spec.teacher.arch, field="teacher.arch")
            self.check_arch(c.student_arch, field="student.arch")
        settings = TextSettings.of(spec)
        tokenizer = _tokenizer(settings)
        docs = settings.documents()
        tokens = split_tokens(docs, tokenizer, settings)
        vocab = self._check_models(spec, conditions, settings, tokenizer.vocab_size)
        self.cache_plan(spec, tokens, vocab)
        return True

    def _check_models(self, spec: StudySpec, conditions: list[Condition], settings: Any, vocab_size: int) -> int:
        """Build each distinct model once (no training) and check its vocabulary and context against the
        tokenizer's; a model that fails is named by its field (a condition's size where one set its kwargs)."""
        from kdtune.tasks.language.models import build_lm
        from kdtune.tasks.language.models import check_vocab

        wanted: list[tuple[str, str, dict[str, Any], str]] = []  # (role, arch, kwargs, field), teachers first
        for role in ("teacher", "student"):
            for c in conditions:
                arch = spec.teacher.arch if role == "teacher" else c.student_arch
                kwargs = c.teacher_kwargs(spec) if role == "teacher" else c.student_kwargs(spec)
                if not any(w[:3] == (role, arch, kwargs) for w in wanted):
                    wanted.append((role, arch, kwargs, c.model_field(role)))
        models = [(field, build_lm(arch, kwargs, vocab_size=vocab_size, context=settings.context, field=field))
                  for _, arch, kwargs, field in wanted]
        for named in models[1:]:  # all share the first teacher's output vocabulary
            check_vocab(dict([models[0], named]), vocab_size)
        return int(getattr(models[0][1], "vocab_size"))

    def cache_plan(self, spec: StudySpec, tokens: dict[str, int], vocab_size: int) -> dict[str, Any]:
        """The targets' format and size for the training split; refused above ``cache.max_bytes``."""
        from kdtune.tasks.language.cache_codec import cache_bytes
        from kdtune.tasks.language.cache_codec import choose_format
        from kdtune.tasks.language.prepare import TextSettings

        settings = TextSettings.of(spec)
        fmt = choose_format(vocab_size, settings.context, top_k=spec.cache.top_k, samples=spec.cache.samples)
        positions = tokens["train"] // (settings.context + 1) * settings.context
        size = cache_bytes(positions, vocab_size, layout=fmt.layout, k=fmt.k)
        if size > spec.cache.max_bytes:
            raise SpecError("cache.max_bytes", spec.cache.max_bytes, f"the teacher's {fmt.layout} targets for "
                            f"{positions:,} training tokens x {vocab_size:,} ids take {size:,} bytes; raise "
                            "cache.max_bytes or set cache.top_k (e.g. 32)")
        return {"layout": fmt.layout, "k": fmt.k, "vocab_size": vocab_size, "train_tokens": positions,
                "tokens": tokens, "bytes": size, "max_bytes": spec.cache.max_bytes}

    def plan_condition(self, spec: StudySpec, condition: Condition, *, cache_dir: str | None, epochs: int,
                       batch_size: int, threads: int, teacher_threads: int) -> dict[str, Any] | None:
        """The blocks and targets a condition needs (cached or not), their size, and its cost: a few timed training
        steps of the teacher and the student on this machine, scaled to an epoch's steps, plus evaluation."""
        import time

        from kdtune.tasks.language.prepare import TextSettings
        from kdtune.tasks.language.prepare import cached_teacher
        from kdtune.tasks.language.prepare import lm_root
        from kdtune.tasks.language.prepare import split_tokens
        from kdtune.tasks.language.timing import step_seconds

        start = time.perf_counter()
        settings = TextSettings.of(spec)
        tokenizer = _tokenizer(settings)
        docs = settings.documents()
        tokens = split_tokens(docs, tokenizer, settings)
        load_s = time.perf_counter() - start
        cache = self.cache_plan(spec, tokens, tokenizer.vocab_size)
        blocks = {name: n // (settings.context + 1) for name, n in tokens.items()}
        teacher = {"source": "trained", "action": "train teacher", "teacher_key": None, "logits_key": None}
        found = cached_teacher(lm_root(cache_dir), spec, condition, docs, tokenizer, settings)
        if found is not None:
            teacher.update(teacher_key=found, action="cached")
        t = spec.teacher
        teacher_step, teacher_eval = step_seconds(t.arch, condition.teacher_kwargs(spec), tokenizer.vocab_size,
                                                  settings.context, t.batch_size, threads=teacher_threads, distil=False)
        student_step, student_eval = step_seconds(condition.student_arch, condition.student_kwargs(spec),
                                                  tokenizer.vocab_size, settings.context, batch_size, threads=threads,
                                                  distil=True)
        held_out = blocks["val"] + blocks["test"]

        def steps(size: int) -> int:
            return settings.steps(size) or max(1, math.ceil(blocks["train"] / size))

        teacher_s = 0.0
        if found is None:  # training (validation each epoch), then test, then one pass for the targets
            teacher_s = (condition.teacher_epochs * (steps(t.batch_size) * teacher_step + blocks["val"] * teacher_eval)
                         + (held_out + blocks["train"]) * teacher_eval)
        run_s = epochs * (steps(batch_size) * student_step + held_out * student_eval)
        return {"samples": blocks, "teacher": teacher, "data_load_s": load_s, "teacher_s": teacher_s, "run_s": run_s,
                "token_cache": cache, "steps": {"teacher_epoch": steps(t.batch_size), "student_epoch": steps(batch_size),
                                                "teacher_step_s": teacher_step, "student_step_s": student_step,
                                                "teacher_eval_block_s": teacher_eval,
                                                "student_eval_block_s": student_eval}}

    def prepare(self, spec: StudySpec, condition: Condition, *, cache_dir: str | None,
                on_epoch: Callable[[int], None]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Token blocks (cached), the teacher (trained once, cached), and its targets for the training split
        (cached); the payload holds their paths, never their arrays."""
        import torch

        from kdtune.tasks.language.cache_codec import choose_format
        from kdtune.tasks.language.models import build_lm
        from kdtune.tasks.language.prepare import TextSettings
        from kdtune.tasks.language.prepare import lm_root
        from kdtune.tasks.language.prepare import prepare_blocks
        from kdtune.tasks.language.prepare import prepare_targets
        from kdtune.tasks.language.prepare import prepare_teacher

        settings = TextSettings.of(spec)
        root = lm_root(cache_dir)
        tokenizer = _tokenizer(settings)
        blocks_key, blocks = prepare_blocks(settings.documents(), tokenizer, settings, root)
        vocab = tokenizer.vocab_size
        # the student is checked (vocabulary, context) before any teacher trains
        student = build_lm(condition.student_arch, condition.student_kwargs(spec), vocab_size=vocab,
                           context=settings.context, field=condition.model_field("student"))
        teacher, record, trained = prepare_teacher(spec, condition, blocks, settings, vocab, root, on_epoch)
        fmt = choose_format(int(getattr(teacher, "vocab_size")), settings.context, top_k=spec.cache.top_k,
                            samples=spec.cache.samples)
        targets, hit = prepare_targets(teacher, record["key"], blocks, fmt, condition.teacher_seed, root)
        info = {"cache_key": targets.path.stem, "teacher_key": record["key"], "source": "trained",
                "selected_epoch": record["selected_epoch"], "diagnostics": record["diagnostics"],
                "cache_hit": hit and not trained, "trained": trained,
                "threads": torch.get_num_threads() if trained else None, "curve": record["curve"],
                "blocks_key": blocks_key, "tokenizer": tokenizer.name,
                "blocks": {name: {"blocks": f.num_blocks, "tokens": f.num_tokens} for name, f in blocks.items()},
                "targets": {**fmt.to_dict(), "bytes": targets.path.stat().st_size, "path": str(targets.path)},
                "models": {"teacher": _model_record(spec.teacher.arch, condition.teacher_kwargs(spec), teacher),
                           "student": _model_record(condition.student_arch, condition.student_kwargs(spec), student)}}
        payload = {"blocks": {name: str(f.path) for name, f in blocks.items()}, "targets": str(targets.path),
                   "vocab_size": int(getattr(teacher, "vocab_size")), "context": settings.context,
                   "epoch_blocks": settings.epoch_blocks}
        return info, payload

    def train_seeds(self, payload: dict[str, Any], params: dict[str, Any], seeds: list[int], *,
                    student: dict[str, Any], arch: str, threads: int) -> SeedRuns:
        from kdtune.tasks.language.blocks import BlockFile
        from kdtune.tasks.language.cache_codec import TargetFile
        from kdtune.tasks.language.models import build_lm
        from kdtune.tasks.language.train import LMTrainConfig
        from kdtune.tasks.language.train import LMTrainer

        blocks = {name: BlockFile(path) for name, path in payload["blocks"].items()}
        batch_size = int(params["batch_size"])
        epoch_blocks = payload["epoch_blocks"]
        steps = None if epoch_blocks is None else max(1, math.ceil(epoch_blocks / batch_size))
        trainers = []
        for seed in seeds:
            config = LMTrainConfig(alpha=float(params["alpha"]), temperature=float(params["temperature"]),
                                   divergence=str(params["divergence"]), beta=float(params["beta"]),
                                   top_k=None if params.get("top_k") is None else int(params["top_k"]),
                                   lr=float(params["lr"]), batch_size=batch_size, steps_per_epoch=steps, seed=seed)
            model = build_lm(arch, dict(student["kwargs"]), vocab_size=payload["vocab_size"],
                             context=payload["context"], field="student.arch", seed=seed)
            teacher = TargetFile(payload["targets"]) if config.alpha < 1 else None
            trainers.append(LMTrainer(model, blocks["train"], blocks["val"], blocks["test"], config, teacher=teacher))
        return _Students(trainers)

    def run_params(self, spec: StudySpec, searched: dict[str, Any], condition: Condition | None = None) -> dict[str, Any]:
        """The shared parameters, plus the divergence (forward KL unless searched), JSD's beta (0.5) and the k a
        run reads of a top-k cache: searched, or the condition's (``conditions.top_k``), else None (all it holds)."""
        from kdtune.tasks.language.loss import DEFAULT_DIVERGENCE

        compared = {} if condition is None or condition.top_k is None else {"top_k": condition.top_k}
        return super().run_params(spec, {"divergence": DEFAULT_DIVERGENCE, "beta": 0.5, "top_k": None, **compared,
                                         **searched})


def _model_record(arch: str, kwargs: dict[str, Any], model: Any) -> dict[str, Any]:
    """What a condition's model was built as (``teachers.json``): its arch, kwargs (its size's merged in) and
    parameter count (a tied weight counted once)."""
    return {"arch": arch, "kwargs": kwargs, "parameters": sum(p.numel() for p in model.parameters())}


def _check_compared_k(ks: list[int] | None, searched: Any, cache_k: int | None) -> None:
    """``conditions.top_k``: each k read of one ``cache.top_k`` cache (a dense cache has no k to compare), and
    never with ``search.top_k`` (k is either compared or searched)."""
    if ks is None:
        return
    if searched is not None:
        raise SpecError("conditions.top_k", ks, "cannot be combined with search.top_k: k is either compared "
                        "(conditions) or searched (search); keep one")
    if cache_k is None:
        raise SpecError("conditions.top_k", ks, "needs cache.top_k (the largest k the cache stores; one top-k cache "
                        "serves every smaller k), not dense or sampled targets")
    for i, k in enumerate(ks):
        if k > cache_k:
            raise SpecError(f"conditions.top_k[{i}]", k, f"must be at most cache.top_k ({cache_k}): the cache stores "
                            f"the top {cache_k} and serves every smaller k")


def _tokenizer(settings: Any) -> Any:
    from kdtune.tasks.language.tokenizer import load_tokenizer

    return load_tokenizer(settings.tokenizer, field="dataset.tokenizer")


class _Students(TrainerSeeds):
    """One :class:`~kdtune.tasks.language.train.LMTrainer` per seed (:class:`~kdtune.tasks.base.SeedRuns`). A loss
    that stops being finite ends the run with a NaN row (the trial stops and records a failure)."""

    def step(self) -> list[dict[str, Any]]:
        rows = []
        for trainer in self.trainers:
            try:
                row = trainer.step()
            except FloatingPointError:
                row = {"epoch": trainer.epoch + 1, "train_loss": math.nan, "val_loss": math.nan}
            rows.append({**row, "epoch": int(row["epoch"])})
        return rows
