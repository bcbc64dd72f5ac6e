"""The language-model task's building blocks (kdtune.tasks.language): corpus, tokenizers, token blocks, models,
token KD losses, the target cache codec and the training loop, on a few KB of real text with tiny models."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from kdtune.errors import SpecError
from kdtune.tasks.image.views import densify
from kdtune.tasks.image.views import sparsify
from kdtune.tasks.language.blocks import BlockFile
from kdtune.tasks.language.blocks import build_splits
from kdtune.tasks.language.blocks import split_documents
from kdtune.tasks.language.blocks import write_blocks
from kdtune.tasks.language.cache_codec import TargetFormat
from kdtune.tasks.language.cache_codec import cache_bytes
from kdtune.tasks.language.cache_codec import choose_format
from kdtune.tasks.language.corpus import load_corpus
from kdtune.tasks.language.loss import Sampled
from kdtune.tasks.language.loss import TopK
from kdtune.tasks.language.loss import divergence_per_token
from kdtune.tasks.language.loss import lm_kd_loss
from kdtune.tasks.language.loss import truncate_topk
from kdtune.tasks.language.models import build_lm
from kdtune.tasks.language.models import check_vocab
from kdtune.tasks.language.models import flops_per_token
from kdtune.tasks.language.tokenizer import ByteTokenizer
from kdtune.tasks.language.tokenizer import load_tokenizer
from kdtune.tasks.language.train import LMTrainConfig
from kdtune.tasks.language.train import LMTrainer
from kdtune.tasks.language.train import compute_targets
from kdtune.tasks.language.train import evaluate
from kdtune.tasks.language.train import train_lm


CONTEXT = 32


def _docs() -> list[str]:
    """About 16 KB of English prose: the first 40 topics of the Python reference, 400 characters each."""
    from pydoc_data.topics import topics

    return [topics[name][:400] for name in sorted(topics)[:40]]


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BlockFile]:
    return build_splits(_docs(), ByteTokenizer(), tmp_path_factory.mktemp("blocks"), context=CONTEXT,
                        val_fraction=0.2, test_fraction=0.2, seed=0, rows_per_group=16)


@pytest.fixture(scope="module")
def teacher(splits: dict[str, BlockFile]) -> torch.nn.Module:
    """A tiny byte-level transformer trained for 2 short epochs (alpha = 1: a teacher)."""
    torch.set_num_threads(1)
    model = build_lm("transformer", {"n_layers": 1, "d_model": 48, "n_heads": 2}, vocab_size=257, context=CONTEXT, seed=0)
    train_lm(model, splits, LMTrainConfig(alpha=1, lr=3e-3, batch_size=16, steps_per_epoch=40), epochs=2, device="cpu")
    return model


# -- corpus ---------------------------------------------------------------------------------------------------------

def test_default_corpus_is_python_prose() -> None:
    docs = load_corpus()
    assert len(docs) > 200  # 79 reference topics + one docstring document per top-level stdlib module
    assert sum(map(len, docs)) > 1_000_000
    assert any("assert" in doc and "AssertionError" in doc for doc in docs)


def test_user_corpora(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("First document,\nstill first.\n\n  \nSecond one.\n\n\nThird.\n", encoding="utf-8")
    assert load_corpus(tmp_path / "a.txt") == ["First document,\nstill first.", "Second one.", "Third."]
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"body": t}) for t in ("one", "two", "")) + "\n")
    assert load_corpus(tmp_path / "b.jsonl", text_field="body") == ["one", "two"]
    pq.write_table(pa.table({"content": ["x y", "z"], "n": [1, 2]}), tmp_path / "c.parquet")
    assert load_corpus(tmp_path / "c.parquet", text_field="content") == ["x y", "z"]
    with pytest.raises(SpecError, match=r"^dataset.corpus.text_field = 'text': is not a column"):
        load_corpus(tmp_path / "c.parquet")
    with pytest.raises(SpecError, match=r"^dataset.corpus.text_field = 'text': line 1 .* has no string"):
        load_corpus(tmp_path / "b.jsonl")


@pytest.mark.parametrize(("content", "message"), [
    (b"", "holds no text"),
    (b"\n \n\t\n", "holds no text"),
    (b"text\x00\x01\x02binary", "is a binary file \\(NUL byte at offset 4\\)"),
    ("caf\u00e9".encode("latin-1"), "is not UTF-8 text \\(invalid byte 0xe9 at offset 3\\)"),
])
def test_bad_corpus_files_are_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "corpus.txt"
    path.write_bytes(content)
    with pytest.raises(SpecError, match=rf"^dataset.corpus = '.*corpus.txt': {message}") as info:
        load_corpus(path)
    assert "\n" not in str(info.value)


def test_unknown_corpus_source(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(SpecError, match="unknown suffix"):
        load_corpus(tmp_path / "x.csv")
    with pytest.raises(SpecError, match="no such file"):
        load_corpus(tmp_path / "missing.txt")


# -- tokenizers -----------------------------------------------------------------------------------------------------

def test_byte_tokenizer() -> None:
    tok = ByteTokenizer()
    assert (tok.vocab_size, tok.eos_id) == (257, 256)
    assert tok.encode("h\u00e9") == [104, 195, 169]
    assert tok.decode(tok.encode("h\u00e9")) == "h\u00e9"


def test_local_bpe_tokenizer(tmp_path: Path) -> None:
    from tokenizers import Tokenizer
    from tokenizers import models
    from tokenizers import pre_tokenizers
    from tokenizers import trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.train_from_iterator(_docs(), trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"]))
    backend.save(str(tmp_path / "tokenizer.json"))
    tok = load_tokenizer(str(tmp_path / "tokenizer.json"))
    assert tok.vocab_size == backend.get_vocab_size() and tok.eos_id == backend.token_to_id("<|endoftext|>")
    assert len(tok.fingerprint) == 64 and tok.encode("The assert statement")
    files = build_splits(_docs(), tok, tmp_path / "blocks", context=16, seed=1)
    assert files["train"].tokenizer == tok.fingerprint and files["train"].num_blocks > 0


@pytest.mark.parametrize("spec", ["sentencepiece", "hf:kdtune-tests/no-such-tokenizer", "missing/tokenizer.json"])
def test_unknown_tokenizer_is_one_line(spec: str) -> None:
    with pytest.raises(SpecError, match=rf"^tokenizer = '{spec}': ") as info:
        load_tokenizer(spec, local_only=True)
    assert info.value.exit_code == 2 and "\n" not in str(info.value)


# -- blocks -----------------------------------------------------------------------------------------------------------

def test_split_is_by_document() -> None:
    parts = split_documents(40, val_fraction=0.2, test_fraction=0.2, seed=3)
    sets = [set(parts[name].tolist()) for name in ("train", "val", "test")]
    assert sets[0].isdisjoint(sets[1]) and sets[0].isdisjoint(sets[2]) and sets[1].isdisjoint(sets[2])
    assert set().union(*sets) == set(range(40)) and [len(s) for s in sets] == [24, 8, 8]
    assert not np.array_equal(parts["val"], split_documents(40, val_fraction=0.2, test_fraction=0.2, seed=4)["val"])
    with pytest.raises(SpecError, match="at least 3 documents"):
        split_documents(2)


def test_split_files_share_no_text(splits: dict[str, BlockFile]) -> None:
    tok = ByteTokenizer()
    text = {name: tok.decode([int(t) for g in range(f.num_row_groups) for t in f.read_row_group(g).reshape(-1)])
            for name, f in splits.items()}
    for doc in _docs():
        owners = [name for name in text if doc[50:150] in text[name]]
        assert len(owners) <= 1, owners


def test_blocks_round_trip_by_row_group(tmp_path: Path) -> None:
    tok = ByteTokenizer()
    docs = ["abcdefghij" * 3, "klmnop", "qrstuvwxyz" * 5]
    stream = [t for doc in docs for t in [*tok.encode(doc), tok.eos_id]]
    blocks = write_blocks(docs, tok, tmp_path / "b.parquet", context=4, rows_per_group=3)
    assert blocks.num_blocks == len(stream) // 5 and blocks.num_row_groups == math.ceil(blocks.num_blocks / 3)
    rows = np.concatenate([blocks.read_row_group(g) for g in range(blocks.num_row_groups)])
    assert rows.dtype == np.uint16 and rows.reshape(-1).tolist() == stream[: blocks.num_blocks * 5]
    for seed in (None, 7):
        seen = [(b.index, b.tokens) for b in blocks.batches(4, seed=seed, epoch=1)]
        index = np.concatenate([i for i, _ in seen])
        assert sorted(index.tolist()) == list(range(blocks.num_blocks))
        assert np.array_equal(np.concatenate([t for _, t in seen]), rows[index])
    order = [np.concatenate([b.index for b in blocks.batches(4, seed=7, epoch=e)]) for e in (0, 0, 1)]
    assert np.array_equal(order[0], order[1]) and not np.array_equal(order[0], order[2])
    assert BlockFile(tmp_path / "b.parquet").fingerprint == blocks.fingerprint
    with pytest.raises(SpecError, match=r"^dataset.context = 500: is longer than the"):
        write_blocks(docs, tok, tmp_path / "c.parquet", context=500)
    assert not (tmp_path / "c.parquet").exists() and not (tmp_path / "c.parquet.tmp").exists()


# -- losses -----------------------------------------------------------------------------------------------------------

def _by_hand(p: np.ndarray, q: np.ndarray, divergence: str, beta: float) -> float:
    kl = lambda a, b: float(np.sum(a * np.log(a / b)))  # noqa: E731
    if divergence == "forward_kl" or (divergence == "jsd" and beta == 0):
        return kl(p, q)
    if divergence == "reverse_kl" or (divergence == "jsd" and beta == 1):
        return kl(q, p)
    m = beta * p + (1 - beta) * q
    return beta * kl(p, m) + (1 - beta) * kl(q, m)


@pytest.mark.parametrize(("divergence", "beta"), [("forward_kl", 0.5), ("reverse_kl", 0.5), ("jsd", 0.5), ("jsd", 0.1),
                                                   ("jsd", 0.0), ("jsd", 1.0)])
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_loss_matches_hand_computation(divergence: str, beta: float, temperature: float) -> None:
    t = np.array([2.0, 0.5, -1.0, 0.0])
    s = np.array([0.3, 1.2, -0.4, 0.1])
    soft = lambda z: np.exp(z / temperature) / np.exp(z / temperature).sum()  # noqa: E731
    d = _by_hand(soft(t), soft(s), divergence, beta)
    ce = -math.log(np.exp(s)[1] / np.exp(s).sum())
    alpha = 0.3
    got = lm_kd_loss(torch.tensor(s).view(1, 1, 4), torch.tensor([[1]]), torch.tensor(t).view(1, 1, 4), alpha=alpha,
                     temperature=temperature, divergence=divergence, beta=beta)
    assert got.item() == pytest.approx(alpha * ce + (1 - alpha) * temperature**2 * d, rel=1e-6)


@pytest.mark.parametrize(("divergence", "beta"), [("forward_kl", 0.5), ("reverse_kl", 0.5), ("jsd", 0.3)])
@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_topk_loss_is_dense_loss_on_densified_logits(divergence: str, beta: float, temperature: float) -> None:
    gen = torch.Generator().manual_seed(0)
    vocab = 50
    teacher = torch.randn(2, 3, vocab, generator=gen, dtype=torch.float64) * 3
    student = torch.randn(2, 3, vocab, generator=gen, dtype=torch.float64) * 2
    for k in (vocab, 7):
        values, ids, lse, mean = sparsify(teacher.view(-1, vocab), k)
        top = TopK(ids.view(2, 3, k), values.view(2, 3, k), lse.view(2, 3), mean.view(2, 3), vocab)
        sparse = divergence_per_token(student, top, temperature=temperature, divergence=divergence, beta=beta)
        rebuilt = teacher if k == vocab else densify(values, ids, lse, mean, vocab, temperature).view(2, 3, vocab)
        dense = divergence_per_token(student, rebuilt, temperature=temperature, divergence=divergence, beta=beta)
        assert torch.allclose(sparse, dense, rtol=1e-10, atol=1e-12), (k, sparse, dense)


def test_truncated_topk_equals_topk_of_fewer() -> None:
    teacher = torch.randn(5, 40, dtype=torch.float64) * 2
    v, i, lse12, mean12 = sparsify(teacher, 12)
    wide = TopK(i[None], v[None], lse12[None], mean12[None], 40)
    values, ids, lse, mean = sparsify(teacher, 5)
    narrow = truncate_topk(wide, 5)
    assert torch.equal(narrow.ids[0], ids) and torch.equal(narrow.logits[0], values)
    assert torch.allclose(narrow.tail_lse[0], lse) and torch.allclose(narrow.tail_mean[0], mean)


def test_sampled_estimator_is_unbiased() -> None:
    gen = torch.Generator().manual_seed(1)
    vocab, draws, repeats = 20, 8, 4000
    teacher = torch.randn(vocab, generator=gen, dtype=torch.float64) * 2
    student = torch.randn(vocab, generator=gen, dtype=torch.float64)
    exact = divergence_per_token(student.view(1, 1, -1), teacher.view(1, 1, -1)).item()
    ids = torch.multinomial(teacher.softmax(-1).expand(repeats, -1), draws, replacement=True, generator=gen)
    sampled = Sampled(ids.view(1, repeats, draws), teacher[ids].view(1, repeats, draws),
                      torch.logsumexp(teacher, 0).expand(1, repeats))
    estimates = divergence_per_token(student.view(1, 1, -1).expand(1, repeats, -1), sampled)[0]
    stderr = estimates.std().item() / math.sqrt(repeats)
    assert abs(estimates.mean().item() - exact) < 4 * stderr  # fails < 1e-4 of the time if unbiased
    assert estimates.std().item() > 0  # the draws do vary: the test could fail
    with pytest.raises(SpecError, match=r"^cache.sampled = True: supports forward_kl at temperature 1 only"):
        divergence_per_token(student.view(1, 1, -1), sampled, temperature=2.0)


def test_mask_ignores_padding() -> None:
    gen = torch.Generator().manual_seed(2)
    student = torch.randn(2, 5, 11, generator=gen)
    teacher = torch.randn(2, 5, 11, generator=gen)
    targets = torch.randint(0, 11, (2, 5), generator=gen)
    mask = torch.tensor([[True, True, True, False, False], [True, True, True, True, False]])
    garbage_teacher, garbage_targets = teacher.clone(), targets.clone()
    garbage_teacher[~mask] = 1e4
    garbage_targets[~mask] = 0
    kwargs = {"alpha": 0.4, "temperature": 2.0}
    masked = lm_kd_loss(student, garbage_targets, garbage_teacher, mask=mask, **kwargs)
    real = [lm_kd_loss(student[b:b + 1, mask[b]], targets[b:b + 1, mask[b]], teacher[b:b + 1, mask[b]], **kwargs)
            * int(mask[b].sum()) for b in range(2)]
    assert masked.item() == pytest.approx(sum(r.item() for r in real) / int(mask.sum()), rel=1e-6)


# -- models and refusals ------------------------------------------------------------------------------------------

def test_flops_and_shapes() -> None:
    small = build_lm("transformer", {"n_layers": 1, "d_model": 32, "n_heads": 2}, vocab_size=257, context=16, seed=0)
    big = build_lm("transformer", {"n_layers": 4, "d_model": 128, "n_heads": 4}, vocab_size=257, context=16, seed=0)
    assert small(torch.zeros(2, 16, dtype=torch.long)).shape == (2, 16, 257)
    # 1 layer, d=32: 12 d^2 + 13 d (blocks: qkv, proj, mlp, 2 norms) + 2 d (final norm) + 257 d (tied head)
    assert flops_per_token(small, 16) == 2 * (12 * 32**2 + 13 * 32 + 2 * 32 + 257 * 32) + 2 * 1 * 16 * 32
    assert flops_per_token(big, 16) >= 10 * flops_per_token(small, 16)


def test_bad_models_are_one_line() -> None:
    with pytest.raises(SpecError, match=r"^student.arch.vocab_size = 300: must equal teacher.arch's \(257;"):
        check_vocab({"teacher.arch": 257, "student.arch": 300}, 257)
    with pytest.raises(SpecError, match=r"^teacher.arch.vocab_size = 200: must be at least the tokenizer's vocabulary \(257\)"):
        check_vocab({"teacher.arch": 200}, 257)
    with pytest.raises(SpecError, match=r"^dataset.context = 64: is longer than the 16 positions of teacher.arch"):
        build_lm("hf-config", {"model_type": "gpt2", "n_layer": 1, "n_embd": 16, "n_head": 2, "n_positions": 16},
                 vocab_size=257, context=64, field="teacher.arch")
    with pytest.raises(SpecError, match=r"^teacher.arch = 'hf:kdtune-tests/no-such-model': cannot load"):
        build_lm("hf:kdtune-tests/no-such-model", vocab_size=257, context=16, field="teacher.arch", local_only=True)
    with pytest.raises(SpecError, match=r"^cache.top_k = 300: must be in \[1, 257\]"):
        TargetFormat("topk", 257, 16, 300)
    with pytest.raises(SpecError, match=r"^cache.top_k = None: is needed for a vocabulary of 50,257"):
        choose_format(50257, 16)
    with pytest.raises(SpecError, match=r"^student.arch.width = 3: unknown"):
        build_lm("transformer", {"width": 3}, vocab_size=257, context=16)


def test_cache_bytes_arithmetic() -> None:
    assert cache_bytes(1, 50257, layout="dense") == 201_028
    assert cache_bytes(1, 50257, layout="topk", k=32) == 264
    assert cache_bytes(1000, 257, layout="sampled", k=12) == 100_000
    assert choose_format(257, 16).layout == "dense"


# -- cache codec and training ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("layout", "k"), [("dense", None), ("topk", 8), ("topk", 257), ("sampled", 4)])
def test_target_cache_round_trip(splits: dict[str, BlockFile], teacher: torch.nn.Module, tmp_path: Path,
                                 layout: str, k: int | None) -> None:
    train = splits["train"]
    cache = compute_targets(teacher, train, tmp_path / "t.parquet", TargetFormat(layout, 257, CONTEXT, k), batch_size=10)
    assert cache.num_rows == train.num_blocks
    cache.verify()
    index = np.random.default_rng(0).permutation(train.num_blocks)[:20]
    blocks = np.concatenate([train.read_row_group(g) for g in range(train.num_row_groups)])[index]
    with torch.no_grad():
        logits = teacher(torch.from_numpy(blocks[:, :-1].astype(np.int64))).double()
    got = cache.targets(index)
    if layout == "dense":
        assert torch.allclose(got.double(), logits, atol=1e-4)
    elif layout == "topk":
        assert torch.allclose(got.logits.double(), logits.topk(int(k or 0), -1).values, atol=1e-4)
    else:
        assert torch.allclose(got.lse.double(), torch.logsumexp(logits, -1), atol=1e-4)
        assert torch.allclose(got.logits.double(), logits.gather(-1, got.ids.long()), atol=1e-4)


def test_topk_cache_matches_dense_at_t1(splits: dict[str, BlockFile], teacher: torch.nn.Module, tmp_path: Path) -> None:
    """The documented tolerance (docs/language_models.md): at T = 1 the forward-KL term of a top-32 cache of the
    byte vocabulary is within 5% of the dense one (4.5% measured on the benchmark's larger teacher)."""
    train = splits["train"]
    dense = compute_targets(teacher, train, tmp_path / "d.parquet", TargetFormat("dense", 257, CONTEXT))
    top = compute_targets(teacher, train, tmp_path / "k.parquet", TargetFormat("topk", 257, CONTEXT, 32))
    student = build_lm("transformer", {"n_layers": 1, "d_model": 16, "n_heads": 2}, vocab_size=257, context=CONTEXT, seed=1)
    index = np.arange(train.num_blocks)
    blocks = np.concatenate([train.read_row_group(g) for g in range(train.num_row_groups)])
    with torch.no_grad():
        s = student(torch.from_numpy(blocks[:, :-1].astype(np.int64)))
        d_dense = divergence_per_token(s, dense.targets(index)).mean().item()
        d_top = divergence_per_token(s, top.targets(index)).mean().item()
    assert abs(d_top - d_dense) / d_dense < 0.05, (d_top, d_dense)


def test_student_learns_from_cached_targets(splits: dict[str, BlockFile], teacher: torch.nn.Module, tmp_path: Path) -> None:
    cache = compute_targets(teacher, splits["train"], tmp_path / "t.parquet", TargetFormat("topk", 257, CONTEXT, 16))
    config = LMTrainConfig(alpha=0.5, temperature=2.0, lr=3e-3, batch_size=16, steps_per_epoch=25, seed=0)

    def run() -> tuple[LMTrainer, list[dict[str, float]]]:
        model = build_lm("transformer", {"n_layers": 1, "d_model": 32, "n_heads": 2}, vocab_size=257, context=CONTEXT,
                         seed=config.seed)
        trainer = LMTrainer(model, splits["train"], splits["val"], splits["test"], config, teacher=cache, device="cpu")
        return trainer, [trainer.step(), trainer.step()]

    trainer, history = run()
    assert history[1]["val_loss"] < history[0]["val_loss"]
    assert set(history[0]) >= {"train_loss", "val_loss", "test_loss", "val_perplexity", "test_perplexity",
                               "val_accuracy", "test_accuracy", "seconds"}
    assert history[0]["val_perplexity"] == pytest.approx(math.exp(history[0]["val_loss"]))
    # the seed pairs runs: the same config trains identically; a checkpoint resumes to the same state
    again, history2 = run()
    assert history2[1]["val_loss"] == history[1]["val_loss"]
    resumed = LMTrainer(build_lm("transformer", {"n_layers": 1, "d_model": 32, "n_heads": 2}, vocab_size=257,
                                 context=CONTEXT, seed=99), splits["train"], splits["val"], None, config, teacher=cache,
                        device="cpu")
    resumed.load_state_dict(trainer.state_dict())
    assert resumed.epoch == 2 and evaluate(resumed.model, splits["val"]) == evaluate(trainer.model, splits["val"])


def test_hf_gpt2_from_config_trains_one_epoch(splits: dict[str, BlockFile]) -> None:
    model = build_lm("hf-config", {"model_type": "gpt2", "n_layer": 1, "n_embd": 32, "n_head": 2}, vocab_size=257,
                     context=CONTEXT, seed=0)
    assert model.vocab_size == 257 and model.max_context == CONTEXT
    before = evaluate(model, splits["val"])[0]
    trainer = LMTrainer(model, splits["train"], splits["val"], splits["test"],
                        LMTrainConfig(alpha=1, lr=3e-3, batch_size=16, steps_per_epoch=20), device="cpu")
    metrics = trainer.step()
    assert math.isfinite(metrics["train_loss"]) and metrics["val_loss"] < before
