"""How fast a model file is known from its header, side by side with the floor (parsing the same
JSON header and nothing else) and with what the check saves (reading the tensor data).

Usage, from the project root: ``python benchmarks/bench_modelfiles.py [--repeat N]``. Prints a
markdown table. The files are synthetic: real-shaped headers (tests/modelfile_keys.py) extended
sparsely to their full size, so a "28 GB" DiT takes a few hundred kilobytes of disk. Not part of
the test run. Target (issue 15): a 20 GB-class header identified in 50 ms or less.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

import modelfile_keys as K  # noqa: E402
from executor.musubi import catalogue as cat  # noqa: E402
from executor.musubi.modelfiles.header import read_header  # noqa: E402
from executor.musubi.modelfiles.identify import clear_cache, identify  # noqa: E402
from executor.musubi.preflight import preflight  # noqa: E402
from modelfile_writers import write_safetensors, write_torch_zip  # noqa: E402

GB = 1024 ** 3
TARGET_MS = 50.0
DISK_GB_S = 2.0  # a fast NVMe drive: what loading the data would at least cost


def _qwen_image_full() -> K.Tensors:
    """A Qwen-Image-sized DiT (60 blocks with every per-block key): about 1,900 tensors, 38 GB bf16."""
    t = K.qwen_image_dit()
    per = {}
    for stream in ("img", "txt"):
        per.update({f"{stream}_mod.1.weight": (18432, 3072), f"{stream}_mod.1.bias": (18432,),
                    f"{stream}_mlp.net.0.proj.weight": (12288, 3072), f"{stream}_mlp.net.0.proj.bias": (12288,),
                    f"{stream}_mlp.net.2.weight": (3072, 12288), f"{stream}_mlp.net.2.bias": (3072,)})
    for p in ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj", "to_out.0", "to_add_out"):
        per[f"attn.{p}.weight"] = (3072, 3072)
        per[f"attn.{p}.bias"] = (3072,)
    for n in ("norm_q", "norm_k", "norm_added_q", "norm_added_k"):
        per[f"attn.{n}.weight"] = (128,)
    for i in range(60):
        t.update({f"transformer_blocks.{i}.{k}": ("BF16", s) for k, s in per.items()})
    return t


def _p(tmp: str, name: str) -> Path:
    return Path(tmp) / name


def _timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        clear_cache()
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def _floor(path: str) -> Callable[[], object]:
    """Open, read the length and the JSON header, parse it: what any header reader must do."""
    def run() -> object:
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            return json.loads(fh.read(n))
    return run


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ms (p95 {sorted(values)[int(len(values) * 0.95) - 1]:.1f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="musubi-bench-models-") as tmp:
        files = {
            "Wan 2.1 14B DiT, every key (safetensors)": write_safetensors(
                _p(tmp, "wan2.1_t2v_14B_bf16.safetensors"), K.wan_dit(5120, full=True)),
            "Qwen-Image-sized DiT, every key (safetensors)": write_safetensors(
                _p(tmp, "qwen_image_bf16.safetensors"), _qwen_image_full()),
        }
        zip_path = write_torch_zip(_p(tmp, "wan14b.pt"), K.wan_dit(5120, full=True), wrapper="module")
        parts = list(K.mistral3().items())
        for i in range(10):
            write_safetensors(_p(tmp, f"model-{i + 1:05d}-of-00010.safetensors"), dict(parts[i::10]))
        for label, path in files.items():
            size = os.path.getsize(path)
            header = read_header(str(path))
            ours = _timed(lambda: identify(str(path)), args.repeat)
            floor = _timed(_floor(str(path)), args.repeat)
            cached = []
            identify(str(path))
            for _ in range(args.repeat):
                start = time.perf_counter()
                identify(str(path))
                cached.append((time.perf_counter() - start) * 1000)
            load_s = size / GB / DISK_GB_S
            rows.append((label, f"{len(header.tensors)} tensors, {size / GB:.1f} GB", _ms(ours), _ms(floor),
                         f"{statistics.median(ours) / statistics.median(floor):.2f}× the floor",
                         f"{statistics.median(cached):.3f} ms", f"{load_s:.0f} s",
                         f"≤ {TARGET_MS:.0f} ms", "yes" if statistics.median(ours) <= TARGET_MS else "**no**"))
        ours = _timed(lambda: identify(str(zip_path)), args.repeat)
        rows.append(("Same Wan DiT as a PyTorch zip (pickle walked, not run)",
                     f"{len(K.wan_dit(5120, full=True))} tensors", _ms(ours), "—", "—", "—", "—",
                     f"≤ {TARGET_MS:.0f} ms", "yes" if statistics.median(ours) <= TARGET_MS else "**no**"))
        first = _p(tmp, "model-00001-of-00010.safetensors")
        ours = _timed(lambda: identify(first), args.repeat)
        rows.append(("FLUX.2 dev text encoder, 10 split parts", f"{len(parts)} tensors", _ms(ours), "—", "—", "—",
                     "—", f"≤ {TARGET_MS:.0f} ms", "yes" if statistics.median(ours) <= TARGET_MS else "**no**"))
        rows.append(_preflight_row(tmp, files, args.repeat))
    columns = ("Case", "Header", "Identify (cold)", "Floor: parse the JSON header only", "Ratio",
               "Identify (cached)", "Reading the data at 2 GB/s", "Target", "Met")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


def _preflight_row(tmp: str, files: dict, repeat: int) -> tuple[str, ...]:
    """A whole pre-flight of Wan training that refuses a 1.3B DiT for task t2v-14B (files cold)."""
    dit = write_safetensors(_p(tmp, "wan2.1_t2v_1.3B_fp16.safetensors"), K.wan_dit(1536, full=True, dtype="F16"))
    vae = write_safetensors(_p(tmp, "wan_2.1_vae.safetensors"), K.wan_vae())
    t5 = write_safetensors(_p(tmp, "models_t5.safetensors"), K.umt5_wan())
    arch = cat.get_architecture("wan")

    def run() -> None:
        problems = preflight(arch, "train", models={"dit": str(dit), "vae": str(vae), "t5": str(t5)},
                             selectors={"task": "t2v-14B"}, options={"optimizer_type": "adamw"},
                             output_dir=os.path.join(tmp, "out"), output_name="x", check_caches=False)
        assert any(p.input == "models.dit" and "size mismatch" in p.message for p in problems), problems
    values = _timed(run, max(5, repeat // 4))
    return ("Pre-flight of Wan training refusing a 1.3B DiT for t2v-14B (3 files, cold)", "—", _ms(values), "—", "—",
            "—", "minutes of loading, then a traceback", "≤ 1000 ms",
            "yes" if statistics.median(values) <= 1000 else "**no**")


if __name__ == "__main__":
    sys.exit(main())
