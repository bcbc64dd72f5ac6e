"""Static checks of everything under ``cluster/``: the Ray cluster-launcher config, the KubeRay manifests, the
container recipe and the README that ties them together.

Nothing here deploys, builds or contacts anything. The Ray config is validated against the ``ray-schema.json``
shipped in the installed Ray and by Ray's own ``prepare_config``/``validate_config``. The KubeRay manifests
are checked for the keys and types of KubeRay's ``ray.io/v1`` API. The files are checked against each other
(one image, one Ray version, one bucket) and for secrets.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import py_compile
import re
import shlex
import subprocess
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement


REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
AWS_CONFIG = CLUSTER / "aws" / "ray-cluster.yaml"
FETCH_SECRETS = CLUSTER / "aws" / "fetch_secrets.py"
RAYCLUSTER = CLUSTER / "kuberay" / "raycluster.yaml"
RAYJOB = CLUSTER / "kuberay" / "rayjob.yaml"
KDTUNE_CONFIG = CLUSTER / "kuberay" / "kdtune-config.yaml"
POSTGRES = CLUSTER / "kuberay" / "postgres.yaml"
SECRET_TEMPLATE = CLUSTER / "kuberay" / "secret.template.yaml"
DOCKERFILE = CLUSTER / "docker" / "Dockerfile"
DOCKERIGNORE = CLUSTER / "docker" / "Dockerfile.dockerignore"
README = CLUSTER / "README.md"
DOCKER_README = CLUSTER / "docker" / "README.md"
EXPECTED_FILES = (AWS_CONFIG, FETCH_SECRETS, RAYCLUSTER, RAYJOB, KDTUNE_CONFIG, POSTGRES, SECRET_TEMPLATE,
                  DOCKERFILE, DOCKERIGNORE, README, DOCKER_README)

#: One trial of the shipped GPU setting, {cpu: 1, gpu: 0.25}: 4 students per GPU.
TRIAL_CPU, TRIAL_GPU, TRIALS_PER_GPU = 1, 0.25, 4
#: Where the Dockerfile copies the repository: /opt/kdtune/X in the image is X in this checkout.
IMAGE_REPO_ROOT = "/opt/kdtune"
#: The image user's home on the head, where the driver writes the study folder (--out).
HEAD_HOME = "/home/ray"
#: vCPUs and GPUs of the worker instance types the AWS config may use (extend when adding a type).
AWS_GPU_INSTANCES = {"g6.xlarge": (4, 1), "g5.xlarge": (4, 1), "g6.2xlarge": (8, 1), "g5.2xlarge": (8, 1)}
#: Variables that kdtune forwards to its trials itself (kdtune/study/ray_runtime.py). A Ray Job's runtime env must
#: not set them too: Ray refuses a driver's ray.init() that repeats a job env var ("Failed to merge ...").
FORWARDED_BY_KDTUNE = frozenset({
    "KDTUNE_CACHE_DIR", "KDTUNE_DATA_ROOT", "PYTHONPATH", "AWS_REGION", "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL", "AWS_EC2_METADATA_DISABLED", "RAY_USAGE_STATS_ENABLED", "http_proxy", "HTTP_PROXY",
    "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY",
})
SECRET_ENV_NAMES = frozenset({"KDTUNE_STORAGE", "WANDB_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                              "AWS_SESSION_TOKEN", "POSTGRES_PASSWORD", "PGPASSWORD", "RAY_AUTH_TOKEN"})
PLACEHOLDER = "REPLACE_ME"
SECRET_PATTERNS = {
    "AWS access key ID": re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"),
    "40-hex-digit token (a W&B API key's shape)": re.compile(r"(?<![0-9a-fA-F])[0-9a-f]{40}(?![0-9a-fA-F])"),
    "private key block": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS secret access key": re.compile(r"(?i)aws_secret_access_key\W{1,4}[A-Za-z0-9/+]{40}"),
    "secret variable set to a literal": re.compile(
        r"\b(?:KDTUNE_STORAGE|WANDB_API_KEY|AWS_SECRET_ACCESS_KEY|POSTGRES_PASSWORD|PGPASSWORD)"
        r"=(?![\"']?\$)\S"),
}
#: user:password@ in a URL. The password must be a placeholder: <password>, $VAR / ${VAR}, or
#: (in templates only) REPLACE_ME.
URL_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@'\"`]+:([^\s@'\"`]+)@")


# ----------------------------------------------------------------------------------------------------------
# helpers


def load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def load_one(path: Path) -> dict[str, Any]:
    docs = load_all(path)
    assert len(docs) == 1, f"{path.name}: expected one YAML document, found {len(docs)}"
    return docs[0]


def cluster_files() -> list[Path]:
    return sorted(p for p in CLUSTER.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def yaml_files() -> list[Path]:
    return sorted(CLUSTER.rglob("*.yaml"))


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def uncommented_keys(text: str) -> list[str]:
    """Lines that set a YAML key with neither a comment on the line nor a comment line directly above."""
    lines = text.splitlines()
    tokens = list(yaml.scan(text))
    last_column: dict[int, int] = {}  # where the last one-line token of a line ends: a comment comes after it
    for tok in tokens:
        line = tok.start_mark.line
        if line == tok.end_mark.line:
            last_column[line] = max(last_column.get(line, 0), tok.end_mark.column)
    problems = set()
    for tok, nxt in zip(tokens, tokens[1:]):
        if not (isinstance(tok, yaml.KeyToken) and isinstance(nxt, yaml.ScalarToken)):
            continue
        n = nxt.start_mark.line
        inline = "#" in lines[n][last_column.get(n, len(lines[n])):]
        above = n > 0 and lines[n - 1].lstrip().startswith("#")
        if not (inline or above):
            problems.add(f"line {n + 1}: {lines[n].strip()}")
    return sorted(problems)


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: continuation lines joined as Docker does, comments dropped."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not current and not stripped):
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1]
            continue
        current += raw
        keyword, _, args = current.strip().partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        current = ""
    assert not current, "Dockerfile ends inside a line continuation"
    return instructions


def substitute(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables[m.group(1) or m.group(2)], value)


def dockerfile_args() -> dict[str, str]:
    """Every ARG default (global ones resolved in order, as Docker does)."""
    args: dict[str, str] = {}
    for keyword, value in dockerfile_instructions(DOCKERFILE.read_text()):
        if keyword == "ARG" and "=" in value:
            name, default = value.split("=", 1)
            args[name] = substitute(default.strip("\"'"), args)
    return args


def image_name() -> str:
    """The one image tag, defined by the build command at the top of the Dockerfile."""
    match = re.search(r"docker build -f cluster/docker/Dockerfile -t (\S+) \.", DOCKERFILE.read_text())
    assert match, "the Dockerfile's header must show the build command with its -t tag"
    return match.group(1)


def pyproject_requirement(name: str) -> Requirement:
    text = (REPO / "pyproject.toml").read_text()
    block = text.split("dependencies = [", 1)[1].split("]\n", 1)[0]
    for item in re.findall(r'"([^"]+)"', block):
        req = Requirement(item)
        if req.name == name:
            return req
    raise AssertionError(f"pyproject.toml has no dependency {name}")


def pyproject_version() -> str:
    match = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert match
    return match.group(1)


def ray_cluster_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    yield "raycluster.yaml spec", load_one(RAYCLUSTER)["spec"]
    yield "rayjob.yaml spec.rayClusterSpec", load_one(RAYJOB)["spec"]["rayClusterSpec"]


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod spec in the KubeRay and PostgreSQL manifests."""
    for label, spec in ray_cluster_specs():
        yield f"{label} head", spec["headGroupSpec"]["template"]["spec"]
        for group in spec["workerGroupSpecs"]:
            yield f"{label} worker group {group['groupName']}", group["template"]["spec"]
    for doc in load_all(POSTGRES):
        if doc["kind"] == "StatefulSet":
            yield "postgres.yaml", doc["spec"]["template"]["spec"]


