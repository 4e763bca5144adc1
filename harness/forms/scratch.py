"""The scratch form: the workload binary alone in a FROM scratch image."""

from __future__ import annotations

from pathlib import Path

from harness.build import dockerfile, elf
from harness.build.binary import Binary
from harness.forms.container import ContainerForm


class ScratchForm(ContainerForm):
    name = "scratch"
    recipe = "scratch.Dockerfile"

    def preflight(self, recipe: Path, binary: Binary) -> None:
        """Refuse, before building, what fails only at start in an empty image."""
        dockerfile.check_scratch(recipe)
        elf.require_self_contained(binary.path, binary.info, "a scratch image")
        elf.require_host_machine(binary.path, binary.info)
