"""`harness bases import`: an air-gapped lab brings in a real base; bad tarballs are refused first.

The tarball here is laid out like Alpine's minirootfs (made from the same
Debian busybox and musl as the stand-in, plus etc/alpine-release), since no
real minirootfs can be downloaded on these machines.
"""

from __future__ import annotations

import io
import secrets
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from harness.build import standin
from leaks import LeakCheck, leak_check  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parent.parent


def harness(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO)


def minirootfs(path: Path, alpine: bool = True) -> Path:
    """A gzip'd rootfs: the stand-in's files, plus etc/alpine-release when it is to pass for Alpine."""
    raw = tarfile.open(fileobj=io.BytesIO(standin.rootfs_tar(standin.locate())))
    with tarfile.open(path, "w:gz") as out:
        for member in raw.getmembers():
            out.addfile(member, raw.extractfile(member) if member.isfile() else None)
        if alpine:
            apk = tarfile.TarInfo("etc/apk")
            apk.type = tarfile.DIRTYPE
            out.addfile(apk)
            info = tarfile.TarInfo("etc/alpine-release")
            data = b"3.20.0\n"
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def name(docker_client):
    ref = f"harness-test/alpine:{secrets.token_hex(4)}"
    yield ref
    for image in docker_client.images.list(name=ref.split(":")[0]):
        docker_client.images.remove(image.id, force=True)


def test_imported_base_is_used_as_the_real_one(tmp_path: Path, name: str, docker_client,
                                                leak_check: LeakCheck) -> None:
    proc = harness("bases", "import", name, str(minirootfs(tmp_path / "mini.tar.gz")))
    assert proc.returncode == 0 and f"as {name}" in proc.stdout, proc.stderr
    out = tmp_path / "run"
    run = harness("run", "--matrix", "hello:alpine", "--reps", "1", "--warmup", "0", "--alpine-base", name,
                  "--out", str(out))
    assert run.returncode == 0, run.stderr
    [cell] = leak_check.watch_results(out / "results.json")["cells"]
    assert cell["status"] == "ok" and cell["details"]["base"] == name and cell["details"]["stand_in"] is False
    assert cell["details"]["base_imported_from"] == "mini.tar.gz" and cell["details"]["base_image_id"]
    assert cell["details"]["base_alpine_release"] == "3.20.0" and "(Alpine 3.20.0)" in run.stdout
    assert "alpine*" not in run.stdout and "stand-in" not in run.stdout
    # Built on it, the image is not removed when the base is replaced; a second import needs --replace.
    again = harness("bases", "import", name, str(tmp_path / "mini.tar.gz"))
    assert again.returncode == 2 and "--replace" in again.stderr
    docker_client.images.remove(cell["details"]["image"], force=True)  # built on a throw-away base
    replaced = harness("bases", "import", name, str(tmp_path / "mini.tar.gz"), "--replace")
    assert replaced.returncode == 0, replaced.stderr


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b""), "not a readable tar archive"),
    (lambda p: p.write_bytes(b"not gzip, not tar\n"), "not a tar archive, compressed or not"),
    (lambda p: tarfile.open(p, "w:gz").close(), "holds no root filesystem"),
    (lambda p: minirootfs(p, alpine=False), "not an Alpine root filesystem"),
])
def test_bad_tarballs_are_refused_before_the_engine_sees_them(tmp_path: Path, name: str, make,
                                                             message: str) -> None:
    tarball = tmp_path / "x.tar.gz"
    make(tarball)
    proc = harness("bases", "import", name, str(tarball))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


def test_a_base_that_is_not_alpine_is_not_measured_as_alpine(tmp_path: Path, docker_client,
                                                            leak_check: LeakCheck) -> None:
    """--alpine-base naming a non-Alpine image: the cell is unavailable, never a figure labelled alpine."""
    other = f"harness-test/plain:{secrets.token_hex(4)}"
    try:
        proc = harness("bases", "import", other, str(minirootfs(tmp_path / "plain.tar.gz", alpine=False)))
        assert proc.returncode == 0, proc.stderr
        out = tmp_path / "run"
        run = harness("run", "--matrix", "hello:alpine;hello:scratch", "--reps", "1", "--warmup", "0",
                      "--alpine-base", other, "--out", str(out))
        assert run.returncode == 0, run.stderr
        alpine, scratch = leak_check.watch_results(out / "results.json")["cells"]
        assert alpine["status"] == "unavailable" and alpine["samples"] == []
        assert f"base {other} is not Alpine" in alpine["reason"] and "bases import" in alpine["reason"]
        assert scratch["status"] == "ok", "the other cells are measured as usual"
    finally:
        for image in docker_client.images.list(name=other.split(":")[0]):
            docker_client.images.remove(image.id, force=True)