def rayjob_entrypoint() -> list[str]:
    return shlex.split(load_one(RAYJOB)["spec"]["entrypoint"])


def option(tokens: list[str], name: str) -> str:
    assert tokens.count(name) == 1, f"expected exactly one {name} in {tokens}"
    return tokens[tokens.index(name) + 1]


def readme_job_submit() -> list[str]:
    """The `ray job submit ...` command from the README's code block, continuation lines joined."""
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ray job submit"))
    command = ""
    for line in lines[start:]:
        command += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            break
    return shlex.split(command)


def spec_path_in_repo(path: str) -> str:
    """A spec path as the driver sees it (absolute in the image, or relative to working_dir) -> repo path."""
    if path.startswith(IMAGE_REPO_ROOT + "/"):
        path = path[len(IMAGE_REPO_ROOT) + 1:]
    assert not path.startswith("/"), f"{path}: an absolute path outside {IMAGE_REPO_ROOT} is not in the image"
    return path


def load_fetch_secrets() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kdtune_cluster_fetch_secrets", FETCH_SECRETS)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------------------------------------
# every file


def test_every_cluster_file_is_of_a_checked_kind() -> None:
    files = cluster_files()
    known_names, known_suffixes = {"Dockerfile", "Dockerfile.dockerignore"}, {".yaml", ".md", ".py"}
    unchecked = [rel(p) for p in files if p.name not in known_names and p.suffix not in known_suffixes]
    assert unchecked == [], "no check in tests/test_cluster_files.py covers these files"
    missing = [rel(p) for p in EXPECTED_FILES if p not in files]
    assert missing == []
    assert not list(CLUSTER.rglob("*.yml")), "use .yaml (the checks glob *.yaml)"


