"""Container images: build through the engine, and measure what they weigh.

An image has two sizes that matter and they are not the same: unpacked (what
the engine reports as the image's size, on disk after pull) and compressed
(the gzip'd layers a registry ships). Both are measured per layer, keyed by
the layer's diff_id, so layers shared between images or tags are counted once
in any total.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import APIError, BuildError, ImageNotFound

from harness.build.cache import Cache
from harness.errors import BuildFailed, tail

GZIP_LEVEL = 6  # the engine's and registries' default


@dataclass(frozen=True)
class Layer:
    diff_id: str
    unpacked_bytes: int
    compressed_bytes: int


@dataclass(frozen=True)
class ImageSize:
    image_id: str
    unpacked_bytes: int
    layers: tuple[Layer, ...]

    @property
    def compressed_bytes(self) -> int:
        return sum(layer.compressed_bytes for layer in self.layers)


def engine_size(attrs: dict) -> int:
    """The engine's unpacked size; newer engines dropped VirtualSize, so Size comes first."""
    for key in ("Size", "VirtualSize"):
        value = attrs.get(key)
        if isinstance(value, int):
            return value
    return 0


def build(client: docker.DockerClient, context: Path, dockerfile: str, tag: str,
          labels: dict[str, str], buildargs: dict[str, str] | None = None) -> str:
    """Build an image from a context folder; BuildFailed with the log's tail on error."""
    try:
        image, _logs = client.images.build(
            path=str(context), dockerfile=dockerfile, tag=tag, labels=labels,
            buildargs=buildargs or {}, pull=False, rm=True, forcerm=True,
        )
    except BuildError as exc:
        text = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)
        raise BuildFailed(f"image build failed: {exc.msg}\n{tail(text)}") from None
    except APIError as exc:
        raise BuildFailed(f"image build failed: {exc.explanation or exc}") from None
    return image.id


def _compress_count(path: Path) -> tuple[str, int, int]:
    """sha256 (the layer's diff_id), unpacked and gzip'd byte counts of one layer tar."""
    h = hashlib.sha256()
    comp = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    raw = packed = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            raw += len(chunk)
            packed += len(comp.compress(chunk))
    packed += len(comp.flush())
    return "sha256:" + h.hexdigest(), raw, packed


def measure(client: docker.DockerClient, image_id: str, cache: Cache) -> ImageSize:
    """Per-layer unpacked and compressed sizes, cached by diff_id."""
    image = client.images.get(image_id)
    diff_ids: list[str] = list(image.attrs.get("RootFS", {}).get("Layers", []))
    layer_dir = cache.dir("layers")
    known: dict[str, Layer] = {}
    for d in diff_ids:
        f = layer_dir / (d.replace(":", "_") + ".json")
        if f.is_file():
            known[d] = Layer(**json.loads(f.read_text()))
    if len(known) < len(diff_ids):
        known.update(_measure_layers(image, layer_dir))
    layers = tuple(known[d] for d in diff_ids if d in known)
    return ImageSize(image_id=image.id, unpacked_bytes=engine_size(image.attrs), layers=layers)


def _measure_layers(image, layer_dir: Path) -> dict[str, Layer]:
    out: dict[str, Layer] = {}
    tmp = Path(tempfile.mkdtemp(prefix="harness-save-"))
    try:
        archive = tmp / "image.tar"
        with open(archive, "wb") as fh:
            for chunk in image.save(named=False):
                fh.write(chunk)
        with tarfile.open(archive) as tar:
            manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
            for member_name in manifest[0]["Layers"]:
                member = tar.getmember(member_name)
                if member.issym():
                    member = tar.getmember(str(Path(member_name).parent / member.linkname))
                extracted = tmp / "layer.tar"
                with tar.extractfile(member) as src, open(extracted, "wb") as dst:  # type: ignore[union-attr]
                    shutil.copyfileobj(src, dst)
                diff_id, raw, packed = _compress_count(extracted)
                layer = Layer(diff_id=diff_id, unpacked_bytes=raw, compressed_bytes=packed)
                out[diff_id] = layer
                (layer_dir / (diff_id.replace(":", "_") + ".json")).write_text(json.dumps(layer.__dict__))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def shipped_total(images: Iterable[ImageSize]) -> int:
    """Compressed bytes to ship several images, each shared layer counted once."""
    unique: dict[str, int] = {}
    for img in images:
        for layer in img.layers:
            unique[layer.diff_id] = layer.compressed_bytes
    return sum(unique.values())


def unpacked_total(images: Iterable[ImageSize]) -> int:
    """Unpacked bytes on disk for several images, each shared layer counted once."""
    unique: dict[str, int] = {}
    for img in images:
        for layer in img.layers:
            unique[layer.diff_id] = layer.unpacked_bytes
    return sum(unique.values())


def exists(client: docker.DockerClient, ref: str) -> str | None:
    """The image id for ref, or None."""
    try:
        return client.images.get(ref).id
    except ImageNotFound:
        return None
