#!/usr/bin/env python3
"""Count the LoRA parameters musubi-tuner trains for each architecture, for the disk-size table of
docs/resume.md (a training state is the LoRA in fp32 plus the optimizer's state).

    MUSUBI_SRC=/path/to/musubi-tuner/src python .ci/lora_sizes.py

Needs a Python with torch and transformers (ComfyUI's venv has both) and a musubi-tuner checkout
(v0.3.4). Each DiT is built on torch's meta device (no weights, no memory) from musubi's own model
code and configs, and musubi's own ``networks/lora_<arch>.create_arch_network`` makes the LoRA at
rank 1; its lora_down/lora_up sizes are the parameters per rank. Packages those model files import
but never use to build the model (accelerate, diffusers, attention kernels...) are stubbed.
Not run in CI (no musubi checkout there); its output is committed in docs/resume.md.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import types
from dataclasses import asdict
from typing import Any, Callable

STUBBED = {"accelerate", "diffusers", "bitsandbytes", "toml", "cv2", "voluptuous", "sageattention", "flash_attn",
           "xformers", "ftfy", "imageio", "omegaconf", "timm", "matplotlib", "prodigyopt",
           "lycoris", "schedulefree", "open_clip", "flash_attn_interface", "sentencepiece", "kernels", "torchao",
           "optimum", "peft", "decord", "qwen_vl_utils", "blobfile", "tiktoken"}


def _anything(name: str) -> type:
    """A class that accepts any call, attribute, decorator use or ``with``."""
    return type(name, (), {"__init__": lambda self, *a, **k: None,
                           "__call__": lambda self, *a, **k: a[0] if a and callable(a[0]) else self,
                           "__getattr__": lambda self, n: _anything(n)(), "__enter__": lambda self: self,
                           "__exit__": lambda self, *a: False, "__iter__": lambda self: iter(())})


class _Stub(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value = _anything(name)()
        setattr(self, name, value)
        return value


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname.split(".")[0] in STUBBED:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: Any) -> types.ModuleType:
        module = _Stub(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def _prepare() -> Any:
    sys.meta_path.insert(0, _StubFinder())
    easydict = types.ModuleType("easydict")

    class EasyDict(dict):  # wan/configs uses attribute access
        def __init__(self, data: Any = None, **kw: Any) -> None:
            super().__init__(dict(data or {}, **kw))

        def __getattr__(self, name: str) -> Any:
            try:
                return self[name]
            except KeyError:
                raise AttributeError(name) from None

        __setattr__ = dict.__setitem__

    easydict.EasyDict = EasyDict
    sys.modules["easydict"] = easydict
    import torch
    import transformers

    torch.cuda.current_device = lambda: 0  # wan/modules/t5.py calls it for a default argument
    for name in ("CLIPTextModel", "Mistral3ForConditionalGeneration", "Qwen3VLForConditionalGeneration",
                 "Qwen2_5_VLForConditionalGeneration", "T5EncoderModel", "LlamaModel", "CLIPVisionModel",
                 "SiglipVisionModel", "Qwen3ForCausalLM", "Qwen3Model", "AutoModel"):
        try:
            getattr(transformers, name)
        except Exception:  # noqa: BLE001 - text encoders need packages we stub; the DiTs do not use them
            setattr(transformers, name, type(name, (torch.nn.Module,), {}))
    return torch


def per_rank(torch: Any, module: str, model: Any) -> tuple[int, int]:
    """(LoRA parameters per rank, LoRA modules) musubi's network module makes for ``model``."""
    network = importlib.import_module(f"musubi_tuner.networks.{module}").create_arch_network(1.0, 1, 1.0, None, [], model)
    loras = list(network.unet_loras)
    params = sum(p.numel() for m in loras for n, p in m.named_parameters() if n.startswith(("lora_down", "lora_up")))
    return params, len(loras)


