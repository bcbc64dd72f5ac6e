"""kdtune on a real two-node Ray cluster on this machine, with PostgreSQL and an S3 server on loopback.

The cluster: a head and a worker node, each started by ``ray start`` in its own processes (1 CPU, 2 GB of
logical memory and 200 MB of object store each, no usage stats, ``RAY_AUTH_MODE=disabled``), each with its
own ``--temp-dir`` under one short folder, so that the worker node can be found and killed by its folder.
Optuna uses a real PostgreSQL (the ``postgres_url`` fixture). The teacher-logit cache (``--cache-dir``) and
Tune's trial checkpoints (``--tune-storage``) go to a moto S3 server, both as ``s3://`` URIs whose query names the
loopback endpoint. The study folder (``--out``) is local to the driver, as on a real cluster.

Nothing leaves 127.0.0.1:
- ``ray start --node-ip-address=127.0.0.1`` alone is not enough: Ray's CLI replaces a loopback address by the
  machine's outward one (``resolve_ip_for_localhost``, which asks "which interface routes to 8.8.8.8").
  The head and every driver run with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, Ray's switch under which the
  local address is 127.0.0.1. A joining node is refused under that switch, so the worker node's ``ray start``
  runs through a three-line launcher that keeps the address it is given (``WORKER_LAUNCHER``);
- the head's dashboard process probes cloud metadata addresses (``docs/architecture.md``, Ray on one machine):
  every node runs with ``http_proxy`` pointed at a closed loopback port and ``no_proxy=localhost,127.0.0.1``;
- AWS: fake static credentials, an explicit region, ``AWS_EC2_METADATA_DISABLED=true``.

Each node gets the S3 credentials in its environment, as an instance profile or a Kubernetes Secret gives them
to every node of a real cluster: kdtune forwards the region and the cache location to its workers, never secrets.

Run: .venv/bin/python -m pytest -q tests/test_cluster.py   (about 3-4 minutes on 2 cores)
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import require_service
from conftest import tiny_study_spec
from processes import kill_processes_mentioning
from processes import start_kdtune
from processes import wait_for

from kdtune.records.results import read_results
from kdtune.records.results import read_trials
from kdtune.spec.rules import trials_per_condition


pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

BUCKET = "kdtune-cluster"
REGION = "us-east-1"
NODE_MEMORY = str(2 * 1000**3)  # logical memory per node: each node would otherwise claim the whole machine's
OBJECT_STORE = str(200 * 1000**2)
DEAD_PROXY = "http://127.0.0.1:9"
RAY_CLI = [sys.executable, "-m", "ray.scripts.scripts"]  # `ray ...` of this interpreter's Ray
#: `ray start` for a node that joins the cluster, keeping --node-ip-address=127.0.0.1 as given (see above).
WORKER_LAUNCHER = """
import sys
import ray._private.services as services
services.resolve_ip_for_localhost = lambda host: host
from ray.scripts.scripts import main
sys.argv = ["ray", *sys.argv[1:]]
main()
"""
#: Prints the cluster's alive nodes as JSON, from a driver of its own.
NODES_SCRIPT = """
import json, sys, ray
ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False, logging_level="ERROR")
print(json.dumps([{"id": n["NodeID"], "head": "node:__internal_head__" in n["Resources"]}
                  for n in ray.nodes() if n["Alive"]]))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dashboard_available() -> bool:
    from ray._private.utils import get_dashboard_dependency_error

    return get_dashboard_dependency_error() is None