@pytest.mark.parametrize("path", yaml_files(), ids=rel)
def test_yaml_parses_into_mappings(path: Path) -> None:
    docs = load_all(path)
    assert docs, f"{rel(path)} holds no YAML document"
    assert all(isinstance(doc, dict) and doc for doc in docs)


@pytest.mark.parametrize("path", yaml_files(), ids=rel)
def test_every_yaml_key_has_a_comment(path: Path) -> None:
    assert uncommented_keys(path.read_text()) == []


def test_the_comment_check_can_fail() -> None:
    assert uncommented_keys("a: 1\n# b is commented\nb: 2\nc: '#'  # inline\nd: '#'\n") == ["line 1: a: 1",
                                                                                           "line 5: d: '#'"]


@pytest.mark.parametrize("path", sorted(CLUSTER.rglob("*.py")), ids=rel)
def test_python_files_compile(path: Path, tmp_path: Path) -> None:
    py_compile.compile(str(path), cfile=str(tmp_path / "x.pyc"), doraise=True)


def test_readme_names_only_files_that_exist() -> None:
    named = set(re.findall(r"`((?:aws|kuberay|docker)/[\w./-]+)`", README.read_text()))
    main_files = {"aws/ray-cluster.yaml", "kuberay/rayjob.yaml", "kuberay/raycluster.yaml",
                  "docker/Dockerfile"}
    assert main_files <= named
    assert sorted(p for p in named if not (CLUSTER / p).is_file()) == []


# ----------------------------------------------------------------------------------------------------------
# the Ray cluster launcher config (AWS)


def test_ray_cluster_config_validates_against_rays_schema() -> None:
    import jsonschema
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    config = load_one(AWS_CONFIG)
    jsonschema.validate(config, schema)
    broken = copy.deepcopy(config)
    broken["available_node_types"]["ray.worker.gpu"]["min_worker"] = 0  # misspelt: the schema forbids it
    with pytest.raises(jsonschema.ValidationError, match="min_worker"):
        jsonschema.validate(broken, schema)


def test_ray_cluster_config_passes_rays_own_validation() -> None:
    from ray.autoscaler._private.util import prepare_config
    from ray.autoscaler._private.util import validate_config

    prepared = prepare_config(load_one(AWS_CONFIG))  # defaults from Ray's aws/defaults.yaml; no cloud calls
    validate_config(prepared)
    assert prepared["available_node_types"]["ray.head.default"]["max_workers"] == 0


def test_head_runs_no_trials_and_gpu_workers_fit_four_trials() -> None:
    config = load_one(AWS_CONFIG)
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("CPU") == 0 and head["resources"].get("GPU", 0) == 0
    workers = {name: t for name, t in types.items() if name != config["head_node_type"]}
    assert workers, "no worker node type"
    for name, worker in workers.items():
        res = worker["resources"]
        vcpus, gpus = AWS_GPU_INSTANCES[worker["node_config"]["InstanceType"]]
        assert (res["CPU"], res["GPU"]) == (vcpus, gpus), f"{name} advertises what its instance type lacks"
        assert min(res["CPU"] / TRIAL_CPU, res["GPU"] / TRIAL_GPU) >= TRIALS_PER_GPU * gpus
        assert 0 <= worker["min_workers"] <= worker["max_workers"] <= config["max_workers"]
    assert sum(w["min_workers"] for w in workers.values()) <= config["max_workers"]


def test_every_ray_start_disables_usage_stats() -> None:
    config = load_one(AWS_CONFIG)
    head = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    workers = [c for c in config["worker_start_ray_commands"] if "ray start" in c]
    assert len(head) == 1 and len(workers) == 1
    assert all("--disable-usage-stats" in c for c in head + workers)
    assert "--head" in head[0] and "--autoscaling-config=~/ray_bootstrap_config.yaml" in head[0]
    assert "--address=$RAY_HEAD_IP:6379" in workers[0]


def test_head_reads_its_secrets_from_ssm_and_refuses_to_start_without_them() -> None:
    config = load_one(AWS_CONFIG)
    start = next(c for c in config["head_start_ray_commands"] if "ray start" in c)
    script = f"{IMAGE_REPO_ROOT}/{rel(FETCH_SECRETS)}"
    assert f'kdtune_env="$(python {script})" || exit 1;' in start
    assert start.index("|| exit 1") < start.index("ray start")
    worker_text = json.dumps([config[k] for k in ("worker_start_ray_commands", "worker_setup_commands",
                                                  "setup_commands")])
    assert "fetch_secrets" not in worker_text, "workers get no secrets"


