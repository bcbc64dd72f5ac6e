"""Causal language models for teacher and student: a small built-in transformer, or Hugging Face ``transformers``.

Every model here maps token ids (B, L) to next-token logits (B, L, V) and carries ``vocab_size`` and
``max_context``, whatever it wraps, so the loop, the cache and the checks treat them alike.

* ``arch: transformer`` (:class:`TinyGPT`): decoder-only, pre-norm (LayerNorm before attention and MLP, one after
  the last layer), learned absolute positions (simplest to reason about at a fixed context; the context is the
  model's maximum), GELU MLP of 4 x d_model, attention through
  ``torch.nn.functional.scaled_dot_product_attention(is_causal=True)`` (fused kernels on CUDA), input and output
  embeddings tied by default (``tie_embeddings``).
* ``arch: "hf:<name>"``: ``AutoModelForCausalLM.from_pretrained(name)``, from the local cache first and the hub
  only when that fails and is reachable.
* ``arch: hf-config`` with the config as kwargs (e.g. ``{model_type: gpt2, n_layer: 2, n_embd: 64, n_head: 2}``):
  ``AutoConfig.for_model(**kwargs)`` then ``AutoModelForCausalLM.from_config``: random init, no download.

The ``hf`` kinds need the optional extra (``pip install 'kdtune[lm]'``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdtune.errors import SpecError
from kdtune.errors import one_line
from kdtune.tasks.language.tokenizer import LM_EXTRA


TRANSFORMER_KWARGS = ("n_layers", "d_model", "n_heads", "tie_embeddings", "dropout")


class _Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model),
                                 nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.proj(attn.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.norm2(x))


class TinyGPT(nn.Module):
    """A small decoder-only transformer: token + learned position embeddings, ``n_layers`` pre-norm blocks, a final
    LayerNorm and the output projection (the token embedding's transpose when ``tie_embeddings``)."""

    def __init__(self, vocab_size: int, context: int, *, n_layers: int = 2, d_model: int = 64, n_heads: int = 2,
                 tie_embeddings: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        for name, value in (("n_layers", n_layers), ("d_model", d_model), ("n_heads", n_heads)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"arch.{name}", value, "must be a positive integer")
        if d_model % n_heads:
            raise SpecError("arch.n_heads", n_heads, f"must divide d_model ({d_model})")
        self.vocab_size = vocab_size
        self.max_context = context
        self.n_layers, self.d_model = n_layers, d_model
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList([_Block(d_model, n_heads, dropout) for _ in range(n_layers)])
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        if tie_embeddings:
            self.head.weight = self.embed.weight
        self.apply(_init)
        for block in self.blocks:  # GPT-2's scaling of the residual projections by depth
            assert isinstance(block, _Block)
            for proj in (block.proj, block.mlp[2]):
                assert isinstance(proj, nn.Linear)
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * n_layers))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def _init(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


class HFCausalLM(nn.Module):
    """A ``transformers`` causal LM returning plain logits, with ``vocab_size`` and ``max_context`` from its config."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        config: Any = model.config
        self.vocab_size = int(config.vocab_size)
        context = next((getattr(config, name) for name in ("n_positions", "max_position_embeddings", "n_ctx")
                        if getattr(config, name, None)), None)
        self.max_context = int(context) if context else None
        self.n_layers = int(getattr(config, "num_hidden_layers", getattr(config, "n_layer", 0)) or 0)
        self.d_model = int(getattr(config, "hidden_size", getattr(config, "n_embd", 0)) or 0)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids).logits


def build_lm(arch: str, kwargs: Mapping[str, Any] | None = None, *, vocab_size: int, context: int,
             field: str = "student.arch", seed: int | None = None, local_only: bool = False) -> nn.Module:
    """The model ``arch`` names, for a tokenizer of ``vocab_size`` ids and blocks of ``context`` tokens.

    ``arch``: ``"transformer"`` (kwargs: n_layers, d_model, n_heads, tie_embeddings, dropout), ``"hf:<name>"``
    or ``"hf-config"`` (kwargs: a ``transformers`` config, ``model_type`` required; ``vocab_size`` defaults to the
    tokenizer's and ``n_positions``/``max_position_embeddings`` to the context when absent). ``seed`` fixes the
    initialisation. A context longer than the model's maximum, or a vocabulary that differs from the tokenizer's,
    is refused (:func:`check_context`, :func:`check_vocab`).
    """
    kwargs = dict(kwargs or {})
    if seed is not None:
        torch.manual_seed(seed)
    if arch == "transformer":
        unknown = sorted(set(kwargs) - set(TRANSFORMER_KWARGS))
        if unknown:
            raise SpecError(f"{field}.{unknown[0]}", kwargs[unknown[0]], f"unknown; allowed: {', '.join(TRANSFORMER_KWARGS)}")
        try:
            model: nn.Module = TinyGPT(vocab_size, context, **kwargs)
        except SpecError as exc:  # TinyGPT names its own argument (arch.n_heads); the caller's field says whose
            raise SpecError(f"{field}.{exc.field.removeprefix('arch.')}", exc.value, exc.allowed) from None
        except (TypeError, ValueError) as exc:  # e.g. a dropout outside [0, 1]
            raise SpecError(field, kwargs, f"the transformer cannot be built with these kwargs: {one_line(exc)}") from None
    elif arch.startswith("hf:"):
        model = _pretrained(arch, field=field, local_only=local_only)
    elif arch == "hf-config":
        model = _from_config(kwargs, vocab_size=vocab_size, context=context, field=field)
    else:
        raise SpecError(field, arch, "unknown model; allowed: 'transformer', 'hf:<name>' or 'hf-config'")
    check_context(model, context, field=field)
    check_vocab({field: model}, vocab_size)
    return model


def _transformers(field: str, arch: str) -> Any:
    try:
        import transformers
    except ImportError:
        raise SpecError(field, arch, f"Hugging Face models need the optional extra: {LM_EXTRA}") from None
    return transformers


def _pretrained(arch: str, *, field: str, local_only: bool) -> HFCausalLM:
    transformers = _transformers(field, arch)
    name = arch[len("hf:"):]
    for local in ((True,) if local_only else (True, False)):
        try:
            return HFCausalLM(transformers.AutoModelForCausalLM.from_pretrained(name, local_files_only=local))
        except Exception as exc:  # OSError, ValueError, connection errors: try the hub next, or refuse below
            error = exc
    raise SpecError(field, arch, f"cannot load this causal LM ({one_line(error, 120)}); allowed: 'hf:<name>' of a model "
                    "in the local Hugging Face cache or reachable on the hub")


def _from_config(kwargs: dict[str, Any], *, vocab_size: int, context: int, field: str) -> HFCausalLM:
    transformers = _transformers(field, "hf-config")
    config = dict(kwargs)
    model_type = config.pop("model_type", None)
    if not isinstance(model_type, str):
        raise SpecError(f"{field}.model_type", model_type, "is required for hf-config: a transformers model type "
                        "such as 'gpt2' or 'llama'")
    config.setdefault("vocab_size", vocab_size)
    for name in ("bos_token_id", "eos_token_id"):  # the defaults name ids of the model's own tokenizer (GPT-2: 50256)
        config.setdefault(name, None)
    try:
        built = transformers.AutoConfig.for_model(model_type, **config)
        if not {"n_positions", "max_position_embeddings", "n_ctx"} & set(config):
            for name in ("n_positions", "max_position_embeddings"):
                if hasattr(built, name):
                    setattr(built, name, context)
        return HFCausalLM(transformers.AutoModelForCausalLM.from_config(built))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise SpecError(field, {"model_type": model_type, **config}, f"is not a causal-LM config transformers can build "
                        f"({one_line(exc, 120)})") from None


def check_context(model: nn.Module, context: int, *, field: str = "student.arch") -> None:
    """Refuse blocks longer than the positions ``model`` has (one line)."""
    limit = getattr(model, "max_context", None)
    if limit is not None and context > limit:
        raise SpecError("dataset.context", context, f"is longer than the {limit} positions of {field}; use a context "
                        f"<= {limit}")


def check_vocab(models: Mapping[str, nn.Module | int], vocab_size: int) -> None:
    """Refuse a model whose output vocabulary differs from the tokenizer's ``vocab_size``.

    ``models`` maps spec fields (``"teacher.arch"``, ``"student.arch"``) to models or vocabulary sizes. Teacher
    and student must share one tokenizer: the KD loss compares their distributions id by id. A model with more
    outputs than the tokenizer (padded embeddings) is accepted only when every model has the same count.
    """
    sizes = {name: m if isinstance(m, int) else int(getattr(m, "vocab_size")) for name, m in models.items()}
    first_name, first = next(iter(sizes.items()))
    for name, size in sizes.items():
        if size < vocab_size:
            raise SpecError(f"{name}.vocab_size", size, f"must be at least the tokenizer's vocabulary ({vocab_size}): "
                            "teacher and student share one tokenizer")
        if size != first:
            raise SpecError(f"{name}.vocab_size", size, f"must equal {first_name}'s ({first}; the tokenizer has "
                            f"{vocab_size}): teacher and student share one tokenizer and output vocabulary")


def flops_per_token(model: nn.Module, context: int) -> int:
    """Forward FLOPs per token (multiply-add = 2), as Kaplan et al. 2020 ("Scaling Laws for Neural Language
    Models", Table 1) count them: 2 x the parameters that multiply activations (every weight except the position
    embeddings and an input embedding that is not also the output layer) + 2 x n_layers x context x d_model for
    the attention scores and values. Training costs about 3x this."""
    total = sum(p.numel() for p in model.parameters())  # a tied weight is one parameter, counted once
    outputs = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    total -= sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Embedding) and id(m.weight) not in outputs)
    n_layers, d_model = int(getattr(model, "n_layers", 0)), int(getattr(model, "d_model", 0))
    return 2 * total + 2 * n_layers * context * d_model
