"""Workload definitions: builds/<name>/workload.toml beside the sources.

A workload says how it is compiled (once, into one static binary shared by
every form) and how readiness is seen: a console line, a TCP port or an HTTP
status. Definitions are validated here so that a typo names its file.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import UsageError

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
KINDS = ("run-to-completion", "service")
READINESS_TYPES = ("console", "tcp", "http")
LINKS = ("static-pie", "static", "dynamic")
READINESS_KEYS = {"console": {"type", "line"}, "tcp": {"type"}, "http": {"type", "path", "status"}}


def default_builds_dir() -> Path:
    """builds/ of this checkout, unless HARNESS_BUILDS points elsewhere."""
    env = os.environ.get("HARNESS_BUILDS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "builds"


@dataclass(frozen=True)
class Readiness:
    """How the harness knows the workload is up."""

    type: str
    line: str | None = None
    port: int | None = None
    path: str = "/"
    status: int = 200


@dataclass(frozen=True)
class Workload:
    name: str
    directory: Path
    description: str
    sources: tuple[str, ...]
    kind: str
    readiness: Readiness
    port: int | None = None
    link: str = "static-pie"
    cflags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_service(self) -> bool:
        return self.kind == "service"

    def source_paths(self) -> list[Path]:
        return [self.directory / s for s in self.sources]


def _bad(path: Path, message: str) -> UsageError:
    return UsageError(f"{path}: {message}")


def load(name: str, builds_dir: Path | None = None) -> Workload:
    """Load and validate one workload definition."""
    builds_dir = builds_dir or default_builds_dir()
    if not NAME_RE.match(name):
        raise UsageError(
            f"invalid workload name {name!r}: use lowercase letters, digits, '-' and '_' "
            f"(known: {', '.join(available(builds_dir)) or 'none'})"
        )
    path = builds_dir / name / "workload.toml"
    if not path.is_file():
        raise UsageError(
            f"unknown workload {name!r}: no {path}; known workloads: "
            f"{', '.join(available(builds_dir)) or 'none'}"
        )
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise _bad(path, f"invalid TOML ({exc}); fix the file") from None
    return _validate(name, path, data)


def _validate(name: str, path: Path, data: dict) -> Workload:
    known = {"description", "sources", "kind", "readiness", "port", "link", "cflags"}
    extra = sorted(set(data) - known)
    if extra:
        raise _bad(path, f"unknown key(s) {', '.join(extra)}; allowed: {', '.join(sorted(known))}")
    sources = data.get("sources")
    if not isinstance(sources, list) or not sources or not all(isinstance(s, str) for s in sources):
        raise _bad(path, "'sources' must be a non-empty list of file names")
    for src in sources:
        if "/" in src or src.startswith(".") or not (path.parent / src).is_file():
            raise _bad(path, f"source {src!r} must be a file beside workload.toml")
    kind = data.get("kind", "run-to-completion")
    if kind not in KINDS:
        raise _bad(path, f"'kind' must be one of {', '.join(KINDS)}, not {kind!r}")
    port = data.get("port")
    if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
        raise _bad(path, f"'port' must be an integer 1-65535, not {port!r}")
    link = data.get("link", "static-pie")
    if link not in LINKS:
        raise _bad(path, f"'link' must be one of {', '.join(LINKS)}, not {link!r}")
    cflags = data.get("cflags", [])
    if not isinstance(cflags, list) or not all(isinstance(c, str) for c in cflags):
        raise _bad(path, "'cflags' must be a list of strings")
    ready = data.get("readiness")
    if not isinstance(ready, dict):
        raise _bad(path, "missing [readiness] table (type = console, tcp or http)")
    rtype = ready.get("type")
    if rtype not in READINESS_TYPES:
        raise _bad(path, f"readiness 'type' must be one of {', '.join(READINESS_TYPES)}, not {rtype!r}")
    allowed = READINESS_KEYS[rtype]
    extra = sorted(set(ready) - allowed)
    if extra:  # a key after [readiness] belongs to it in TOML: a misplaced top-level key shows up here
        raise _bad(path, f"unknown key(s) {', '.join(extra)} in [readiness] for type {rtype!r}; "
                         f"allowed there: {', '.join(sorted(allowed))} (top-level keys go before [readiness])")
    if rtype == "console" and (not isinstance(ready.get("line"), str) or not ready["line"].strip()):
        raise _bad(path, "console readiness needs 'line', the non-empty text the workload prints when ready")
    if rtype == "http":
        status = ready.get("status", 200)
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            raise _bad(path, f"readiness 'status' must be an HTTP status 100-599, not {status!r}")
        if not isinstance(ready.get("path", "/"), str) or not str(ready.get("path", "/")).startswith("/"):
            raise _bad(path, f"readiness 'path' must start with '/', not {ready.get('path')!r}")
    if rtype in ("tcp", "http") and port is None:
        raise _bad(path, f"{rtype} readiness needs a top-level 'port'")
    if kind == "service" and rtype == "console" and port is None:
        pass  # a service may announce itself on the console only
    readiness = Readiness(
        type=rtype,
        line=ready.get("line"),
        port=port,
        path=str(ready.get("path", "/")),
        status=int(ready.get("status", 200)),
    )
    return Workload(
        name=name,
        directory=path.parent,
        description=str(data.get("description", "")),
        sources=tuple(sources),
        kind=kind,
        readiness=readiness,
        port=port,
        link=link,
        cflags=tuple(cflags),
    )


def available(builds_dir: Path | None = None) -> list[str]:
    """Names of the workloads defined under builds/."""
    return [name for name in _defined(builds_dir) if NAME_RE.match(name)]


def misnamed(builds_dir: Path | None = None) -> list[str]:
    """Folders that hold a workload.toml under a name no workload may have: said, never skipped silently."""
    return [name for name in _defined(builds_dir) if not NAME_RE.match(name)]


def _defined(builds_dir: Path | None) -> list[str]:
    """Every folder under builds/ that holds a workload.toml, valid name or not."""
    builds_dir = builds_dir or default_builds_dir()
    if not builds_dir.is_dir():
        return []
    return sorted(p.name for p in builds_dir.iterdir() if (p / "workload.toml").is_file())
