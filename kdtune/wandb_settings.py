"""W&B settings that need neither Ray nor W&B itself: the mode in force, whether credentials are configured,
the command that uploads a study's offline runs, a study's group and a condition's id in W&B filters.

Shared by the driver's tracking (:mod:`kdtune.study.tracking`, a Ray Tune callback) and ``kdtune report --wandb``,
which must not start Ray to publish a report. ``wandb`` is imported only to ask it for its default server.
Where a study's runs are is the study folder's to say (``StudyFolder.wandb_dir``), a layer above this one:
callers pass the folder in.
"""

from __future__ import annotations

import os
from pathlib import Path


def resolve_mode(spec_mode: str) -> str:
    """``offline`` | ``online`` | ``disabled``: ``WANDB_MODE`` when set, else the spec's mode."""
    env = env_mode()
    return env if env else spec_mode


def credentials_configured() -> bool:
    """Whether an online W&B session could authenticate without a prompt (API key, token file or netrc)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    import netrc
    from urllib.parse import urlsplit

    host = urlsplit(os.environ.get("WANDB_BASE_URL") or default_base_url()).hostname
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    try:
        return bool(host) and netrc.netrc(path).authenticators(host) is not None  # type: ignore[arg-type]
    except (OSError, netrc.NetrcParseError):
        return False


def sync_command(wandb_dir: Path | str) -> str:
    """The exact command that uploads the offline runs in ``wandb_dir`` (a study's: ``StudyFolder.wandb_dir``)."""
    import shlex

    return f"wandb sync {shlex.quote(str(wandb_dir))}/offline-run-*"


def study_group(name: str, study_id: str | None) -> str:
    """A study's W&B group: its spec's name and its id (``study.json``), so that a rerun of the same spec (a new
    study, a new id) never mixes its runs with an earlier one's; a resumed study keeps its id and its group.
    Folders written before study ids: the name alone."""
    return f"{name}-{study_id}" if study_id else name


def condition_id(key: str) -> str:
    """The condition key without ``=`` (``noise_level:0.2``): W&B report filters mangle ``=`` inside values."""
    return key.replace("=", ":")


def env_mode() -> str | None:
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    return {"offline": "offline", "dryrun": "offline", "online": "online", "run": "online",
            "disabled": "disabled"}.get(env)


def default_base_url() -> str:
    import wandb

    return str(wandb.Settings().base_url)
