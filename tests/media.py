"""Real tiny media for dataset tests: PNG files written with zlib (no Pillow), captions,
and ready-made image folders. Imported by test files as ``import media`` (tests/ is on
sys.path because tests/ has no __init__.py)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def png_bytes(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A valid RGB PNG of one colour."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    row = b"\x00" + bytes(rgb) * width  # filter byte 0, then pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))


def write_png(path: Path, width: int = 8, height: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(width, height))
    return path


def image_folder(folder: Path, names: tuple[str, ...] = ("img1", "img2", "img3"), *,
                 captions: bool | tuple[str, ...] = True, ext: str = ".png",
                 caption_ext: str = ".txt") -> Path:
    """``folder`` with one PNG per name and (by default) a caption file beside each.
    ``captions`` may name the subset that gets one."""
    folder.mkdir(parents=True, exist_ok=True)
    with_caption = names if captions is True else (() if captions is False else captions)
    for name in names:
        write_png(folder / f"{name}{ext}")
        if name in with_caption:
            (folder / f"{name}{caption_ext}").write_text(f"a photo of {name}", encoding="utf-8")
    return folder


def fake_safetensors(path: Path, metadata: bytes = b'{"__metadata__":{}}') -> Path:
    """A file with a valid safetensors header (8-byte little-endian length + JSON)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(metadata)) + metadata)
    return path


def wan_models(folder: Path) -> dict[str, str]:
    """A Wan 2.1 t2v-1.3B set (DiT, VAE, T5) whose headers say what the real files' headers say
    (sparse files: the right size, no disk used), so pre-flight's identity checks pass."""
    import modelfile_keys as K
    from modelfile_writers import write_safetensors

    return {"dit": str(write_safetensors(folder / "dit.safetensors", K.wan_dit(1536))),
            "vae": str(write_safetensors(folder / "vae.safetensors", K.wan_vae())),
            "t5": str(write_safetensors(folder / "t5.safetensors", K.umt5_wan()))}