def test_every_node_type_pins_image_profile_and_instance_type() -> None:
    config = load_one(AWS_CONFIG)
    for name, node_type in config["available_node_types"].items():
        node = node_type["node_config"]
        assert node["ImageId"], f"{name}: Ray's built-in default AMI is a CUDA 11 image; set ImageId"
        assert set(node["IamInstanceProfile"]) & {"Name", "Arn"}, f"{name}: no IAM instance profile"
        assert node["InstanceType"]
    types = config["available_node_types"].values()
    profiles = {t["node_config"]["IamInstanceProfile"]["Name"] for t in types}
    assert len(profiles) == 2, "head and workers need different rights (the head launches instances)"


# ----------------------------------------------------------------------------------------------------------
# the KubeRay manifests


def test_kuberay_objects_use_the_ray_io_v1_api() -> None:
    assert (load_one(RAYCLUSTER)["apiVersion"], load_one(RAYCLUSTER)["kind"]) == ("ray.io/v1", "RayCluster")
    assert (load_one(RAYJOB)["apiVersion"], load_one(RAYJOB)["kind"]) == ("ray.io/v1", "RayJob")


def check_start_params(label: str, params: Any) -> None:
    assert isinstance(params, dict), f"{label}: rayStartParams must be a mapping"
    wrong = {k: v for k, v in params.items() if not isinstance(v, str)}
    assert wrong == {}, f"{label}: rayStartParams is map[string]string in KubeRay's CRD; quote these"
    assert params.get("disable-usage-stats") == "true", f"{label}: no --disable-usage-stats"


def check_ray_container(label: str, pod: dict[str, Any]) -> dict[str, Any]:
    containers = pod["containers"]
    assert isinstance(containers, list) and containers, f"{label}: no containers"
    assert containers[0]["image"] == image_name(), f"{label}: KubeRay runs Ray in the first container"
    return containers[0]


@pytest.mark.parametrize(("label", "spec"), list(ray_cluster_specs()),
                         ids=lambda x: x if isinstance(x, str) else "")
def test_ray_cluster_spec_has_the_required_keys(label: str, spec: dict[str, Any]) -> None:
    assert spec["rayVersion"] == dockerfile_args()["RAY_VERSION"]
    assert spec["enableInTreeAutoscaling"] is True, "worker groups start at 0 pods: they need the autoscaler"
    head = spec["headGroupSpec"]
    check_start_params(f"{label} head", head["rayStartParams"])
    assert head["rayStartParams"]["num-cpus"] == "0", "no trial may run on the head"
    check_ray_container(f"{label} head", head["template"]["spec"])
    groups = spec["workerGroupSpecs"]
    assert isinstance(groups, list) and groups
    for group in groups:
        name = group["groupName"]
        assert isinstance(name, str) and name
        counts = [group["minReplicas"], group["replicas"], group["maxReplicas"]]
        assert all(isinstance(c, int) and not isinstance(c, bool) for c in counts), counts
        assert 0 <= counts[0] <= counts[1] <= counts[2], f"{name}: minReplicas <= replicas <= maxReplicas"
        check_start_params(f"{label} {name}", group["rayStartParams"])
        container = check_ray_container(f"{label} {name}", group["template"]["spec"])
        limits, requests = container["resources"]["limits"], container["resources"].get("requests", {})
        gpus = int(limits["nvidia.com/gpu"])
        assert gpus >= 1, f"{name}: GPU workers need an nvidia.com/gpu limit"
        assert int(requests.get("nvidia.com/gpu", gpus)) == gpus, "extended resources need requests == limits"
        cpus = int(group["rayStartParams"]["num-cpus"])
        assert min(cpus / TRIAL_CPU, gpus / TRIAL_GPU) >= TRIALS_PER_GPU * gpus


def test_rayjob_embeds_exactly_the_rayclusters_spec() -> None:
    assert load_one(RAYJOB)["spec"]["rayClusterSpec"] == load_one(RAYCLUSTER)["spec"]


