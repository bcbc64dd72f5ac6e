"""Print `export NAME='value'` lines for the kdtune driver's secrets, read from AWS SSM Parameter Store.

Used by the head's start command in cluster/aws/ray-cluster.yaml, before `ray start --head`:

    kdtune_env="$(python /opt/kdtune/cluster/aws/fetch_secrets.py)" || exit 1
    eval "$kdtune_env"; ray start --head ...

(The assignment carries the script's exit status; a bare `eval "$(...)"` would hide a failure.)

The secrets reach the Ray processes on the head, and through them the kdtune driver that a Ray Job starts.
They never appear in a file, a command line or the job's metadata. Only the driver needs them: it talks to
Optuna's PostgreSQL and logs to W&B. The workers get neither secret.

Parameters (SecureString; create them once, see cluster/README.md):
    /kdtune/optuna-storage-url  -> KDTUNE_STORAGE  (required: the cluster must not start without it)
    /kdtune/wandb-api-key       -> WANDB_API_KEY   (optional: without it W&B stays offline)

The head's instance profile needs ssm:GetParameters on these names (and kms:Decrypt for their key).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any


#: Environment variable -> (SSM parameter name, required)
DEFAULT_PARAMETERS: dict[str, tuple[str, bool]] = {
    "KDTUNE_STORAGE": ("/kdtune/optuna-storage-url", True),
    "WANDB_API_KEY": ("/kdtune/wandb-api-key", False),
}


class MissingSecret(RuntimeError):
    """A required parameter does not exist or could not be read."""


def render_exports(client: Any, parameters: Mapping[str, tuple[str, bool]]) -> str:
    """Read ``parameters`` in one ``GetParameters`` call; return shell ``export`` lines (values quoted)."""
    names = [name for name, _ in parameters.values()]
    response = client.get_parameters(Names=names, WithDecryption=True)
    values = {p["Name"]: p["Value"] for p in response.get("Parameters", [])}
    lines = []
    for env_name, (param_name, required) in parameters.items():
        if param_name in values:
            lines.append(f"export {env_name}={shlex.quote(values[param_name])}")
        elif required:
            raise MissingSecret(f"SSM parameter {param_name} (for {env_name}) not found or not readable")
    return "".join(line + "\n" for line in lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--region", default=None,
                        help="AWS region (default: $AWS_DEFAULT_REGION / $AWS_REGION)")
    args = parser.parse_args(argv)
    import boto3  # in the image (Ray's autoscaler needs it on an AWS head)

    try:
        sys.stdout.write(render_exports(boto3.client("ssm", region_name=args.region), DEFAULT_PARAMETERS))
    except MissingSecret as exc:
        print(f"fetch_secrets: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
