"""kdtune starts Ray so that nothing leaves loopback: every connect() of every process is to 127.0.0.0/8."""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import require_service


SCRIPT = """
import ray
from kdtune.study.ray_runtime import init_ray
init_ray(num_cpus=1)
@ray.remote
def one():
    return 1
assert ray.get(one.remote()) == 1
ray.shutdown()
"""


def test_local_ray_connects_only_to_loopback(short_tmp: Path) -> None:
    if shutil.which("strace") is None:
        require_service("strace is not installed")
    log = short_tmp / "strace.log"
    result = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=connect,sendto", "-o", str(log), sys.executable, "-c", SCRIPT],
        capture_output=True, text=True, timeout=300,
        env={**_env(), "RAY_TMPDIR": str(short_tmp / "ray")},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    text = log.read_text()
    addresses = re.findall(r'inet_addr\("([^"]+)"\)', text) + re.findall(r'inet_pton\(AF_INET6, "([^"]+)"', text)
    assert addresses, "strace saw no network connect at all: the check would be vacuous"
    outside = {a for a in addresses if not _is_loopback(a)}
    assert outside == set(), f"connections outside loopback: {sorted(outside)}"
    assert "169.254.169.254" not in text and "metadata.google.internal" not in text


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
