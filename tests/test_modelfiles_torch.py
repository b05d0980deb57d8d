"""The pickle reader against files the real ``torch.save`` wrote (the torch of the pinned test
ComfyUI's venv): zip and legacy formats, bf16/fp16/fp32/fp8 tensors, views, Parameters, a
module's state_dict (OrderedDict with metadata), a DeepSpeed-style ``module`` wrapper. torch
itself lists what each file holds; the reader, which never unpickles, must say the same."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from executor.musubi.modelfiles.header import read_header

pytestmark = pytest.mark.comfyui

SCRIPT = r'''
import json, sys, torch
out = sys.argv[1]
w = torch.nn.Linear(4, 3).to(torch.bfloat16)
sd = {
    "blocks.0.attn.q.weight": torch.zeros(8, 4, dtype=torch.bfloat16),
    "blocks.0.attn.q.bias": torch.zeros(8, dtype=torch.float16),
    "head.modulation": torch.zeros(1, 2, 16, dtype=torch.float32),
    "fp8.weight": torch.zeros(4, 4, dtype=torch.float8_e4m3fn),
    "view": torch.arange(10.0)[2:7],
    "param": torch.nn.Parameter(torch.zeros(3, 3)),
}
cases = {
    "zip.pt": ({"module": sd, "buffer_names": [], "ds_version": "0.14"}, {}),
    # torch cannot load fp8 from its legacy format (older than fp8), so that file has none
    "legacy.pth": ({k: v for k, v in sd.items() if k != "fp8.weight"}, {"_use_new_zipfile_serialization": False}),
    "module.pth": (w.state_dict(), {}),
}
listing = {}
for name, (obj, kw) in cases.items():
    torch.save(obj, f"{out}/{name}", **kw)
    loaded = torch.load(f"{out}/{name}", weights_only=False)  # our own file, just written
    flat = loaded["module"] if "module" in loaded else loaded
    listing[name] = {k: [str(v.dtype).replace("torch.", ""), list(v.shape)] for k, v in flat.items()}
print(json.dumps(listing))
'''
DTYPES = {"bfloat16": "BF16", "float16": "F16", "float32": "F32", "float8_e4m3fn": "F8_E4M3"}


@pytest.mark.timeout(180)
def test_real_torch_save_files_read_without_unpickling(comfy_install: Any, tmp_path: Path) -> None:
    done = subprocess.run([str(comfy_install.python), "-c", SCRIPT, str(tmp_path)], capture_output=True,
                          text=True, timeout=150)
    assert done.returncode == 0, done.stderr[-3000:]
    listing = json.loads(done.stdout.strip().splitlines()[-1])
    for name, expected in listing.items():
        header = read_header(str(tmp_path / name))
        assert not header.broken and not header.problems, (name, header.broken, header.problems)
        have = {k: [v.dtype, list(v.shape)] for k, v in header.tensors.items()}
        assert have == {k: [DTYPES[d], s] for k, (d, s) in expected.items()}, name
    assert read_header(str(tmp_path / "zip.pt")).wrapper == "module"
    assert read_header(str(tmp_path / "legacy.pth")).format == "pytorch-legacy"
    legacy = tmp_path / "legacy.pth"
    data = legacy.read_bytes()
    legacy.write_bytes(data[: len(data) - 20])
    cut = read_header(str(legacy))
    assert cut.truncated and "cut short" in cut.problems[0]