@dataclass
class Cluster:
    """The running cluster and its services, and the environment every process of the test gets."""

    root: Path
    port: int
    s3: str  # host:port of the S3 server
    postgres_url: str
    node_env: dict[str, str]  # `ray start` (and so every Ray process of a node)
    driver_env: dict[str, str]  # kdtune drivers, `ray job submit`
    dashboard_port: int | None
    head_dir: Path = field(init=False)
    worker_dir: Path | None = None
    workers_started: int = 0

    def __post_init__(self) -> None:
        self.head_dir = self.root / "head"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def s3_uri(self, prefix: str) -> str:
        return f"s3://{BUCKET}/{prefix}?endpoint_override={self.s3}&scheme=http&region={REGION}"

    def filesystem(self) -> Any:
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(access_key="kdtune-test", secret_key="kdtune-test-secret", region=REGION,
                                 endpoint_override=self.s3, scheme="http", allow_bucket_creation=True)

    def objects(self, prefix: str) -> dict[str, tuple[int, int]]:
        """Every object under ``s3://BUCKET/prefix``: path -> (size, mtime in ns)."""
        import pyarrow.fs as pafs

        infos = self.filesystem().get_file_info(pafs.FileSelector(f"{BUCKET}/{prefix}", recursive=True,
                                                                  allow_not_found=True))
        return {i.path: (i.size, i.mtime_ns) for i in infos if i.type == pafs.FileType.File}

    # -- nodes ---------------------------------------------------------------------------------------------

    def start_head(self) -> None:
        args = ["--head", f"--port={self.port}", "--node-ip-address=127.0.0.1", "--disable-usage-stats",
                "--num-cpus=1", f"--memory={NODE_MEMORY}", f"--object-store-memory={OBJECT_STORE}",
                f"--temp-dir={self.head_dir}",
                # Ray's default agent port (52365) is taken by the test session's own local Ray: without an
                # agent of its own the head's Jobs API answers "No available agent".
                f"--dashboard-agent-listen-port={_free_port()}"]
        if self.dashboard_port is None:
            args.append("--include-dashboard=false")
        else:  # the Jobs API lives in the dashboard
            args += ["--include-dashboard=true", "--dashboard-host=127.0.0.1",
                     f"--dashboard-port={self.dashboard_port}"]
        env = {**self.node_env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        self._ray_start([*RAY_CLI, "start", *args], env, "head")

    def start_worker(self) -> None:
        self.workers_started += 1
        self.worker_dir = self.root / f"worker{self.workers_started}"
        args = [f"--address={self.address}", "--node-ip-address=127.0.0.1", "--disable-usage-stats",
                "--num-cpus=1", f"--memory={NODE_MEMORY}", f"--object-store-memory={OBJECT_STORE}",
                f"--temp-dir={self.worker_dir}", f"--dashboard-agent-listen-port={_free_port()}"]
        self._ray_start([sys.executable, "-c", WORKER_LAUNCHER, "start", *args], self.node_env, "worker")
        wait_for(lambda: len(self.nodes()) == 2, timeout=120, what="the worker node to join")

    def kill_worker(self) -> int:
        """SIGKILL every process of the worker node (raylet, its agents, its trial workers)."""
        assert self.worker_dir is not None
        killed = kill_processes_mentioning(str(self.worker_dir))
        self.worker_dir = None
        return killed

    def ensure_two_nodes(self) -> None:
        if self.worker_dir is None or len(self.nodes()) < 2:
            if self.worker_dir is not None:
                self.kill_worker()
            self.start_worker()

    def nodes(self) -> list[dict[str, Any]]:
        result = subprocess.run([sys.executable, "-c", NODES_SCRIPT, self.address], capture_output=True,
                                text=True, timeout=120, env=self.driver_env)
        assert result.returncode == 0, result.stderr[-2000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    @property
    def head_id(self) -> str:
        return _node_id(self.head_dir)

    @property
    def worker_id(self) -> str:
        assert self.worker_dir is not None
        return _node_id(self.worker_dir)

    def _ray_start(self, command: list[str], env: dict[str, str], label: str) -> None:
        result = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
        assert result.returncode == 0, f"ray start ({label}) failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"

    # -- drivers -------------------------------------------------------------------------------------------

    def write_spec(self, name: str, **sections: Any) -> Path:
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(tiny_study_spec(name, **sections).to_dict()))
        return path

    def run_args(self, spec: Path, out: Path, *, storage: bool = True, cache: str | None = "cache",
                 tune: str | None = "tune") -> list[str]:
        """`kdtune run` against the cluster; each shared location can be left out or replaced by a path."""
        args = ["run", str(spec), "--address", self.address, "--out", str(out), "--no-progress"]
        if storage:
            args += ["--storage", self.postgres_url]
        if cache is not None:
            args += ["--cache-dir", cache if cache.startswith("/") else self.s3_uri(cache)]
        if tune is not None:
            args += ["--tune-storage", tune if tune.startswith("/") else self.s3_uri(f"{tune}/{out.name}")]
        return args

    def start_driver(self, args: list[str], name: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.root / f"{name}.log"
        return start_kdtune(args, self.root / "drivers", log, extra_env=self.driver_env), log


def _node_id(temp_dir: Path) -> str:
    """A node's ID, from the port files Ray writes into its session folder (``*_port_<node id>``)."""
    ids = {p.name.rsplit("_", 1)[1] for p in (temp_dir / "session_latest").glob("*_port_*")}
    assert len(ids) == 1, f"{temp_dir}: expected the files of one node, found {ids}"
    return ids.pop()


@pytest.fixture(scope="module")
def s3_server(sandbox: Path) -> Iterator[str]:
    """moto's standalone S3 server on 127.0.0.1, in its own process; yields ``host:port``."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        require_service("moto[server] is not installed (pip install 'moto[server]')")
    port = _free_port()
    log = Path(tempfile.mkdtemp(prefix="moto-", dir=sandbox)) / "moto.log"
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
                            env={k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")})

    def up() -> bool:
        try:
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                    f"http://127.0.0.1:{port}/", timeout=2):
                return True
        except OSError:
            return False

    try:
        wait_for(up, timeout=60, what="moto's S3 server", proc=proc, log=log)  # type: ignore[arg-type]
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def cluster(sandbox: Path, s3_server: str, postgres_url: str) -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="cl-", dir=sandbox))
    aws = {"AWS_ACCESS_KEY_ID": "kdtune-test", "AWS_SECRET_ACCESS_KEY": "kdtune-test-secret",
           "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true"}
    base = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and k != "RAY_ADDRESS"}
    common = {**base, **aws, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
              "no_proxy": "localhost,127.0.0.1", "NO_PROXY": "localhost,127.0.0.1"}
    node_env = {**common, **{v: DEAD_PROXY for v in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY")},
                # Optuna's URL reaches a Ray Job's driver through the head's environment, as in cluster/README.md.
                "KDTUNE_STORAGE": postgres_url}
    driver_env = {**common, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    c = Cluster(root=root, port=_free_port(), s3=s3_server, postgres_url=postgres_url, node_env=node_env,
                driver_env=driver_env, dashboard_port=_free_port() if _dashboard_available() else None)
    c.filesystem().create_dir(BUCKET)
    try:
        c.start_head()
        c.start_worker()
        yield c
    finally:
        for _ in range(2):  # a dying raylet can start a worker in between: sweep twice
            kill_processes_mentioning(str(root))
            time.sleep(0.5)
        shutil.rmtree(root, ignore_errors=True)


def _finish(proc: subprocess.Popen[bytes], log: Path, timeout: float = 600) -> str:
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"the driver did not finish in {timeout}s:\n{log.read_text()[-3000:]}") from None
    text = log.read_text()
    assert code == 0, f"driver exited {code}:\n{text[-4000:]}"
    return text


def _result_keys(study_dir: Path) -> list[tuple[str, int, int]]:
    rows = read_results(study_dir)
    return list(zip(*(rows.column(k).to_pylist() for k in ("trial_id", "seed", "epoch"))))


# ----------------------------------------------------------------------------------------------------------
# a. trials on both nodes, one cache shared through S3


def test_study_runs_on_both_nodes_and_shares_one_cache(cluster: Cluster) -> None:
    cluster.ensure_two_nodes()
    conditions = {"noise_level": [0.0, 0.2]}
    spec = cluster.write_spec("cl-both", conditions=conditions, budget={"trials_per_condition": 1, "repeats": 2})
    out = cluster.root / "cl-both"
    proc, log = cluster.start_driver(cluster.run_args(spec, out), "cl-both")
    _finish(proc, log)

    rows = read_results(out).to_pylist()
    nodes = {r["node_id"] for r in rows}
    assert nodes == {cluster.head_id, cluster.worker_id}, "trials ran on both nodes, and only there"
    trials = read_trials(out).to_pylist()
    assert len(trials) == 2 * trials_per_condition(tiny_study_spec("cl-both", budget={"trials_per_condition": 1}))
    assert {t["state"] for t in trials} <= {"COMPLETE", "PRUNED"}
    per_condition = collections.defaultdict(set)
    for r in rows:
        per_condition[r["condition"]].add(r["node_id"])
    assert set(per_condition) == {"noise_level=0.0", "noise_level=0.2"}

    # Built once: one teacher checkpoint and one logits entry per condition, nothing else, on S3.
    teachers = json.loads((out / "teachers.json").read_text())
    assert {k: v["cache_hit"] for k, v in teachers.items()} == {"noise_level=0.0": False, "noise_level=0.2": False}
    cache = cluster.objects("cache")
    groups = collections.Counter(tuple(p.split("/")[2:4]) for p in cache)
    teacher_keys = {key for kind, key in groups if kind == "teachers"}
    logits_keys = {key for kind, key in groups if kind == "logits"}
    assert logits_keys == {t["cache_key"] for t in teachers.values()}
    assert len(teacher_keys) == 2 and all(groups[("teachers", k)] == 2 for k in teacher_keys)  # sidecar + weights
    assert all(groups[("logits", k)] == 3 for k in logits_keys)  # train, val, test
    # Tune's checkpoints went to S3 too, not to the study folder on the driver.
    assert any(p.endswith("/students.pt") for p in cluster.objects("tune/cl-both"))
    assert not (out / "tune").exists()

    # A second study against the same cache: every condition's entry is read, nothing is built or rewritten,
    # and its trials again run on both nodes (the first two trials start at once, one per node's CPU).
    spec2 = cluster.write_spec("cl-again", conditions=conditions, budget={"trials_per_condition": 1, "repeats": 2},
                               student={"arch": "mlp", "epochs": 2, "kwargs": {"widths": [16]}, "lr": 3e-3})
    out2 = cluster.root / "cl-again"
    proc, log = cluster.start_driver(cluster.run_args(spec2, out2), "cl-again")
    _finish(proc, log)
    again = json.loads((out2 / "teachers.json").read_text())
    assert {k: (v["cache_hit"], v["cache_key"]) for k, v in again.items()} == \
        {k: (True, v["cache_key"]) for k, v in teachers.items()}
    assert cluster.objects("cache") == cache
    assert {r["node_id"] for r in read_results(out2).to_pylist()} == {cluster.head_id, cluster.worker_id}
    study = json.loads((out2 / "study.json").read_text())
    assert study["storage_url"] == cluster.postgres_url and not (out2 / "optuna.db").exists()


# ----------------------------------------------------------------------------------------------------------
# c. what one node cannot share is refused on a cluster, before anything is written


@pytest.mark.parametrize(("case", "expected"), [
    ("sqlite", ("SQLite storage cannot be shared", "--storage postgresql://")),
    ("local cache", ("--cache-dir", "s3://")),
    ("local tune storage", ("--tune-storage", "s3://")),
])
def test_refuses_what_one_node_cannot_share(cluster: Cluster, case: str, expected: tuple[str, str]) -> None:
    cluster.ensure_two_nodes()
    spec = cluster.write_spec("cl-refused")
    out = cluster.root / f"refused-{case.replace(' ', '-')}"
    local = str(cluster.root / "node-local")
    args = {"sqlite": cluster.run_args(spec, out, storage=False),
            "local cache": cluster.run_args(spec, out, cache=local),
            "local tune storage": cluster.run_args(spec, out, tune=None)}[case]
    result = subprocess.run([sys.executable, "-m", "kdtune", *args], capture_output=True, text=True, timeout=300,
                            env={**cluster.driver_env, "RAY_TMPDIR": str(cluster.root / "drivers")})
    assert result.returncode in (1, 2), result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("kdtune: error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert all(text in errors[0] for text in expected), errors[0]
    assert "this Ray cluster has 2 nodes" in errors[0]
    assert not (out / "study.json").exists(), "a refused run must leave nothing that blocks the corrected command"


# ----------------------------------------------------------------------------------------------------------
# d. the same study as a Ray Job


def test_ray_job_submit_runs_a_study(cluster: Cluster) -> None:
    if cluster.dashboard_port is None:
        require_service("`ray job submit` needs the Jobs API, which runs in Ray's dashboard; its dependencies "
                        "(pip install 'ray[default]') are not installed here. The command is in cluster/README.md")
    cluster.ensure_two_nodes()
    spec = cluster.write_spec("cl-job", conditions={"noise_level": [0.1]},
                              budget={"trials_per_condition": 1, "repeats": 2},
                              student={"arch": "mlp", "epochs": 2, "kwargs": {"widths": [16]}, "lr": 3e-3})
    out = cluster.root / "cl-job"
    # As documented: no secret on the command line (Optuna's URL comes from the head's KDTUNE_STORAGE), and
    # --address auto (a job's driver finds its cluster through RAY_ADDRESS).
    entrypoint = [sys.executable, "-m", "kdtune", "run", str(spec), "--address", "auto", "--out", str(out),
                  "--no-progress", "--cache-dir", cluster.s3_uri("cache"),
                  "--tune-storage", cluster.s3_uri("tune/cl-job")]
    deadline = time.time() + 360  # the dashboard agent can take minutes to register on a loaded machine
    for attempt in range(1000):
        # `ray job submit` waits for the job and streams its output; it exits non-zero if the job fails.
        submission = f"kdtune-cl-job-{attempt}"
        result = subprocess.run([*RAY_CLI, "job", "submit", "--address", f"http://127.0.0.1:{cluster.dashboard_port}",
                                 "--submission-id", submission, "--", *entrypoint],
                                capture_output=True, text=True, timeout=600, env=cluster.driver_env)
        output = result.stdout + result.stderr
        # Right after start, the Jobs API can answer before the head's dashboard agent has registered.
        if result.returncode == 0 or "No available agent" not in output or time.time() > deadline:
            break
        time.sleep(3)
    assert result.returncode == 0, output[-4000:]
    from ray.job_submission import JobStatus
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(f"http://127.0.0.1:{cluster.dashboard_port}")
    assert client.get_job_status(submission) == JobStatus.SUCCEEDED, client.get_job_logs(submission)[-4000:]
    study = json.loads((out / "study.json").read_text())
    assert study["storage_url"] == cluster.postgres_url and study["finished_at"] is not None
    budget = tiny_study_spec("cl-job", budget={"trials_per_condition": 1})
    assert read_trials(out).num_rows == trials_per_condition(budget)


# ----------------------------------------------------------------------------------------------------------
# b. the worker node dies mid-study (last: it leaves the cluster with one node until a test restarts it)


def test_worker_node_killed_mid_study_loses_and_duplicates_nothing(cluster: Cluster) -> None:
    cluster.ensure_two_nodes()
    epochs, repeats = 50, 2
    spec_path = cluster.write_spec("cl-kill", conditions={"noise_level": [0.1]}, scheduler={"type": "fifo"},
                                   budget={"trials_per_condition": 1, "repeats": repeats},
                                   student={"arch": "mlp", "epochs": epochs, "kwargs": {"widths": [64]},
                                            "lr": 3e-3, "batch_size": 16})
    spec = tiny_study_spec("cl-kill", budget={"trials_per_condition": 1, "repeats": repeats})
    out = cluster.root / "cl-kill"
    worker, head = cluster.worker_id, cluster.head_id
    proc, log = cluster.start_driver(cluster.run_args(spec_path, out), "cl-kill")
    victim: dict[str, Any] = {}

    def worker_trial_half_done() -> bool:
        if not (out / "results.parquet").is_dir():
            return False
        for trial_id, epoch, node, state in zip(*(read_results(out).column(k).to_pylist()
                                                  for k in ("trial_id", "epoch", "node_id", "trial_state"))):
            if node == worker and state == "RUNNING" and epoch <= epochs // 2:
                victim.update(trial_id=trial_id, epoch=epoch)
                return True
        return False

    try:
        wait_for(worker_trial_half_done, timeout=400, what="a trial in its first half on the worker node",
                 proc=proc, log=log)
        killed = cluster.kill_worker()
    except BaseException:
        proc.kill()
        raise
    assert killed >= 1
    _finish(proc, log)

    trials = read_trials(out).to_pylist()
    assert len(trials) == trials_per_condition(spec), "no trial lost, none added"
    assert len({t["trial_id"] for t in trials}) == len(trials)
    assert {t["state"] for t in trials} <= {"COMPLETE", "PRUNED"}, [(t["state"], t["error"]) for t in trials]
    keys = _result_keys(out)
    assert len(keys) == len(set(keys)), "no (trial_id, seed, epoch) row twice"
    per_trial = collections.Counter(k[0] for k in keys)
    assert all(per_trial[t["trial_id"]] == repeats * t["epochs_done"] for t in trials), "no epoch row lost"
    assert all(t["epochs_done"] == epochs for t in trials if t["state"] == "COMPLETE")

    # The results say which trial was retried, and where it went on.
    retried = {t["trial_id"]: t for t in trials if t["restarts"] >= 1}
    assert victim["trial_id"] in retried, (victim, [(t["trial_id"], t["restarts"], t["node_id"]) for t in trials])
    assert retried[victim["trial_id"]]["node_id"] == head
    rows = [r for r in read_results(out).to_pylist() if r["trial_id"] == victim["trial_id"]]
    assert {r["node_id"] for r in rows if r["attempt"] == 0} == {worker}
    assert {r["node_id"] for r in rows if r["attempt"] >= 1} == {head}
    assert max(r["epoch"] for r in rows if r["attempt"] == 0) < epochs, "the kill landed mid-trial"