def test_rayjob_cleans_up_after_itself() -> None:
    spec = load_one(RAYJOB)["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    ttl, deadline = spec["ttlSecondsAfterFinished"], spec["activeDeadlineSeconds"]
    retries = spec["backoffLimit"]
    assert all(isinstance(v, int) and not isinstance(v, bool) for v in (ttl, deadline, retries))
    assert 0 <= ttl < 2**31 and 0 < deadline < 2**31 and retries >= 0
    assert spec["submissionMode"] in {"K8sJobMode", "HTTPMode", "InteractiveMode"}


def test_rayjob_entrypoint_runs_kdtune_without_secrets_or_shell_variables() -> None:
    entrypoint = load_one(RAYJOB)["spec"]["entrypoint"]
    tokens = shlex.split(entrypoint)
    assert tokens[:2] == ["kdtune", "run"]
    assert spec_path_in_repo(tokens[2]).startswith("search_spaces/")
    assert "$" not in entrypoint, "K8sJobMode pastes the entrypoint into the submitter's shell (expands $)"
    assert "--storage" not in tokens, "the Optuna URL comes from $KDTUNE_STORAGE on the head"
    assert option(tokens, "--address") == "auto"
    groups = load_one(RAYJOB)["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    limits = [g["template"]["spec"]["containers"][0]["resources"]["limits"] for g in groups]
    gpus = [int(lim["nvidia.com/gpu"]) for lim in limits]
    slots = sum(g["maxReplicas"] * TRIALS_PER_GPU * n for g, n in zip(groups, gpus))
    assert int(option(tokens, "--max-concurrent")) == slots


@pytest.mark.parametrize("source", ["rayjob.yaml entrypoint", "README ray job submit"])
def test_entrypoint_spec_exists_and_its_trials_take_a_quarter_gpu(source: str) -> None:
    tokens = rayjob_entrypoint() if source.startswith("rayjob") else readme_job_submit()
    command = tokens[tokens.index("kdtune"):]
    path = spec_path_in_repo(command[2])
    assert path.startswith("search_spaces/") and path.endswith(".yaml")
    if not (REPO / path).is_file():
        pytest.fail(f"{source} runs {path}, which is not in search_spaces/")
    spec = yaml.safe_load((REPO / path).read_text())
    assert isinstance(spec, dict) and spec.get("name"), f"{path} is not a study spec"
    resources = dict(spec.get("resources", {}))
    for i, token in enumerate(command):
        if token == "--set" and command[i + 1].startswith("resources."):
            key, value = command[i + 1].removeprefix("resources.").split("=", 1)
            resources[key] = yaml.safe_load(value)
    assert (resources.get("cpu"), resources.get("gpu")) == (TRIAL_CPU, TRIAL_GPU), \
        f"{source}: on the GPU cluster, trials ask for cpu {TRIAL_CPU}, gpu {TRIAL_GPU} (--set resources.gpu)"


def test_kubernetes_references_resolve() -> None:
    config_docs = {doc["kind"]: doc for doc in load_all(KDTUNE_CONFIG)}
    template_secrets = {doc["metadata"]["name"]: doc["stringData"] for doc in load_all(SECRET_TEMPLATE)}
    for label, pod in pod_specs():
        if "serviceAccountName" in pod:
            assert pod["serviceAccountName"] == config_docs["ServiceAccount"]["metadata"]["name"], label
        for container in pod["containers"]:
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] == config_docs["ConfigMap"]["metadata"]["name"], label
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    known = template_secrets.get(ref["name"], {})
                    assert ref["key"] in known, f"{label}: {ref} is not in the Secret template"


def test_secrets_reach_only_the_head_and_only_through_secret_refs() -> None:
    for label, pod in pod_specs():
        for container in pod["containers"]:
            env = {e["name"]: e for e in container.get("env", [])}
            for name, entry in env.items():
                if name in SECRET_ENV_NAMES or re.search(r"PASSWORD|TOKEN|SECRET|API_KEY", name):
                    assert "value" not in entry and "secretKeyRef" in entry["valueFrom"], f"{label}: {name}"
            if "head" in label:
                assert {"KDTUNE_STORAGE", "WANDB_API_KEY"} <= set(env), f"{label}: the driver needs them"
            elif "worker" in label:
                driver_secrets = {"KDTUNE_STORAGE", "WANDB_API_KEY"} & set(env)
                assert not driver_secrets, f"{label}: no driver secret on workers"
    config_map = next(doc for doc in load_all(KDTUNE_CONFIG) if doc["kind"] == "ConfigMap")
    assert not SECRET_ENV_NAMES & set(config_map["data"]), "secrets belong in a Secret, not a ConfigMap"
    assert all(isinstance(v, str) for v in config_map["data"].values()), "ConfigMap values must be strings"


# ----------------------------------------------------------------------------------------------------------
# the container recipe


def test_one_image_and_one_ray_version_everywhere() -> None:
    image = image_name()
    args = dockerfile_args()
    cuda = args["TORCH_INDEX_URL"].rstrip("/").rsplit("/", 1)[1]
    assert image.rsplit(":", 1)[1] == f"{pyproject_version()}-ray{args['RAY_VERSION']}-py311-{cuda}"
    assert f"**Image:** `{image}`" in README.read_text()
    assert f"-t {image} ." in DOCKER_README.read_text()
    config = load_one(AWS_CONFIG)
    assert config["docker"]["image"] == image
    assert not {"head_image", "worker_image"} & set(config["docker"])
    assert all("docker" not in t for t in config["available_node_types"].values())
    images = {c["image"] for label, pod in pod_specs() if "postgres" not in label for c in pod["containers"]}
    assert images == {image}
    assert args["RAY_VERSION"] in pyproject_requirement("ray").specifier


def test_dockerfile_base_image_is_a_ray_gpu_image() -> None:
    args = dockerfile_args()
    froms = [v for k, v in dockerfile_instructions(DOCKERFILE.read_text()) if k == "FROM"]
    assert len(froms) == 1
    base = substitute(froms[0], args)
    assert re.fullmatch(rf"rayproject/ray:{re.escape(args['RAY_VERSION'])}-py311-(gpu|cu\d+)", base), base


def test_dockerfile_installs_the_repository_with_pip() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    copies = [shlex.split(v) for k, v in instructions if k == "COPY"]
    copy_repo = [c for c in copies if c[-2:] == [".", IMAGE_REPO_ROOT]]
    assert copy_repo, f"the Dockerfile must COPY the repository (.) to {IMAGE_REPO_ROOT}"
    installs = [shlex.split(v) for k, v in instructions if k == "RUN" and "pip install" in v]
    project = [cmd for cmd in installs if IMAGE_REPO_ROOT in cmd]
    assert len(project) == 1, "one `pip install` of the copied repository"
    assert any(t.startswith("psycopg[binary]") for t in project[0]), "PostgreSQL driver for Optuna"
    assert "-e" not in project[0] and "--editable" not in project[0]


def test_dockerfile_pins_torch_inside_pyprojects_ranges() -> None:
    args = dockerfile_args()
    assert args["TORCH_VERSION"] in pyproject_requirement("torch").specifier
    assert args["TORCHVISION_VERSION"] in pyproject_requirement("torchvision").specifier
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu\d+", args["TORCH_INDEX_URL"])
    runs = [v for k, v in dockerfile_instructions(DOCKERFILE.read_text()) if k == "RUN"]
    torch_install = [r for r in runs if '"torch==${TORCH_VERSION}"' in r]
    assert len(torch_install) == 1 and '--index-url "${TORCH_INDEX_URL}"' in torch_install[0]
    assert runs.index(torch_install[0]) < next(i for i, r in enumerate(runs) if IMAGE_REPO_ROOT + '"' in r), \
        "torch must come first, or pip takes the default wheel from PyPI"


def test_dockerfile_ends_unprivileged_and_keeps_the_launchers_command() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    users = [v for k, v in instructions if k == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "the image must end as a non-root user"
    entrypoints = [v for k, v in instructions if k == "ENTRYPOINT"]
    assert entrypoints in ([], ["[]"]), "the cluster launcher runs `docker run IMAGE bash`: no ENTRYPOINT"
    assert [json.loads(v) for k, v in instructions if k == "CMD"] == [["bash"]]


def test_dockerfile_build_never_starts_ray() -> None:
    runs = [v for k, v in dockerfile_instructions(DOCKERFILE.read_text()) if k == "RUN"]
    assert not [r for r in runs if re.search(r"ray\.init\s*\(|\bray start\b", r)], \
        "ray.init() at build time bakes ~/.ray/auth_token into the image"


def dockerignored(path: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        pattern = pattern.strip("/")
        bare = pattern.removeprefix("**/")
        candidates = [path] + ([path.split("/", i)[-1] for i in range(1, path.count("/") + 1)]
                               if pattern.startswith("**/") else [])
        for candidate in candidates:
            parts = candidate.split("/")
            prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
            if any(fnmatch(p, bare) for p in prefixes):
                return True
    return False


def test_dockerignore_keeps_the_project_and_drops_the_rest() -> None:
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert not [p for p in patterns if p.startswith("!")], "keep the rules simple enough for this check"
    kept = ["pyproject.toml", "README.md", "kdtune/cli.py", "search_spaces/mnist_noise.yaml",
            rel(FETCH_SECRETS)]
    dropped = [".git/HEAD", ".venv/bin/python", "runs/mnist-noise/results.parquet",
               "kdtune/__pycache__/x.pyc",
               "cluster/kuberay/secret.yaml", "deploy/.env", "tests/test_cli.py"]
    assert [p for p in kept if dockerignored(p, patterns)] == []
    assert [p for p in dropped if not dockerignored(p, patterns)] == []


# ----------------------------------------------------------------------------------------------------------
# shared locations, the README's commands


def test_one_cache_and_output_location_everywhere() -> None:
    tokens = rayjob_entrypoint()
    cache, tune, out = option(tokens, "--cache-dir"), option(tokens, "--tune-storage"), option(tokens, "--out")
    bucket = re.fullmatch(r"s3://([a-z0-9.-]+)/.+", cache)
    assert bucket and tune.startswith(f"s3://{bucket.group(1)}/"), (cache, tune)
    assert not tune.startswith(cache.rstrip("/") + "/"), "Tune's checkpoints are not cache entries"
    # The study folder is written by the driver on the head: a local, absolute folder (kdtune refuses a URI).
    assert out.startswith(f"{HEAD_HOME}/") and "://" not in out, out
    config_map = next(doc for doc in load_all(KDTUNE_CONFIG) if doc["kind"] == "ConfigMap")["data"]
    assert config_map["KDTUNE_CACHE_DIR"] == cache
    aws = load_one(AWS_CONFIG)
    assert f"-e KDTUNE_CACHE_DIR={cache}" in aws["docker"]["run_options"]
    regions = {aws["provider"]["region"], config_map["AWS_REGION"], config_map["AWS_DEFAULT_REGION"]}
    regions |= {o.split("=", 1)[1] for o in aws["docker"]["run_options"] if "_REGION=" in o}
    assert len(regions) == 1, f"the bucket has one region: {regions}"
    submit = readme_job_submit()
    assert (option(submit, "--cache-dir"), option(submit, "--tune-storage"), option(submit, "--out")) == \
        (cache, tune, out)


def test_the_study_folder_is_copied_back_from_the_head() -> None:
    out = option(rayjob_entrypoint(), "--out")
    text = README.read_text()
    assert f"ray rsync-down cluster/aws/ray-cluster.yaml {out}/ " in text
    copies = re.findall(r"kubectl cp -c (\S+) \$HEAD:(\S+) ", text)
    head_containers = {c["name"] for label, pod in pod_specs() if label.endswith(" head") for c in pod["containers"]}
    assert len(copies) == 2 and all(c in head_containers and path == out for c, path in copies), copies
    assert f"kubectl cp -c ray-head $HEAD:{out} " in RAYJOB.read_text()
    assert f"ray rsync-down cluster/aws/ray-cluster.yaml {out}/ " in AWS_CONFIG.read_text()
    # The RayJob's cluster must live long enough after the job for that copy.
    assert load_one(RAYJOB)["spec"]["ttlSecondsAfterFinished"] >= 1800
    # /home/ray is the image user's home (the rayproject base image's), where the driver may write.
    workdirs = [v for k, v in dockerfile_instructions(DOCKERFILE.read_text()) if k == "WORKDIR"]
    assert workdirs and workdirs[-1] == HEAD_HOME


@pytest.mark.parametrize("source", ["rayjob.yaml entrypoint", "README job submit"])
def test_commands_parse_with_kdtunes_own_cli(source: str) -> None:
    """Every option of the shipped commands exists in `kdtune run` (a renamed or missing flag fails here)."""
    from kdtune.cli import build_parser

    tokens = rayjob_entrypoint() if source.startswith("rayjob") else readme_job_submit()
    command = tokens[tokens.index("kdtune") + 1:]
    args = build_parser().parse_args(command)
    assert args.command == "run" and args.address == "auto"
    assert args.tune_storage.startswith("s3://") and args.cache_dir.startswith("s3://")
    assert args.storage is None, "Optuna's URL comes from KDTUNE_STORAGE on the head, never the command line"


def test_readme_job_submission_command() -> None:
    tokens = readme_job_submit()
    ray_part, command = tokens[:tokens.index("--")], tokens[tokens.index("--") + 1:]
    assert ray_part[:3] == ["ray", "job", "submit"]
    assert re.fullmatch(r"http://[\w.-]+:8265", option(ray_part, "--address"))
    runtime_env = json.loads(option(ray_part, "--runtime-env-json"))
    assert runtime_env["working_dir"] == "."
    assert {"kdtune", ".venv", ".git", "runs"} <= set(runtime_env["excludes"]), \
        "upload the specs, not a second kdtune (or the virtualenv)"
    env_vars = set(runtime_env.get("env_vars", {}))
    assert not env_vars & SECRET_ENV_NAMES, "a job's runtime env is visible in the dashboard"
    from kdtune.study.ray_runtime import FORWARDED_ENV
    from kdtune.study.ray_runtime import WORKER_MALLOC_ENV

    assert not env_vars & (FORWARDED_BY_KDTUNE | set(FORWARDED_ENV) | set(WORKER_MALLOC_ENV)), \
        "Ray refuses to merge these"
    assert command[:2] == ["kdtune", "run"] and "--storage" not in command
    assert option(command, "--address") == "auto"


def test_readme_labels_the_estimate_and_its_assumptions() -> None:
    text = README.read_text()
    section = text.split("## Estimate", 1)[1].split("\n## ", 1)[0]
    assert "**This is an ESTIMATE, not a measurement.**" in section
    for fact in ("0.6 s", "0.4 s", "30 s", "1.25 s", "24 trials", "3 repeat seeds", "20 student epochs",
                 "3-5x", "4 students", "November 2026", "g6.xlarge $0.8048/h"):
        assert fact in section, fact


# ----------------------------------------------------------------------------------------------------------
# secrets


@pytest.mark.parametrize("path", cluster_files(), ids=rel)
def test_no_secret_values(path: Path) -> None:
    text = path.read_text()
    found = {name: pattern.findall(text) for name, pattern in SECRET_PATTERNS.items()}
    assert {k: v for k, v in found.items() if v} == {}
    template = path.name.endswith(".template.yaml")
    for password in URL_PASSWORD.findall(text):
        ok = password.startswith(("<", "$")) or (template and password == PLACEHOLDER)
        assert ok, f"{rel(path)}: a URL carries the literal password {password[:2]}..."
    if not template:
        assert PLACEHOLDER not in text, f"{PLACEHOLDER} belongs only in *.template.yaml Secret templates"


def test_the_secret_scan_can_fail() -> None:
    assert SECRET_PATTERNS["AWS access key ID"].search("key: AKIAABCDEFGHIJKLMNOP")
    wandb_shaped = "0123456789abcdef" * 2 + "01234567"
    assert SECRET_PATTERNS["40-hex-digit token (a W&B API key's shape)"].search(f"k={wandb_shaped}")
    assert SECRET_PATTERNS["secret variable set to a literal"].search("export WANDB_API_KEY=abc")
    assert not SECRET_PATTERNS["secret variable set to a literal"].search('export WANDB_API_KEY="$KEY"')
    assert URL_PASSWORD.findall("postgresql://kdtune:hunter2@db:5432/kdtune") == ["hunter2"]


def test_kubernetes_secrets_are_templates_of_placeholders() -> None:
    for path in yaml_files():
        for doc in load_all(path):
            if doc.get("kind") != "Secret":
                continue
            assert path.name.endswith(".template.yaml"), f"{rel(path)}: a Secret outside a template"
            assert "data" not in doc, "templates use stringData"
            assert doc["stringData"] and all(PLACEHOLDER in v for v in doc["stringData"].values())
    assert any(doc["kind"] == "Secret" for doc in load_all(SECRET_TEMPLATE))


# ----------------------------------------------------------------------------------------------------------
# cluster/aws/fetch_secrets.py (the head's secret loader)


class FakeSSM:
    """Stands in for boto3's SSM client (a collaborator): answers GetParameters from a dict."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.calls: list[dict[str, Any]] = []

    def get_parameters(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        found = [{"Name": n, "Value": self.values[n]} for n in kwargs["Names"] if n in self.values]
        missing = [n for n in kwargs["Names"] if n not in self.values]
        return {"Parameters": found, "InvalidParameters": missing}


def test_fetch_secrets_prints_exports_that_bash_reads_back_exactly() -> None:
    module = load_fetch_secrets()
    tricky = "postgresql://kdtune:p'a$s w\"d@db:5432/kdtune"
    client = FakeSSM({"/kdtune/optuna-storage-url": tricky, "/kdtune/wandb-api-key": "k"})
    exports = module.render_exports(client, module.DEFAULT_PARAMETERS)
    names = ["/kdtune/optuna-storage-url", "/kdtune/wandb-api-key"]
    assert client.calls == [{"Names": names, "WithDecryption": True}]
    out = subprocess.run(["bash", "-c", 'eval "$(cat)"; printf "%s|%s" "$KDTUNE_STORAGE" "$WANDB_API_KEY"'],
                         input=exports, capture_output=True, text=True, check=True).stdout
    assert out == f"{tricky}|k"


def test_fetch_secrets_skips_an_optional_secret_and_refuses_a_missing_required_one() -> None:
    module = load_fetch_secrets()
    client = FakeSSM({"/kdtune/optuna-storage-url": "u"})
    only_storage = module.render_exports(client, module.DEFAULT_PARAMETERS)
    assert only_storage == "export KDTUNE_STORAGE=u\n"
    with pytest.raises(module.MissingSecret, match="/kdtune/optuna-storage-url"):
        module.render_exports(FakeSSM({"/kdtune/wandb-api-key": "k"}), module.DEFAULT_PARAMETERS)