def models(torch: Any) -> dict[str, tuple[str, Callable[[], Any]]]:
    """architecture (variant) -> (network module, a function building the DiT)."""
    def wan(task: str) -> Any:
        from musubi_tuner.wan.configs import WAN_CONFIGS
        from musubi_tuner.wan.modules.model import WanModel
        c = WAN_CONFIGS[task]
        return WanModel(model_type="t2v", dim=c.dim, eps=c.eps, ffn_dim=c.ffn_dim, freq_dim=c.freq_dim, in_dim=16,
                        num_heads=c.num_heads, num_layers=c.num_layers, out_dim=16, text_len=512)

    def hv() -> Any:
        from musubi_tuner.hunyuan_model.models import load_dit_model
        return load_dit_model(4096, 768, 16, 16, {"device": "meta", "dtype": torch.float32, "attn_mode": "torch"})

    def hv15() -> Any:
        from musubi_tuner.hunyuan_video_1_5.hunyuan_video_1_5_models import HunyuanVideo_1_5_DiffusionTransformer
        return HunyuanVideo_1_5_DiffusionTransformer(task_type="t2v", attn_mode="torch", split_attn=False)

    def framepack() -> Any:  # the arguments load_packed_model passes
        from musubi_tuner.frame_pack.hunyuan_video_packed import HunyuanVideoTransformer3DModelPacked
        return HunyuanVideoTransformer3DModelPacked(
            attention_head_dim=128, guidance_embeds=True, has_clean_x_embedder=True, has_image_proj=True,
            image_proj_dim=1152, in_channels=16, mlp_ratio=4.0, num_attention_heads=24, num_layers=20,
            num_refiner_layers=2, num_single_layers=40, out_channels=16, patch_size=2, patch_size_t=1,
            pooled_projection_dim=768, qk_norm="rms_norm", rope_axes_dim=(16, 56, 56), rope_theta=256.0,
            text_embed_dim=4096, attn_mode="torch", split_attn=False)

    def kontext() -> Any:
        from musubi_tuner.flux import flux_models
        return flux_models.Flux(flux_models.configs_flux_dev_context.params, "torch", False)

    def flux2(version: str) -> Any:
        from musubi_tuner.flux_2 import flux2_models
        from musubi_tuner.flux_2.flux2_utils import FLUX2_MODEL_INFO
        return flux2_models.Flux2(FLUX2_MODEL_INFO[version].params, "torch", False)

    def qwen() -> Any:
        from musubi_tuner.qwen_image.qwen_image_model import create_model
        return create_model("torch", False, False, False, False, None)

    def zimage() -> Any:
        from musubi_tuner.zimage.zimage_model import create_model
        return create_model("torch", False, None)

    def kandinsky(task: str) -> Any:
        from musubi_tuner.kandinsky5.configs import TASK_CONFIGS
        from musubi_tuner.kandinsky5.models.dit import get_dit
        return get_dit(asdict(TASK_CONFIGS[task].dit_params))

    def ideogram() -> Any:
        from musubi_tuner.ideogram4.ideogram4_model import Ideogram4Config, Ideogram4Transformer
        return Ideogram4Transformer(Ideogram4Config(), attn_mode="torch", split_attn=False)

    def krea() -> Any:
        from musubi_tuner.krea2.krea2_mmdit import SingleStreamDiT
        from musubi_tuner.krea2.krea2_utils import single_mmdit_large_wide
        return SingleStreamDiT(single_mmdit_large_wide, attn_mode="torch", split_attn=False)

    return {
        "HunyuanVideo": ("lora", hv), "HunyuanVideo 1.5": ("lora_hv_1_5", hv15),
        "Wan 2.1/2.2 1.3B": ("lora_wan", lambda: wan("t2v-1.3B")), "Wan 2.1/2.2 14B": ("lora_wan", lambda: wan("t2v-14B")),
        "FramePack": ("lora_framepack", framepack), "FLUX.1 Kontext": ("lora_flux", kontext),
        "FLUX.2 dev": ("lora_flux_2", lambda: flux2("dev")), "FLUX.2 Klein 4B": ("lora_flux_2", lambda: flux2("klein-4b")),
        "FLUX.2 Klein 9B": ("lora_flux_2", lambda: flux2("klein-9b")), "Qwen-Image": ("lora_qwen_image", qwen),
        "Z-Image": ("lora_zimage", zimage),
        "Kandinsky 5 Lite (video)": ("lora_kandinsky", lambda: kandinsky("k5-lite-t2v-5s-sd")),
        "Kandinsky 5 Pro": ("lora_kandinsky", lambda: kandinsky("k5-pro-t2v-5s-sd")),
        "Ideogram 4": ("lora_ideogram4", ideogram), "Krea 2": ("lora_krea2", krea),
    }


def main() -> int:
    source = os.environ.get("MUSUBI_SRC")
    if not source:
        print(__doc__, file=sys.stderr)
        return 2
    sys.path.insert(0, source)
    torch = _prepare()
    print("| architecture | LoRA modules | parameters per rank |")
    print("|---|---|---|")
    for name, (module, build) in models(torch).items():
        with torch.device("meta"):
            model = build()
        params, count = per_rank(torch, module, model)
        print(f"| {name} | {count} | {params:,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
