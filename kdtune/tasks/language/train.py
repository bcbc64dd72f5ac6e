"""Train one causal LM on token blocks, epoch by epoch, from cached teacher targets (or none); compute a teacher's
targets for a split into the cache.

:class:`LMTrainer` mirrors :class:`kdtune.core.train.Trainer`: ``step()`` trains one epoch and evaluates, so a study
trial can advance the repeat seeds of a configuration in lockstep. The student seed fixes the initialisation
(:func:`~kdtune.tasks.language.models.build_lm`'s ``seed``) and the batch order (the block reader's seeded
permutations) so configurations are paired. On CUDA the forward runs under bf16 autocast (fused attention through
``scaled_dot_product_attention``); on CPU everything stays float32. Losses are per-token cross-entropy in nats.
No Ray, no W&B, no Optuna.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kdtune.core.distill import check_alpha
from kdtune.errors import SpecError
from kdtune.tasks.image.views import sparsify
from kdtune.tasks.language.blocks import BlockFile
from kdtune.tasks.language.cache_codec import TargetFile
from kdtune.tasks.language.cache_codec import TargetFormat
from kdtune.tasks.language.cache_codec import TargetWriter
from kdtune.tasks.language.loss import DEFAULT_DIVERGENCE
from kdtune.tasks.language.loss import Targets
from kdtune.tasks.language.loss import TopK
from kdtune.tasks.language.loss import check_divergence
from kdtune.tasks.language.loss import lm_kd_loss
from kdtune.tasks.language.loss import truncate_topk


EVAL_BATCH_SIZE = 64
_DROPOUT_SEED_OFFSET = 0x5EED_D0


@dataclass(frozen=True)
class LMTrainConfig:
    """One LM run. alpha is the weight on the true next tokens (1 = no distillation).

    ``top_k`` reads only the k largest of a top-k cache built with a larger k (None: all it holds).
    ``steps_per_epoch`` caps an epoch's optimizer steps (None: one pass over the training blocks);
    ``eval_blocks`` caps the validation and test blocks evaluated (None: all, in file order).
    """

    alpha: float = 1.0
    temperature: float = 1.0
    divergence: str = DEFAULT_DIVERGENCE
    beta: float = 0.5
    top_k: int | None = None
    lr: float = 1e-3
    batch_size: int = 32
    steps_per_epoch: int | None = None
    eval_blocks: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_alpha(self.alpha)
        check_divergence(self.divergence, self.beta)
        if self.temperature <= 0:
            raise SpecError("temperature", self.temperature, "must be > 0")
        for name in ("batch_size", "steps_per_epoch", "eval_blocks"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise SpecError(f"student.{name}", value, "must be a positive integer")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _autocast(device: torch.device) -> Any:
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)


class LMTrainer:
    """Trains ``model`` on ``train`` blocks; evaluates on ``val`` and ``test`` after every epoch.

    ``teacher``: a :class:`TargetFile` (cached targets, joined by block index), a model run inline on every batch
    (dense logits; the baseline the cache is measured against), or None (only with alpha = 1).
    """

    def __init__(self, model: nn.Module, train: BlockFile, val: BlockFile, test: BlockFile | None,
                 config: LMTrainConfig, *, teacher: TargetFile | nn.Module | None = None,
                 device: torch.device | str | None = None) -> None:
        if config.alpha < 1 and teacher is None:
            raise SpecError("alpha", config.alpha, "needs a teacher below 1 (alpha = 1 is no distillation)")
        if isinstance(teacher, TargetFile):
            if teacher.num_rows != train.num_blocks or teacher.format.context != train.context:
                raise SpecError("cache", str(teacher.path), f"holds {teacher.num_rows} blocks of {teacher.format.context} "
                                f"positions; the training split has {train.num_blocks} of {train.context}")
            if config.top_k is not None and teacher.format.layout != "topk":
                raise SpecError("cache.top_k", config.top_k, f"needs a top-k cache; this one is {teacher.format.layout}")
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device)
        self.train_blocks, self.val_blocks, self.test_blocks = train, val, test
        self.config = config
        self.teacher = teacher.to(self.device).eval() if isinstance(teacher, nn.Module) else teacher
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.epoch = 0

    def _targets(self, index: np.ndarray, inputs: torch.Tensor) -> Targets | None:
        if self.config.alpha == 1 or self.teacher is None:
            return None
        if isinstance(self.teacher, nn.Module):
            with torch.no_grad(), _autocast(self.device):
                return self.teacher(inputs).float()
        targets = self.teacher.targets(index, self.device)
        if isinstance(targets, TopK) and self.config.top_k is not None:
            targets = truncate_topk(targets, self.config.top_k)
        return targets

    def step(self) -> dict[str, float]:
        """Train one epoch, evaluate, and return the epoch's metrics (losses in nats per token)."""
        start = time.perf_counter()
        config = self.config
        torch.manual_seed(config.seed * 1_000_003 + self.epoch + _DROPOUT_SEED_OFFSET)
        self.model.train()
        total, tokens = 0.0, 0
        for step, batch in enumerate(self.train_blocks.batches(config.batch_size, seed=config.seed, epoch=self.epoch)):
            if config.steps_per_epoch is not None and step >= config.steps_per_epoch:
                break
            block = torch.from_numpy(batch.tokens).to(self.device)
            inputs, targets = block[:, :-1], block[:, 1:]
            teacher = self._targets(batch.index, inputs)
            with _autocast(self.device):
                logits = self.model(inputs)
            loss = lm_kd_loss(logits, targets, teacher, alpha=config.alpha, temperature=config.temperature,
                              divergence=config.divergence, beta=config.beta)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"training loss is {loss.item()} at epoch {self.epoch + 1}, step {step + 1}")
            total += loss.item() * targets.numel()
            tokens += targets.numel()
        self.epoch += 1
        metrics: dict[str, float] = {"epoch": float(self.epoch), "train_loss": total / max(tokens, 1)}
        for name, blocks in (("val", self.val_blocks), ("test", self.test_blocks)):
            if blocks is not None:
                held_out, accuracy = evaluate(self.model, blocks, max_blocks=config.eval_blocks, device=self.device)
                metrics.update({f"{name}_loss": held_out, f"{name}_perplexity": math.exp(min(held_out, 700.0)),
                                f"{name}_accuracy": accuracy})
        metrics["seconds"] = time.perf_counter() - start
        return metrics

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue identically: weights, optimizer, epoch and config."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "epoch": self.epoch,
                "config": asdict(self.config)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["config"] != asdict(self.config):
            raise SpecError("checkpoint", state["config"], f"was saved by another configuration ({asdict(self.config)})")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])


