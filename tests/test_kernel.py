"""The lupine kernel: fragment parsing, the final .config check, the build cache.

The slow tests build the real kernel from Debian's linux-source-6.1 (once per
machine: the cache lives in HARNESS_CACHE or ~/.cache/harness). A missing
source package or build tool makes them fail, never skip.
"""

from __future__ import annotations

import pytest

from harness.build import kernel
from harness.build.cache import Cache, default_cache_dir
from harness.errors import BuildFailed

# What the form needs from its kernel, whatever else the fragment holds.
REQUIRED = {
    "CONFIG_64BIT", "CONFIG_PRINTK", "CONFIG_TTY", "CONFIG_SERIAL_8250",
    "CONFIG_SERIAL_8250_CONSOLE", "CONFIG_BLK_DEV_INITRD", "CONFIG_BINFMT_ELF",
    "CONFIG_PROC_FS", "CONFIG_SYSFS", "CONFIG_PVH", "CONFIG_VIRTIO", "CONFIG_VIRTIO_PCI",
    "CONFIG_VIRTIO_MMIO", "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES", "CONFIG_VIRTIO_NET", "CONFIG_NET",
    "CONFIG_INET", "CONFIG_IP_PNP", "CONFIG_FUTEX", "CONFIG_EPOLL",
}


def test_parse_config_reads_set_and_unset_options() -> None:
    text = "# comment\nCONFIG_A=y\nCONFIG_B=\"x y\"\n# CONFIG_C is not set\nCONFIG_D=0x10\n\n"
    assert kernel.parse_config(text) == {"CONFIG_A": "y", "CONFIG_B": '"x y"', "CONFIG_C": "n",
                                         "CONFIG_D": "0x10"}


def test_missing_options_names_dropped_and_changed_options() -> None:
    fragment = {"CONFIG_A": "y", "CONFIG_B": "y", "CONFIG_C": "n", "CONFIG_D": "m"}
    final = {"CONFIG_A": "y", "CONFIG_C": "n", "CONFIG_D": "y"}
    assert kernel.missing_options(fragment, final) == {"CONFIG_B": ("y", "n"), "CONFIG_D": ("m", "y")}


def test_fragment_asks_for_everything_the_form_needs() -> None:
    options = kernel.fragment_options(kernel.fragment_paths())
    assert {k for k, v in options.items() if v == "y"} >= REQUIRED
    assert options.get("CONFIG_ACPI", "n") == "n"  # power-off is halt + QMP quit, by design


def test_key_changes_with_the_fragment(tmp_path) -> None:
    (tmp_path / "a.config").write_text("CONFIG_NET=y\n")
    first = kernel.specialised_key(kernel.fragment_paths(tmp_path), "6.1.0-test")
    (tmp_path / "a.config").write_text("CONFIG_NET=y\nCONFIG_INET=y\n")
    second = kernel.specialised_key(kernel.fragment_paths(tmp_path), "6.1.0-test")
    assert first != second
    assert kernel.specialised_key(kernel.fragment_paths(tmp_path), "6.1.1-test") != second


def test_unknown_kernel_kind_is_a_usage_error(tmp_path) -> None:
    from harness.errors import UsageError

    with pytest.raises(UsageError, match="lupine_kernel"):
        kernel.ensure("fat", Cache(tmp_path), lambda m: None)


@pytest.fixture(scope="module")
def built() -> kernel.Kernel:
    """The real specialised kernel (built here on a new machine: ~5 minutes)."""
    return kernel.ensure("specialised", Cache(default_cache_dir()), print)


@pytest.mark.slow
def test_final_config_holds_every_fragment_option(built: kernel.Kernel) -> None:
    assert built.config is not None
    final = kernel.parse_config(built.config.read_text())
    wanted = kernel.fragment_options(kernel.fragment_paths())
    assert kernel.missing_options(wanted, final) == {}
    assert final["CONFIG_64BIT"] == "y" and final.get("CONFIG_X86_64") == "y"


@pytest.mark.slow
def test_kernel_is_small_and_recorded(built: kernel.Kernel) -> None:
    assert built.image.is_file()
    assert 200_000 < built.size_bytes < 8_000_000
    assert built.version.startswith("6.1.")
    details = built.details()
    assert details["kernel_kind"] == "specialised"
    assert details["kernel_config_hash"] == built.config_hash


@pytest.mark.slow
def test_second_build_is_a_cache_hit_without_make(built: kernel.Kernel, monkeypatch) -> None:
    def no_make(*args, **kwargs):
        raise AssertionError("make was run for an unchanged configuration")

    monkeypatch.setattr(kernel.steps, "run", no_make)  # every build step (make, tar) goes through it
    monkeypatch.setattr(kernel, "_run", no_make)
    monkeypatch.setattr(kernel, "_extract_source", no_make)
    messages: list[str] = []
    again = kernel.ensure("specialised", Cache(default_cache_dir()), messages.append)
    assert again.cached
    assert again.image == built.image and again.config_hash == built.config_hash
    assert any("no build" in m for m in messages)


@pytest.mark.slow
def test_a_dropped_option_fails_the_build(tmp_path) -> None:
    """An option whose dependency is unmet (here: ACPI off) is reported, not silently lost."""
    import subprocess

    tree = tmp_path / "linux"
    tree.mkdir()
    subprocess.run(["tar", "-xf", str(kernel.SOURCE_TARBALL), "-C", str(tree),
                    "--strip-components=1"], check=True)
    frag = tmp_path / "x.config"
    frag.write_text("CONFIG_64BIT=y\nCONFIG_ACPI_BUTTON=y\n")
    with pytest.raises(BuildFailed, match="CONFIG_ACPI_BUTTON"):
        kernel.configure(tree, [frag], tmp_path / "log")


def test_stale_package_lists_give_a_first_line_that_names_them_and_the_fix(tmp_path) -> None:
    """Lists read before the archive replaced a version give a 404: the reason says so and how to fix it.

    The stale lists are real copies with the package's file renamed, seen only
    in a private mount namespace (tests/helpers/stale-apt-lists); the download
    goes to Debian's archive for real. The harness itself never runs apt-get
    update: it writes nothing outside its results and cache folders.
    """
    import subprocess
    import sys
    from pathlib import Path

    helper = Path(__file__).parent / "helpers" / "stale-apt-lists"
    script = ("from pathlib import Path; from harness.build import kernel; from harness.build.cache import Cache\n"
              "from harness.errors import BuildFailed\n"
              "try:\n"
              f"    kernel.fetch_cloud(Cache(Path({str(tmp_path / 'cache')!r})), print)\n"
              "except BuildFailed as exc:\n"
              "    print('FAILED', exc)\n")
    lists = sorted(p.name for p in Path("/var/lib/apt/lists").iterdir())
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", str(helper), str(tmp_path / "apt"),
                           sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    failed = [line for line in proc.stdout.splitlines() if line.startswith("FAILED ")]
    assert failed, proc.stdout
    assert "404, the archive no longer has this version" in failed[0], failed[0]
    assert failed[0].endswith("package lists are stale; run apt-get update (scripts/setup.sh does)"), failed[0]
    assert sorted(p.name for p in Path("/var/lib/apt/lists").iterdir()) == lists, "the host's lists untouched"
    assert not list((tmp_path / "cache").glob("kernel-cloud/*/vmlinuz")), "nothing half-fetched is kept"
