"""Plots from the saved fixture: files exist, have the size asked for, and are not blank."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np

from harness.analyse.metrics import get
from harness.render.plot import bars, wants_log

FIXTURE = Path(__file__).parent / "fixtures" / "results-v1.json"


def test_cli_writes_png_and_svg(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "harness", "plot", str(FIXTURE), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for key in ("artifact_bytes", "boot_s", "memory_bytes"):
        png, svg = tmp_path / f"{key}.png", tmp_path / f"{key}.svg"
        assert png.stat().st_size > 5000 and svg.stat().st_size > 5000
        img = mpimg.imread(png)
        height, width = img.shape[:2]
        assert width >= 600 and height == 450  # figsize 4.5 in at 100 dpi
        rgb = img[..., :3]
        non_white = np.mean(np.any(rgb < 0.95, axis=-1))
        assert 0.02 < non_white < 0.9, non_white  # bars and text drawn, not a blank or solid image
        text = svg.read_text()
        assert "<svg" in text


def test_marks_and_legend_in_svg(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "harness", "plot", str(FIXTURE), "--out", str(tmp_path),
                    "--metrics", "boot"], check=True, capture_output=True, timeout=120)
    svg = (tmp_path / "boot_s.svg").read_text()
    assert "emulated" in svg.replace("\n", "") or "hatch" in svg  # legend text is drawn as glyph paths
    assert 'id="patch' in svg and "pattern" in svg  # the hatches are SVG patterns


def test_bars_and_log_rule() -> None:
    data = {b.label: b for b in bars(__import__("json").loads(FIXTURE.read_text()), get("boot"))}
    assert data["hello:debian-vm"].emulated and data["hello:alpine"].stand_in
    assert data["hello:lupine"].median is None and data["hello:lupine"].missing == "failed"
    assert data["hello:unikraft"].missing == "n/a"
    assert wants_log([0.25, 18.4])  # 74x: a linear axis would flatten the container bars to nothing
    assert not wants_log([1.2, 18.4])  # 15x: linear
    assert wants_log([29_000, 312_000_000])  # four orders: log
    assert not wants_log([])
    # A size is not emulated: its bars carry no TCG hatch.
    sizes = {b.label: b for b in bars(__import__("json").loads(FIXTURE.read_text()), get("size"))}
    assert not sizes["hello:debian-vm"].emulated


def test_missing_run_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "harness", "plot", str(tmp_path / "none")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1


def test_run_with_nothing_measured_is_one_line_and_writes_no_chart(tmp_path: Path) -> None:
    data = json.loads(FIXTURE.read_text())
    for cell in data["cells"]:
        cell.update(status="unavailable", samples=[], size={})
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(data))
    proc = subprocess.run([sys.executable, "-m", "harness", "plot", str(run)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "nothing to plot" in proc.stderr
    assert not (run / "plots").exists()


def test_memory_chart_says_what_each_bar_is_and_log_axes_start_on_a_decade() -> None:
    """Bars of a cgroup peak and of a QEMU PSS share an axis: the footer names each kind, as the table does."""
    import math

    import matplotlib.pyplot as plt

    from harness.render.plot import draw
    from harness.render.table import memory_note

    data = json.loads(FIXTURE.read_text())
    kinds = {"debian-vm": "vmm_pss_bytes", "alpine": "peak_bytes", "scratch": "working_set_bytes"}
    for cell in data["cells"]:
        cell["memory_source"] = kinds.get(cell["form"])
    fig = draw(data, get("memory"))
    try:
        footer = " ".join(t.get_text().replace("\n", " ") for t in fig.texts)
        assert "memory = " in footer and "cgroup" in footer and "QEMU" in footer
        assert " ".join(memory_note(data["cells"]).split()) in " ".join(footer.split())
    finally:
        plt.close(fig)
    fig = draw(data, get("boot"))
    try:
        ax = fig.axes[0]
        assert ax.get_yscale() == "log"
        bottom = ax.get_ylim()[0]
        smallest = min(b.median for b in bars(data, get("boot")) if b.median)
        assert math.log10(bottom) == int(math.log10(bottom)) and bottom <= smallest, "a labelled tick below every bar"
    finally:
        plt.close(fig)


def test_no_label_reaches_past_the_figure() -> None:
    import matplotlib.pyplot as plt

    from harness.render.plot import draw

    data = json.loads(FIXTURE.read_text())
    for metric in ("size", "boot", "memory"):
        fig = draw(data, get(metric))
        try:
            renderer = fig.canvas.get_renderer()
            width = fig.get_figwidth() * fig.dpi
            for label in fig.axes[0].get_xticklabels():
                box = label.get_window_extent(renderer)
                assert box.x0 >= 0 and box.x1 <= width, f"{metric}: {label.get_text()} is cut off"
        finally:
            plt.close(fig)
