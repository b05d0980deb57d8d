"""Known musubi-tuner failures: output line -> kind + a hint saying what to change.

``SIGNATURES`` is an ordered table (most specific first, the first signature
that matches any line wins), in the spirit of httpx's exception mapping. The
messages are musubi-tuner v0.3.4's, PyTorch's, argparse's and accelerate's.
Pure: standard library only, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence, Union

from .events import Failure
from .musubi import split_log_prefix

__all__ = [
    "Signature", "SIGNATURES", "KINDS", "classify", "first_match", "real_exit_code", "empty_dataset_failure",
]

_Hint = Union[str, Callable[["re.Match[str]"], str]]

# How far back a signature's `context` pattern may be (a traceback's frames
# sit right above its last line).
CONTEXT_LINES = 12
_SIGKILL = 9  # signal.SIGKILL does not exist on Windows

_VENV = "musubi-tuner's own Python environment (its venv, not ComfyUI's)"


@dataclass(frozen=True)
class Signature:
    """One known failure: a regex searched in each output line.

    ``hint`` is a ``str.format`` template filled from the pattern's named
    groups, or a function of the match. ``context``, when set, must also be
    found in the :data:`CONTEXT_LINES` lines before the matching one.
    """

    kind: str
    pattern: "re.Pattern[str]"
    hint: _Hint
    context: Optional["re.Pattern[str]"] = None

    def hint_for(self, match: "re.Match[str]") -> str:
        if callable(self.hint):
            return self.hint(match)
        groups = {k: (v or "").strip() for k, v in match.groupdict().items()}
        return self.hint.format(**groups)

    def search(self, lines: Sequence[str]) -> Optional[tuple[int, "re.Match[str]"]]:
        """The last line matching this signature, as (index, match)."""
        for index in range(len(lines) - 1, -1, -1):
            match = self.pattern.search(lines[index])
            if match is None:
                continue
            if self.context is not None:
                window = lines[max(0, index - CONTEXT_LINES):index]
                if not any(self.context.search(line) for line in window):
                    continue
            return index, match
        return None


def _sig(kind: str, pattern: str, hint: _Hint, context: Optional[str] = None) -> Signature:
    return Signature(kind, re.compile(pattern), hint, re.compile(context) if context else None)


# An exception's last traceback line: `ValueError: ...`, `voluptuous.error.MultipleInvalid: ...`.
_EXC = r"^(?:[\w.]+\.)?"
_ARGPARSE = r"^(?:[^\s:]+|accelerate\b[^:]*): error: "

# pip names for import names that differ from them.
_PIP_NAMES = {
    "cv2": "opencv-python", "PIL": "pillow", "yaml": "pyyaml", "sklearn": "scikit-learn",
    "google": "protobuf", "av": "av", "toml": "toml", "safetensors": "safetensors",
    "prodigyopt": "prodigyopt", "schedulefree": "schedulefree", "came_pytorch": "came-pytorch",
}


def _missing_module_hint(match: "re.Match[str]") -> str:
    module = match["module"]
    top = module.split(".")[0]
    package = _PIP_NAMES.get(top, top.replace("_", "-"))
    return (f"The Python module '{module}' is not installed in {_VENV}. Install it there "
            f"(for example `python -m pip install {package}` run with that venv's python), or run "
            f"`pip install -e .` in the musubi-tuner folder to install everything musubi-tuner needs.")


def _optimizer_hint(match: "re.Match[str]") -> str:
    name = match["name"]
    if not name:
        return ("No optimizer was chosen. Set optimizer_type, for example AdamW, AdamW8bit or Adafactor.")
    return (f"'{name}' is not an optimizer PyTorch knows. Check the spelling of optimizer_type (for example "
            f"AdamW, AdamW8bit, Adafactor), or give a full import path such as prodigyopt.Prodigy after "
            f"installing that package into {_VENV}.")


def _config_key(path: str) -> str:
    """``['datasets'][0]['source_fps']`` -> ``source_fps in dataset 1``."""
    parts = re.findall(r"\[([^\]]+)\]", path)
    names = [p.strip("'\"") for p in parts]
    if not names:
        return "a setting"
    key = names[-1]
    if names[0] == "general" and len(names) > 1:
        return f"'{key}' in [general]"
    if names[0] == "datasets" and len(names) > 2 and names[1].isdigit():
        return f"'{key}' in dataset {int(names[1]) + 1}"
    return f"'{key}'"


def _extra_key_hint(match: "re.Match[str]") -> str:
    where = _config_key(match["path"])
    return (f"The dataset config has the setting {where}, which is not allowed there. Remove it or move it "
            f"(cache_directory and the image/video folders belong to each dataset, not [general]; video "
            f"settings such as target_frames only work in a video dataset); also check its spelling.")


def _wrong_type_hint(match: "re.Match[str]") -> str:
    where = _config_key(match["path"])
    expected = match["expected"]
    examples = {"int": "a whole number, or [width, height] for resolution", "float": "a number with a decimal "
                "point, such as 30.0", "a list": "a list in square brackets, such as [1, 25, 45]",
                "bool": "true or false", "str": "text in quotes"}
    return (f"The dataset config value of {where} has the wrong type: it must be "
            f"{examples.get(expected, expected)}. Fix that value in the dataset config.")


def _argparse_hint(match: "re.Match[str]") -> str:
    return (f"musubi-tuner rejected its command line ({match['detail'].strip()}). This usually means the "
            f"pack and the installed musubi-tuner version do not match: update musubi-tuner, or check the "
            f"extra arguments you added.")


_SIGNATURE_TABLE: tuple[Signature, ...] = (
    # --- memory -------------------------------------------------------------
    _sig("out_of_memory",
         r"torch\.(?:cuda\.)?OutOfMemoryError|CUDA out of memory|CUDA error: out of memory"
         r"|HIP out of memory|MPS backend out of memory",
         "The GPU ran out of memory. Use less VRAM: raise blocks_to_swap, turn on fp8_base (and fp8_scaled), "
         "turn on gradient_checkpointing, lower the resolution, batch size or number of frames, and close "
         "other programs that use the GPU (including a running ComfyUI workflow)."),
    _sig("out_of_memory",
         r"DefaultCPUAllocator: (?:can't allocate memory|not enough memory)|^MemoryError\b"
         r"|Unable to allocate [\d.]+ \w?i?B|WinError 1455|paging file is too small",
         "The computer ran out of system RAM. Close other programs, lower blocks_to_swap (swapped blocks "
         "live in RAM), use fp8_base, lower the number of data loader workers, or enlarge the swap/page file."),
    _sig("interrupted", r"^KeyboardInterrupt\b",
         "The trainer was interrupted (Ctrl+C or a stop request). Nothing after the last saved checkpoint "
         "was kept; start the run again, or continue it from a saved state."),
    # --- data ---------------------------------------------------------------
    _sig("no_training_items", r"No training items found in the dataset",
         "Training found no cached data. Run both caching steps (latents, then text encoder outputs) for "
         "this architecture and model version first, with the same dataset config, and train with that "
         "config; caches made for another model family or version are not used."),
    _sig("video_dataset_unsupported", r"Unsupported architecture: (?P<arch>\S+)",
         "This model family trains on images only, but the dataset config contains a video dataset. "
         "Remove video_directory / video_jsonl_file datasets or use image datasets."),
    _sig("control_images_mismatch",
         r"Could not find matching control (?:images|videos) for \d+|Not enough control images for "
         r"|Some images do not have control paths in JSONL data|no multiple-target images found"
         r"|All multiple-target images must have the same number of targets",
         "The control images do not match the training images. Every image needs a control image with the "
         "same file name (any extension; name_0, name_1 ... for several) in control_directory, or a "
         "control_path in the JSONL file."),
    _sig("image_too_small", r"Image or video size too small",
         "An image or video is smaller than the training resolution allows. Remove tiny files from the "
         "dataset folder or lower the resolution."),
    _sig("toml_syntax",
         r"Error on parsing (?:TOML|JSON) config file|TomlDecodeError|TOMLDecodeError"
         r"|^json\.decoder\.JSONDecodeError",
         "The dataset config file is not valid TOML/JSON (the error line says where). Fix quotes, brackets "
         "and commas there; text values need quotes and Windows paths need / or doubled backslashes."),
    _sig("dataset_config", r"extra keys not allowed @ data(?P<path>(?:\[[^\]]+\])+)", _extra_key_hint),
    _sig("dataset_config",
         r"expected (?P<expected>a list|\w+) for dictionary value @ data(?P<path>(?:\[[^\]]+\])+)",
         _wrong_type_hint),
    _sig("dataset_config", r"cache directory should be unique for each dataset",
         "Two datasets use the same cache folder. Give every dataset its own cache_directory (without one, "
         "the image or video folder is used)."),
    _sig("dataset_config", r"not supported config file format",
         "The dataset config must be a .toml or .json file."),
    _sig("dataset_config", r"frame_extraction (?P<value>\S+) is not supported",
         "frame_extraction {value} is not valid: use head, chunk, slide, uniform or full."),
    _sig("dataset_config", r"failed to load json: .* @ (?P<path>.+)",
         "A line of the JSONL metadata file {path} is not valid JSON. Each line must be one JSON object, "
         "for example {{\"image_path\": \"a.png\", \"caption\": \"...\"}}."),
    _sig("dataset_config", r"MultipleInvalid: (?P<detail>.+)|Invalid user config",
         "The dataset config has a setting musubi-tuner does not accept. Compare it with the dataset config "
         "documentation: allowed keys, value types, and which keys go in [general] or in each dataset."),
    # --- attention ----------------------------------------------------------
    _sig("no_attention_backend", r"either --sdpa, --flash-attn.* must be specified",
         "No attention implementation was chosen. Pick one, for example sdpa (always available)."),
    _sig("sage_attention_training", r"SageAttention doesn't support training",
         "SageAttention cannot be used for training. Choose sdpa, xformers or flash attention instead."),
    _sig("attention_library_missing",
         _EXC + r"(?:ModuleNotFoundError|ImportError): No module named '(?P<module>flash_attn\w*|xformers|"
                r"sageattention|flash_attn_interface)",
         "The attention library {module} is not installed in " + _VENV + ". Install it there, or choose "
         "sdpa attention, which needs nothing extra."),
    _sig("attention_library_missing",
         r"has no attribute '(?P<attr>memory_efficient_attention|flash_attn_func|flash_attn_varlen_func|sageattn\w*)'",
         "The chosen attention library (xformers, flash-attn or sageattention) is not installed in "
         + _VENV + ". Install it there, or choose sdpa attention."),
    _sig("attention_library_missing", r"'NoneType' object is not callable",
         "The chosen attention library (xformers, flash-attn or sageattention) is not installed in "
         + _VENV + ". Install it there, or choose sdpa attention.",
         context=r"attention|attn"),
    # --- optional packages --------------------------------------------------
    _sig("no_bitsandbytes", r"No bitsandbytes",
         "This optimizer (an 8-bit one such as AdamW8bit) needs bitsandbytes, which is not installed in "
         + _VENV + ". Install bitsandbytes there or choose AdamW."),
    _sig("logging_setup", r"No wandb",
         "Logging to Weights & Biases needs the wandb package in " + _VENV + ". Install it or log with "
         "tensorboard instead."),
    _sig("logging_setup", r"logging_dir is required when log_with",
         "Set a logging folder (logging_dir) or turn logging off."),
    _sig("missing_module", r"No module named '(?P<module>musubi_tuner)\b",
         "musubi-tuner itself cannot be imported. Check that the musubi-tuner folder in the settings is the "
         "checkout that contains src/musubi_tuner, and run `pip install -e .` in that folder with its venv."),
    _sig("missing_module", _EXC + r"(?:ModuleNotFoundError|ImportError): No module named '(?P<module>[^']+)'",
         _missing_module_hint),
    _sig("missing_module", _EXC + r"ImportError: cannot import name '(?P<name>[^']+)' from '(?P<module>[^']+)'",
         "The installed version of {module} does not fit musubi-tuner. Reinstall musubi-tuner's requirements: "
         "run `pip install -e .` in the musubi-tuner folder with its own venv (not ComfyUI's)."),
    # --- precision / memory options -----------------------------------------
    _sig("fp8_requires_fp8_base", r"fp8_scaled requires fp8_base",
         "fp8_scaled only works together with fp8_base. Turn on fp8_base, or turn off fp8_scaled."),
    _sig("fp8_already_scaled", r"already in fp8 format, cannot scale to fp8",
         "This model file is already in fp8. Turn off fp8_scaled (keep fp8_base), or use the bf16/fp16 file."),
    _sig("mixed_precision_mismatch", r"DiT weights are in bf16, mixed precision must be bf16 or no",
         "This model file is bf16. Set mixed precision to bf16 (or no)."),
    # A dtype clash in the forward pass: the settings disagree with the DiT file's dtype (PyTorch's
    # messages for matmul/linear, convolutions, attention and fp8 type promotion), or fp8 weights
    # reach an operation this GPU or precision cannot compute in fp8.
    _sig("fp8_unsupported",
         r"not implemented for 'Float8_e\dm\d\w*'|_scaled_mm is only supported on CUDA devices with compute"
         r"|Float8 types? (?:is|are) not supported",
         "fp8 weights reached an operation this GPU (or the CPU) cannot compute in fp8 with these settings. "
         "Set fp8 to off and train from a bf16 or fp16 DiT file with mixed_precision bf16 (fp16 for an fp16 "
         "file), or keep fp8 with fp8_base + fp8_scaled, which stores the weights in fp8 but computes in "
         "mixed_precision; computing in fp8 itself needs a GPU of compute capability 8.9 or newer (RTX 40xx, "
         "H100). An fp8 DiT file needs fp8_base on."),
    _sig("dtype_mismatch",
         r"mat1 and mat2 (?:must )?(?:to )?have the same dtype|expected scalar type \w+ but found \w+"
         r"|Input type \(.+\) and (?:weight|bias) type \(.+\) should be the same"
         r"|Expected query, key,? and value to have the same dtype|Promotion for Float8 Types is not supported",
         "The DiT computed with two different number types (dtypes) at once, so the precision settings do "
         "not fit the DiT file's dtype. Make them agree: mixed_precision bf16 for a bf16 DiT file (fp16 for "
         "an fp16 file, or no for fp32); for an fp8 DiT file turn fp8 on (fp8_base), for a bf16/fp16 file "
         "try fp8 off or fp8_base + fp8_scaled; and pick the DiT file made for the selected model type "
         "(not a file converted to another dtype)."),
    _sig("block_swap_limit", r"Cannot swap more than (?P<max>\d+)",
         "blocks_to_swap is larger than this model allows. Set blocks_to_swap to {max} or less."),
    _sig("block_swap_limit", r"--blocks_to_swap for Ideogram 4 must be <= (?P<max>\d+)",
         "blocks_to_swap is larger than this model allows. Set blocks_to_swap to {max} or less."),
    _sig("block_swap_conflict", r"--block_swap_h2d_only requires --gradient_checkpointing",
         "block_swap_h2d_only needs gradient_checkpointing. Turn gradient_checkpointing on."),
    _sig("block_swap_conflict", r"Block swap is not supported with offloading inactive DiT"
         r"|is not supported together with --blocks_to_swap",
         "Block swapping cannot be combined with the DiT offloading option you turned on. Turn one of them off."),
    # --- model / weights ----------------------------------------------------
    _sig("weights_mismatch",
         r"Error\(s\) in loading state_dict|size mismatch for |^AssertionError: Missing keys"
         r"|Missing key\(s\) in state_dict|Unexpected key\(s\) in state_dict",
         "The model file does not fit the selected model type. Pick the task / model version that matches "
         "the DiT file (for example t2v-1.3B vs t2v-14B, or i2v vs t2v), or choose the DiT file made for "
         "that task."),
    _sig("no_lora_modules", r"No LoRA modules found|No LoRA modules\. Please check",
         "The LoRA network module does not fit this model family. Use the network module of the same "
         "architecture as the training script (for example networks.lora_wan for Wan)."),
    _sig("resume_missing", r"Tried to find (?P<path>.+?) but folder does not exist",
         "The folder to resume from does not exist: {path}. Choose an existing *-state folder written by "
         "an earlier run with save_state, or clear the resume setting."),
    _sig("optimizer_missing", r"module 'torch\.optim' has no attribute '(?P<name>[^']*)'", _optimizer_hint),
    _sig("scheduler_warmup", r"(?P<name>\S+) does not require `num_warmup_steps`",
         "The learning-rate scheduler {name} has no warm-up. Set the warm-up steps to 0."),
    _sig("scheduler_invalid", r"adafactor scheduler must be used with Adafactor optimizer",
         "The adafactor scheduler only works with the Adafactor optimizer. Change one of them."),
    _sig("scheduler_invalid", r"'(?P<name>[^']*)' is not a valid SchedulerType",
         "'{name}' is not a learning-rate scheduler name. Use for example constant, cosine, linear or "
         "constant_with_warmup."),
    _sig("data_loader_workers", r"persistent_workers option needs num_workers > 0",
         "persistent_data_loader_workers needs at least one data loader worker. Set max_data_loader_n_workers "
         "to 1 or more, or turn persistent workers off."),
    # --- GPU / environment --------------------------------------------------
    _sig("no_gpu",
         r"fp16 mixed precision requires a GPU|Torch not compiled with CUDA enabled|No CUDA GPUs are available"
         r"|Found no NVIDIA driver on your system",
         "musubi-tuner's PyTorch cannot see a CUDA GPU. Install the CUDA build of PyTorch in " + _VENV +
         ", check the NVIDIA driver and CUDA_VISIBLE_DEVICES, or set mixed precision to no for a CPU test run."),
    _sig("cuda_incompatible", r"no kernel image is available for execution on the device",
         "The PyTorch installed in " + _VENV + " does not support this GPU. Install a PyTorch build for your "
         "GPU's CUDA version (newer GPUs need a newer build)."),
    _sig("download_failed",
         r"LocalEntryNotFoundError|outgoing traffic has been disabled|couldn't connect to 'https://huggingface\.co'",
         "musubi-tuner needed to download a tokenizer or config from Hugging Face and could not. Connect to "
         "the internet for the first run, or unset HF_HUB_OFFLINE, or point HF_HOME to a cache that has it."),
    # --- missing inputs and files -------------------------------------------
    _sig("missing_required_input", r"(?P<what>dataset_config|path to DiT model) is required",
         "A required input is empty: {what}. Set it and run again."),
    _sig("missing_required_input", r"\b(?:vae|ae|VAE) checkpoint is required|--vae is required for",
         "Caching latents needs the VAE (or AE) model file. Set the VAE path."),
    _sig("missing_required_input", r"CLIP path is required for I2V|--i2v requires --image_encoder",
         "Image-to-video training needs the image encoder (CLIP) model file. Set it, or train text-to-video."),
    _sig("missing_file", _EXC + r"FileNotFoundError: \[Errno 2\] No such file or directory: ''",
         "musubi-tuner tried to open a file with an empty name, usually a caption file: set caption_extension "
         "(for example .txt) in the dataset config and give every image a caption file."),
    _sig("missing_file", r"file not found / [^:]*: (?P<path>.+)",
         "The dataset config file does not exist: {path}. Check the path."),
    _sig("missing_file",
         _EXC + r"FileNotFoundError: (?:\[Errno \d+\] )?(?:No such file or directory: |File )?"
                r"['\"]?(?P<path>.*?)['\"]?(?: not found)?$",
         "A file musubi-tuner needs does not exist: {path}. Check the model, VAE, text encoder and dataset "
         "paths (a moved or renamed file, or a typo)."),
    _sig("missing_file", r"is not a local folder and is not a valid model identifier|HFValidationError",
         "A model path does not exist, so it was taken for a Hugging Face model name. Check the model and "
         "text encoder paths."),
    # --- command line ---------------------------------------------------------
    _sig("bad_arguments", _ARGPARSE + r"the following arguments are required: (?P<args>.+)",
         "A required option is missing: {args}. Set the matching input (the cache and training scripts each "
         "need their model files and the dataset config)."),
    _sig("bad_arguments", _ARGPARSE + r"unrecognized arguments: (?P<args>.+)",
         "This musubi-tuner version does not know the option(s) {args}. Update musubi-tuner, or remove them "
         "from the extra arguments."),
    _sig("bad_arguments", _ARGPARSE + r"argument (?P<arg>\S+): invalid choice: (?P<value>'[^']*'|\S+)"
         r"(?: \(choose from (?P<choices>.+)\))?",
         "{value} is not allowed for {arg}. Use one of: {choices}."),
    _sig("bad_arguments", _ARGPARSE + r"ambiguous option: (?P<arg>\S+) could match (?P<matches>.+)",
         "{arg} is a shortened option name that fits several options ({matches}). Write the full option name."),
    _sig("bad_arguments", _ARGPARSE + r"argument (?P<arg>\S+): invalid (?P<type>\w+) value: (?P<value>.+)",
         "{arg} must be a number of type {type}, not {value}. Enter a number there (a whole number for int)."),
    _sig("bad_arguments", _ARGPARSE + r"(?P<detail>.+)", _argparse_hint),
)

SIGNATURES: tuple[Signature, ...] = _SIGNATURE_TABLE

EMPTY_DATASET = "empty_dataset"
KILLED = "killed"

# Every kind classify() can return, each once, in table order.
KINDS: tuple[str, ...] = tuple(dict.fromkeys([s.kind for s in SIGNATURES] + [EMPTY_DATASET, KILLED]))

_EMPTY_HINT = ("musubi-tuner found no images or videos in the dataset, so nothing was cached or trained. Check "
               "image_directory / video_directory in the dataset config, and give every image a caption file "
               "with the caption_extension (for example .txt): images without one are skipped.")
_KILLED_HINT = ("The trainer was killed without an error message. When nobody stopped it, the computer most "
                "likely ran out of system RAM: close other programs, lower blocks_to_swap or the number of data "
                "loader workers, or add swap space.")

_ITEM_COUNT = re.compile(r"(?:found|loaded) (\d+) (?:images|videos)$")
_CALLED_PROCESS = re.compile(r"returned non-zero exit status (-?\d+)\.|died with <Signals\.\w+: (\d+)>\.")


def real_exit_code(lines: Iterable[str], exit_code: Optional[int]) -> Optional[int]:
    """The trainer's own exit code when ``accelerate launch`` hid it.

    accelerate re-raises a failed child as ``subprocess.CalledProcessError``
    (``... returned non-zero exit status N.`` / ``died with <Signals.SIGKILL: 9>.``)
    and itself exits 1. Returns ``exit_code`` when no such line is present.
    """
    if exit_code == 0:
        return exit_code
    found = exit_code
    for line in lines:
        if "exit status" in line or "died with" in line:
            match = _CALLED_PROCESS.search(line)
            if match is not None:
                found = int(match[1]) if match[1] is not None else -int(match[2])
    return found


def empty_dataset_failure(lines: Iterable[str]) -> Optional[Failure]:
    """``found 0 images`` for every dataset: a failure even though musubi exits 0."""
    counts: list[int] = []
    last = ""
    for line in lines:
        match = _ITEM_COUNT.search(split_log_prefix(line.strip())[2].strip())
        if match is not None:
            counts.append(int(match[1]))
            if match[1] == "0":
                last = line.strip()
    if counts and sum(counts) == 0:
        return Failure(EMPTY_DATASET, _EMPTY_HINT, last)
    return None


def first_match(lines: Sequence[str]) -> Optional[tuple[Signature, str, "re.Match[str]"]]:
    """The winning signature for ``lines``: the first in table order that
    matches any line, with the last line it matched (stripped) and its match."""
    lines = [line.strip() for line in lines]
    for signature in SIGNATURES:
        hit = signature.search(lines)
        if hit is not None:
            index, match = hit
            return signature, lines[index], match
    return None


def classify(lines: Iterable[str], exit_code: Optional[int]) -> Optional[Failure]:
    """The known failure behind this output, or None.

    ``lines`` are output lines without progress frames (a tail is enough, as
    long as it still holds the ``found N images`` lines for the empty-dataset
    check). Signatures apply only when the run did not exit 0 (``None`` =
    unknown counts as not 0); an empty dataset is reported even after exit 0.
    """
    lines = list(lines)
    code = real_exit_code(lines, exit_code)
    if code != 0:
        found = first_match(lines)
        if found is not None:
            signature, line, match = found
            return Failure(signature.kind, signature.hint_for(match), line)
        if code == -_SIGKILL:
            return Failure(KILLED, _KILLED_HINT, "")
    return empty_dataset_failure(lines)
