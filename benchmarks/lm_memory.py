"""Peak memory of the language task's beyond-memory path at 1x and 4x the corpus, each in a fresh process.

Each run is a child process (``--child``) that does, on the byte tokenizer with context 64:

1. **corpus**: the corpus's first pass (:class:`kdtune.tasks.language.corpus.Corpus`: count, fingerprint, checks);
2. **blocks**: :func:`kdtune.tasks.language.blocks.build_splits` (the second pass: split by document, tokens streamed
   into the three splits' Parquet row groups);
3. **targets**: a random-init teacher's top-k targets (``--top-k``, default 32) for every training block, written
   through the codec by :func:`kdtune.tasks.language.train.compute_targets`, batch by batch;
4. **epoch**: one epoch of a small student (:class:`kdtune.tasks.language.train.LMTrainer`) over every training
   block (``--steps`` caps it), its targets read from the Parquet cache one row group at a time, then its
   evaluation on 64 validation blocks.

The corpus is the default one (``python-docs``) repeated to ``--size-mb`` MiB of UTF-8 text (1x) and to four
times that (4x), given in one of two ways (``--sources``; default ``stream``), both read by a
:class:`~kdtune.tasks.language.corpus.Corpus`:

* ``stream``: documents generated on demand from the default corpus's list, so no file is read;
* ``txt``: the text written to a ``.txt`` file first, then streamed from it by
  :func:`kdtune.tasks.language.corpus.load_corpus`, as a user's corpus is (256 KiB at a time, split on blank
  lines; never held whole).

Each child samples its own /proc/self/status every 20 ms (the peak of RssAnon, the process's own heap, and of
RssFile, pages of files mapped into the process: its shared libraries, since the blocks and targets are read with
plain reads, not mapped) and reports them per phase; the parent reads the child's peak RSS (ru_maxrss of
``os.wait4``: anonymous and file pages together). The last line is the ratio of the 4x peak to the 1x peak (flat
is 1.0) for each source.

    python benchmarks/lm_memory.py                          # 2 and 8 MiB, streamed: about 4 minutes on 2 cores
    python benchmarks/lm_memory.py --sources stream,txt --json out.json
"""

from __future__ import annotations

import os


os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402


sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import load_average  # noqa: E402


CONTEXT = 64
VOCAB = 257
MB = 2**20


def main() -> None:
    args = _parse()
    if args.child:
        _child(args)
        return
    print(f"start: load average {load_average()} on {os.cpu_count()} cores")
    runs: list[dict[str, Any]] = []
    for source in args.sources.split(","):
        for scale in (1, 4):
            work = Path(tempfile.mkdtemp(prefix="kdtune-lm-memory-"))
            try:
                runs.append(_run(source, scale, args, work))
            finally:
                shutil.rmtree(work, ignore_errors=True)
            r = runs[-1]
            print(f"{source} {scale}x ({r['text_mb']:.1f} MB of text, {r['train_tokens']:,} training tokens, blocks "
                  f"{r['blocks_mb']:.1f} MB, targets {r['targets_mb']:,.0f} MB on disk; {r['seconds']:.0f} s; load "
                  f"{r['load']}): peak RSS {r['maxrss_mb']:,.0f} MB; after imports {r['baseline_anon_mb']:.0f} MB anon; "
                  "peak anon / file per phase: "
                  + ", ".join(f"{p} {v['anon_mb']:,.0f} / {v['file_mb']:,.0f}" for p, v in r["phases"].items()))
    ratios = {}
    for source in args.sources.split(","):
        one, four = (next(r for r in runs if r["source"] == source and r["scale"] == s) for s in (1, 4))
        ratios[source] = {"maxrss": four["maxrss_mb"] / one["maxrss_mb"],
                          "anon": four["peak_anon_mb"] / one["peak_anon_mb"],
                          "anon_above_imports": (four["peak_anon_mb"] - four["baseline_anon_mb"])
                          / (one["peak_anon_mb"] - one["baseline_anon_mb"])}
    end = load_average()
    print(f"end: load average {end}")
    if args.json:
        Path(args.json).write_text(json.dumps({"benchmark": "lm_memory", "args": vars(args), "runs": runs,
                                               "ratio_4x_over_1x": ratios, "load_average_end": end}, indent=2))
    print("lm memory, 4x / 1x corpus: " + "; ".join(
        f"{source} peak RSS {r['maxrss']:.2f}x, peak anon {r['anon']:.2f}x ({r['anon_above_imports']:.2f}x above imports)"
        for source, r in ratios.items()) + f" (flat = 1.00; {args.size_mb:g} and {4 * args.size_mb:g} MB of text)")