@torch.no_grad()
def evaluate(model: nn.Module, blocks: BlockFile, *, max_blocks: int | None = None, batch_size: int = EVAL_BATCH_SIZE,
             device: torch.device | str | None = None) -> tuple[float, float]:
    """(per-token cross-entropy in nats, next-token accuracy) of ``model`` on the first ``max_blocks`` blocks
    (all when None), in file order."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss, correct, count, seen = 0.0, 0, 0, 0
    for batch in blocks.batches(batch_size):
        if max_blocks is not None and seen >= max_blocks:
            break
        block = torch.from_numpy(batch.tokens[: None if max_blocks is None else max_blocks - seen]).to(device)
        seen += len(block)
        with _autocast(device):
            logits = model(block[:, :-1]).float()
        targets = block[:, 1:]
        loss += F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum").item()
        correct += int((logits.argmax(-1) == targets).sum())
        count += targets.numel()
    model.train(was_training)
    return loss / max(count, 1), correct / max(count, 1)


def train_lm(model: nn.Module, blocks: dict[str, BlockFile], config: LMTrainConfig, *, epochs: int,
             teacher: TargetFile | nn.Module | None = None, select: str = "best_val",
             device: torch.device | str | None = None) -> list[dict[str, float]]:
    """Train ``epochs`` epochs; leave ``model`` at its best validation-loss epoch (``select="best_val"``) or its
    last (``"final"``); return every epoch's metrics. A teacher is this with alpha = 1 and no teacher."""
    if select not in ("best_val", "final"):
        raise SpecError("teacher.select", select, "allowed: best_val, final")
    trainer = LMTrainer(model, blocks["train"], blocks["val"], blocks.get("test"), config, teacher=teacher, device=device)
    history, best, best_state = [], math.inf, None
    for _ in range(epochs):
        history.append(trainer.step())
        if select == "best_val" and history[-1]["val_loss"] < best:
            best, best_state = history[-1]["val_loss"], copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


@torch.no_grad()
def compute_targets(model: nn.Module, blocks: BlockFile, path: str | Path, fmt: TargetFormat, *,
                    batch_size: int = EVAL_BATCH_SIZE, seed: int = 0, meta: dict[str, Any] | None = None,
                    device: torch.device | str | None = None) -> TargetFile:
    """The teacher's targets for every block of ``blocks`` in ``fmt``, written to ``path`` batch by batch (never
    all in memory). ``seed`` fixes the draws of a ``sampled`` cache. Returns the file opened for reading."""
    if fmt.context != blocks.context:
        raise SpecError("dataset.context", blocks.context, f"differs from the cache format's context ({fmt.context})")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    with TargetWriter(path, fmt, {"blocks": blocks.fingerprint, "seed": seed, **(meta or {})}) as writer:
        for batch in blocks.batches(batch_size):
            inputs = torch.from_numpy(batch.tokens[:, :-1]).to(device)
            with _autocast(device):
                logits = model(inputs).float()
            b, n, v = logits.shape
            if v != fmt.vocab_size:
                raise SpecError("teacher.arch", v, f"outputs {v} logits; the cache format has {fmt.vocab_size}")
            flat = logits.reshape(b * n, v)
            if fmt.layout == "dense":
                writer.add(batch.index, logits=logits.cpu().numpy())
            elif fmt.layout == "topk":
                values, ids, lse, mean = sparsify(flat, int(fmt.k or 0))
                writer.add(batch.index, ids=ids.cpu().numpy(), logits=values.cpu().numpy(),
                           tail_lse=lse.cpu().numpy(), tail_mean=mean.cpu().numpy())
            else:
                ids = torch.multinomial(flat.softmax(-1), int(fmt.k or 0), replacement=True, generator=generator)
                writer.add(batch.index, ids=ids.cpu().numpy(), logits=flat.gather(1, ids).cpu().numpy(),
                           lse=torch.logsumexp(flat, -1).cpu().numpy())
    model.train(was_training)
    return TargetFile(path)
