"""Deployment forms: one module each, all behind harness.forms.base.Form."""

from __future__ import annotations

import importlib

from harness.errors import Unavailable, UsageError
from harness.forms.base import Form

# Table order: heaviest to lightest, as the papers draw them.
ORDER = ("vm", "alpine", "scratch", "lupine", "unikraft")

_CLASSES = {
    "vm": "harness.forms.vm:VmForm",
    "alpine": "harness.forms.alpine:AlpineForm",
    "scratch": "harness.forms.scratch:ScratchForm",
    "lupine": "harness.forms.lupine:LupineForm",
    "unikraft": "harness.forms.unikraft:UnikraftForm",
}

GROUPS = {
    "container": ("alpine", "scratch"),
    "unikernel": ("lupine", "unikraft"),
}


class MissingForm:
    """Stands for a form whose module is not part of this version."""

    family = "unknown"

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason

    def check(self, ctx) -> None:
        raise Unavailable(self.reason)

    def build(self, workload, binary, ctx):
        raise Unavailable(self.reason)

    def boot(self, artifact, workload, ctx):
        raise Unavailable(self.reason)

    def cleanup(self, ctx) -> None:
        return None


def get(name: str) -> Form:
    """Instantiate a form by name."""
    if name not in _CLASSES:
        raise UsageError(f"unknown form {name!r}; forms: {', '.join(ORDER)}")
    module_name, cls_name = _CLASSES[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return MissingForm(name, f"the {name} form is not implemented in this version")
        raise
    return getattr(module, cls_name)()