def _run(source: str, scale: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One child process; its report and peak RSS."""
    command = [sys.executable, __file__, "--child", "--source", source, "--size-mb", str(args.size_mb * scale),
               "--work", str(work), "--top-k", str(args.top_k), "--batch-size", str(args.batch_size)]
    if args.steps:
        command += ["--steps", str(args.steps)]
    if source == "txt":
        _write_txt(work / "corpus.txt", args.size_mb * scale)
    load = load_average()
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"child {source} {scale}x failed with exit code {child.returncode}")
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return {**report, "source": source, "scale": scale, "load": load, "seconds": time.perf_counter() - start,
            "maxrss_mb": usage.ru_maxrss / 1024}  # KiB on Linux


def repeated_documents(size_mb: float) -> Callable[[], Iterator[str]]:
    """The default corpus's documents repeated to about ``size_mb`` of text, each pass generating them anew."""
    from kdtune.tasks.language.corpus import default_corpus

    base = default_corpus()
    count = max(3, round(len(base) * size_mb * MB / sum(len(doc.encode("utf-8")) for doc in base)))
    return lambda: (base[i % len(base)] for i in range(count))


def _write_txt(path: Path, size_mb: float) -> None:
    with path.open("w", encoding="utf-8") as f:
        for doc in repeated_documents(size_mb)():
            f.write(doc.replace("\n\n", "\n") + "\n\n")  # one paragraph per document: the .txt reader splits on blank lines


class _Sampler:
    """Peak RssAnon and RssFile (MB) of this process since the last :meth:`phase`, sampled every 20 ms."""

    def __init__(self) -> None:
        self.anon = self.file = 0.0
        self.phases: dict[str, dict[str, float]] = {}
        threading.Thread(target=self._loop, daemon=True).start()

    @staticmethod
    def now() -> tuple[float, float]:
        fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
        return int(fields["RssAnon"].split()[0]) / 1024, int(fields["RssFile"].split()[0]) / 1024

    def _loop(self) -> None:
        while True:
            anon, file = self.now()
            self.anon, self.file = max(self.anon, anon), max(self.file, file)
            time.sleep(0.02)

    def phase(self, name: str) -> None:
        anon, file = self.now()
        self.phases[name] = {"anon_mb": max(self.anon, anon), "file_mb": max(self.file, file)}
        self.anon, self.file = anon, file


def _child(args: argparse.Namespace) -> None:
    sampler = _Sampler()
    import torch

    from kdtune.tasks.language.blocks import build_splits
    from kdtune.tasks.language.cache_codec import TargetFile
    from kdtune.tasks.language.cache_codec import TargetFormat
    from kdtune.tasks.language.corpus import Corpus
    from kdtune.tasks.language.corpus import load_corpus
    from kdtune.tasks.language.models import build_lm
    from kdtune.tasks.language.tokenizer import ByteTokenizer
    from kdtune.tasks.language.train import LMTrainConfig
    from kdtune.tasks.language.train import LMTrainer
    from kdtune.tasks.language.train import compute_targets

    torch.set_num_threads(1)
    work = Path(args.work)
    baseline, _ = sampler.now()
    sampler.phase("imports")
    if args.source == "stream":
        docs, text_mb = Corpus("python-docs, repeated", repeated_documents(args.size_mb)), args.size_mb
    else:
        docs, text_mb = load_corpus(work / "corpus.txt"), (work / "corpus.txt").stat().st_size / MB
    sampler.phase("corpus")
    files = build_splits(docs, ByteTokenizer(), work / "blocks", context=CONTEXT, seed=0)
    del docs
    sampler.phase("blocks")
    teacher = build_lm("transformer", {"n_layers": 1, "d_model": 32, "n_heads": 2}, vocab_size=VOCAB, context=CONTEXT, seed=0)
    cache = compute_targets(teacher, files["train"], work / "targets.parquet", TargetFormat("topk", VOCAB, CONTEXT, args.top_k),
                            device="cpu")
    del cache, teacher
    sampler.phase("targets")
    student = build_lm("transformer", {"n_layers": 1, "d_model": 32, "n_heads": 2}, vocab_size=VOCAB, context=CONTEXT, seed=1)
    config = LMTrainConfig(alpha=0.5, batch_size=args.batch_size, steps_per_epoch=args.steps, eval_blocks=64, seed=0)
    trainer = LMTrainer(student, files["train"], files["val"], None, config,
                        teacher=TargetFile(work / "targets.parquet"), device="cpu")
    metrics = trainer.step()
    sampler.phase("epoch")
    train = files["train"]
    print(json.dumps({
        "text_mb": text_mb, "train_tokens": train.num_tokens, "train_blocks": train.num_blocks,
        "steps": args.steps or -(-train.num_blocks // args.batch_size),
        "blocks_mb": sum(f.path.stat().st_size for f in files.values()) / MB,
        "targets_mb": (work / "targets.parquet").stat().st_size / MB, "train_loss": metrics["train_loss"],
        "baseline_anon_mb": baseline, "phases": sampler.phases,
        "peak_anon_mb": max(p["anon_mb"] for p in sampler.phases.values()),
    }))


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=2.0, help="text of the 1x corpus, in MiB (4x is four times it)")
    parser.add_argument("--sources", default="stream", help="comma-separated: stream, txt")
    parser.add_argument("--top-k", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256, help="student blocks per step")
    parser.add_argument("--steps", type=int, default=None, help="cap on the student's steps (default: a whole epoch)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--source", default="stream", help=argparse.SUPPRESS)
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    main()
