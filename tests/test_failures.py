"""The failure table: every signature has a sample line of ours, a kind and a usable hint."""

from __future__ import annotations

import re

import pytest

from parsers.failures import KINDS, SIGNATURES, classify, first_match, real_exit_code

TRACEBACK = ["Traceback (most recent call last):",
             '  File "/opt/musubi/src/musubi_tuner/train.py", line 9, in <module>']

# A failure in the training loop's forward pass, as musubi's traceback starts (the captures keep only
# the File lines; source lines are replaced the same way) and as accelerate reports the child after it.
SOURCE = "    <source line not kept>"
FORWARD = ["Traceback (most recent call last):",
           '  File "/opt/musubi/src/musubi_tuner/wan_train_network.py", line 772, in <module>', SOURCE,
           '  File "/opt/musubi/src/musubi_tuner/training/trainer_base.py", line 2041, in _run_training_loop', SOURCE,
           '  File "/venv/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1773, in _wrapped_call_impl',
           SOURCE]
ACCELERATE_FAILED = ("subprocess.CalledProcessError: Command '['/venv/bin/python', 'wan_train_network.py']' "
                     "returned non-zero exit status 1.")

# (output lines, expected kind, text the hint must contain). The last line is the signature's.
CASES: list[tuple[list[str], str, str]] = [
    # memory
    (["torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has 0 bytes free."],
     "out_of_memory", "blocks_to_swap"),
    (["torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB"], "out_of_memory", "VRAM"),
    (["RuntimeError: CUDA error: out of memory"], "out_of_memory", "fp8_base"),
    (["RuntimeError: [enforce fail] DefaultCPUAllocator: not enough memory: you tried to allocate 9 bytes."],
     "out_of_memory", "system RAM"),
    (["KeyboardInterrupt"], "interrupted", "interrupted"),
    # data
    (["ValueError: No training items found in the dataset. Please ensure the cache exists. / (ja)"],
     "no_training_items", "both caching steps"),
    (["ValueError: Unsupported architecture: qwen_image"], "video_dataset_unsupported", "images only"),
    (["ValueError: Could not find matching control images for 4 images"], "control_images_mismatch",
     "control_directory"),
    (["ValueError: Image or video size too small: cat and 0 more, size: (8, 8)"], "image_too_small", "resolution"),
    (["ERROR:musubi_tuner.dataset.config_utils:Error on parsing TOML config file. Please check the format. / "
      "(ja): /data/set.toml",
      "toml.decoder.TomlDecodeError: Unbalanced quotes (line 3 column 20 char 41)"], "toml_syntax", "quotes"),
    (["voluptuous.error.MultipleInvalid: extra keys not allowed @ data['general']['cache_directory']"],
     "dataset_config", "'cache_directory' in [general]"),
    (["ERROR:musubi_tuner.dataset.config_utils:Invalid user config / (ja)",
      "voluptuous.error.MultipleInvalid: expected float for dictionary value @ data['datasets'][0]['source_fps']"],
     "dataset_config", "'source_fps' in dataset 1"),
    (["voluptuous.error.MultipleInvalid: expected a list for dictionary value @ data['datasets'][1]['target_frames']"],
     "dataset_config", "square brackets"),
    (["ValueError: cache directory should be unique for each dataset (note that ...) / (ja)"], "dataset_config",
     "own cache_directory"),
    (["ValueError: not supported config file format / (ja): /data/set.yaml"], "dataset_config", ".toml"),
    (["ValueError: frame_extraction middle is not supported"], "dataset_config", "frame_extraction middle"),
    (["ERROR:musubi_tuner.dataset.datasources:failed to load json: {oops @ /data/meta.jsonl"], "dataset_config",
     "/data/meta.jsonl"),
    (["voluptuous.error.MultipleInvalid: not a valid value for dictionary value @ data['x']"], "dataset_config",
     "does not accept"),
    # attention
    (["ValueError: either --sdpa, --flash-attn, --flash3, --sage-attn or --xformers must be specified / (ja)"],
     "no_attention_backend", "sdpa"),
    (["ValueError: SageAttention doesn't support training currently. Please use `--sdpa` etc. / (ja)"],
     "sage_attention_training", "sdpa"),
    (TRACEBACK + ["ModuleNotFoundError: No module named 'flash_attn'"], "attention_library_missing", "flash_attn"),
    (["AttributeError: 'NoneType' object has no attribute 'memory_efficient_attention'"],
     "attention_library_missing", "sdpa"),
    (TRACEBACK + ['  File "/opt/musubi/src/musubi_tuner/modules/attention.py", line 80, in attention',
                  "    x = attn_fn(q, k, v)",
                  "TypeError: 'NoneType' object is not callable"], "attention_library_missing", "sdpa"),
    # optional packages
    (["ImportError: No bitsandbytes / (ja)"], "no_bitsandbytes", "AdamW"),
    (["ImportError: No wandb / (ja)"], "logging_setup", "wandb"),
    (["ValueError: logging_dir is required when log_with is tensorboard / (ja)"], "logging_setup", "logging_dir"),
    (TRACEBACK + ["ModuleNotFoundError: No module named 'musubi_tuner'"], "missing_module", "pip install -e ."),
    (TRACEBACK + ["ModuleNotFoundError: No module named 'cv2'"], "missing_module", "pip install opencv-python"),
    (TRACEBACK + ["ModuleNotFoundError: No module named 'einops.layers'"], "missing_module", "'einops.layers'"),
    (["ImportError: cannot import name 'cached_download' from 'huggingface_hub' (/venv/lib/hf.py)"],
     "missing_module", "huggingface_hub"),
    # precision and memory options
    (["AssertionError: fp8_scaled requires fp8_base / (ja)"], "fp8_requires_fp8_base", "fp8_base"),
    (["ValueError: DiT weights is already in fp8 format, cannot scale to fp8. Use bf16 weights."],
     "fp8_already_scaled", "fp8_scaled"),
    (["ValueError: DiT weights are in bf16, mixed precision must be bf16 or no"], "mixed_precision_mismatch",
     "bf16"),
    (["AssertionError: Cannot swap more than 39 blocks. Requested 45 blocks to swap."], "block_swap_limit",
     "39 or less"),
    (["ValueError: --blocks_to_swap for Ideogram 4 must be <= 33"], "block_swap_limit", "33 or less"),
    (["ValueError: --block_swap_h2d_only requires --gradient_checkpointing for training"], "block_swap_conflict",
     "gradient_checkpointing"),
    (["ValueError: Block swap is not supported with offloading inactive DiT / (ja)"], "block_swap_conflict",
     "Turn one of them off"),
    # dtype clashes in the forward pass (tracebacks as musubi prints them; source lines not kept)
    (FORWARD + ['  File "/venv/lib/python3.11/site-packages/torch/nn/modules/linear.py", line 125, in forward',
                SOURCE, "RuntimeError: mat1 and mat2 must have the same dtype, but got Float8_e4m3fn and BFloat16",
                ACCELERATE_FAILED], "dtype_mismatch", "mixed_precision"),
    (FORWARD + ["RuntimeError: expected mat1 and mat2 to have the same dtype, but got: float != c10::BFloat16"],
     "dtype_mismatch", "DiT file's dtype"),
    (FORWARD + ['  File "/venv/lib/python3.11/site-packages/torch/nn/functional.py", line 2910, in layer_norm',
                SOURCE, "RuntimeError: expected scalar type BFloat16 but found Float"], "dtype_mismatch", "fp8"),
    (FORWARD + ['  File "/venv/lib/python3.11/site-packages/torch/nn/modules/conv.py", line 717, in _conv_forward',
                SOURCE, "RuntimeError: Input type (c10::BFloat16) and bias type (float) should be the same"],
     "dtype_mismatch", "mixed_precision bf16 for a bf16 DiT file"),
    (FORWARD + ["RuntimeError: Input type (torch.cuda.HalfTensor) and weight type (torch.cuda.FloatTensor) should "
                "be the same"], "dtype_mismatch", "fp16"),
    (FORWARD + ['  File "/opt/musubi/src/musubi_tuner/modules/attention.py", line 102, in attention', SOURCE,
                "RuntimeError: Expected query, key, and value to have the same dtype, but got query.dtype: "
                "c10::BFloat16 key.dtype: float and value.dtype: float instead."], "dtype_mismatch", "fp8_base"),
    (FORWARD + ["RuntimeError: Promotion for Float8 Types is not supported, attempted to promote Float8_e4m3fn "
                "and BFloat16"], "dtype_mismatch", "fp8"),
    (FORWARD + ['  File "/venv/lib/python3.11/site-packages/torch/nn/modules/linear.py", line 125, in forward',
                SOURCE, "NotImplementedError: \"addmm_cuda\" not implemented for 'Float8_e4m3fn'",
                ACCELERATE_FAILED], "fp8_unsupported", "fp8 to off"),
    (FORWARD + ["RuntimeError: \"mul_cpu_reduced_float\" not implemented for 'Float8_e4m3fn'"], "fp8_unsupported",
     "mixed_precision"),
    (FORWARD + ["RuntimeError: torch._scaled_mm is only supported on CUDA devices with compute capability >= 9.0 "
                "or 8.9, or ROCm MI300+"], "fp8_unsupported", "compute capability 8.9"),
    # model and weights
    (["RuntimeError: Error(s) in loading state_dict for WanModel:",
      "\tsize mismatch for blocks.0.weight: copying a param with shape [5120] ..."], "weights_mismatch", "task"),
    (["AssertionError: Missing keys: ['blocks.0.cross_attn.k_img.weight']"], "weights_mismatch", "DiT file"),
    (["RuntimeError: No LoRA modules found"], "no_lora_modules", "network module"),
    (["ValueError: Tried to find /out/run-state but folder does not exist"], "resume_missing", "/out/run-state"),
    (["AttributeError: module 'torch.optim' has no attribute 'AdamW9bit'"], "optimizer_missing", "'AdamW9bit'"),
    (["AttributeError: module 'torch.optim' has no attribute ''"], "optimizer_missing", "No optimizer was chosen"),
    (["ValueError: constant does not require `num_warmup_steps`. Set None or 0."], "scheduler_warmup",
     "warm-up steps to 0"),
    (["ValueError: adafactor scheduler must be used with Adafactor optimizer / (ja)"], "scheduler_invalid",
     "Adafactor"),
    (["ValueError: 'cosinus' is not a valid SchedulerType, please select one of ['linear', 'cosine']"],
     "scheduler_invalid", "'cosinus'"),
    (["ValueError: persistent_workers option needs num_workers > 0"], "data_loader_workers",
     "max_data_loader_n_workers"),
    # GPU and environment
    (["ValueError: fp16 mixed precision requires a GPU (not 'mps')."], "no_gpu", "CUDA build of PyTorch"),
    (["AssertionError: Torch not compiled with CUDA enabled"], "no_gpu", "NVIDIA driver"),
    (["RuntimeError: CUDA error: no kernel image is available for execution on the device"],
     "cuda_incompatible", "PyTorch build"),
    (["huggingface_hub.errors.LocalEntryNotFoundError: Cannot find the requested files in the local cache."],
     "download_failed", "HF_HUB_OFFLINE"),
    # missing inputs and files
    (["ValueError: path to DiT model is required / (ja)"], "missing_required_input", "path to DiT model"),
    (["AssertionError: vae checkpoint is required"], "missing_required_input", "VAE path"),
    (["ValueError: --i2v requires --image_encoder to be set."], "missing_required_input", "image encoder"),
    (TRACEBACK + ["FileNotFoundError: [Errno 2] No such file or directory: ''"], "missing_file",
     "caption_extension"),
    (["ValueError: file not found / (ja): /data/missing.toml"], "missing_file", "/data/missing.toml"),
    (TRACEBACK + ["FileNotFoundError: [Errno 2] No such file or directory: '/models/t5.pth'"], "missing_file",
     "does not exist: /models/t5.pth."),
    (["FileNotFoundError: File /models/dit.safetensors not found"], "missing_file",
     "does not exist: /models/dit.safetensors."),
    (['FileNotFoundError: No such file or directory: "/models/vae.safetensors"'], "missing_file",
     "does not exist: /models/vae.safetensors."),
    (["OSError: /models/qwen is not a local folder and is not a valid model identifier listed on the Hub"],
     "missing_file", "model path"),
    # command line (argparse)
    (["usage: train.py [-h] --dit DIT", "train.py: error: the following arguments are required: --dit"],
     "bad_arguments", "--dit"),
    (["train.py: error: unrecognized arguments: --vae_tiling --foo"], "bad_arguments", "--vae_tiling --foo"),
    (["train.py: error: argument --task: invalid choice: 'bad' (choose from 't2v-14B', 't2v-1.3B')"],
     "bad_arguments", "'t2v-14B', 't2v-1.3B'"),
    (["train.py: error: ambiguous option: --fp8 could match --fp8_base, --fp8_scaled"], "bad_arguments",
     "full option name"),
    (["train.py: error: argument --network_dim: invalid int value: 'abc'"], "bad_arguments", "number of type int"),
    (["train.py: error: argument --seed: expected one argument"], "bad_arguments", "expected one argument"),
]


def _case_id(case: tuple[list[str], str, str]) -> str:
    return f"{case[1]}:{case[0][-1][:40]}"


@pytest.mark.parametrize("lines, kind, fragment", CASES, ids=[_case_id(c) for c in CASES])
def test_sample_line_is_classified_with_a_helpful_hint(lines: list[str], kind: str, fragment: str):
    failure = classify(lines, 1)
    assert failure is not None, lines[-1]
    assert failure.kind == kind
    assert fragment in failure.hint
    assert failure.message in [line.strip() for line in lines]


@pytest.mark.parametrize("index", range(len(SIGNATURES)))
def test_every_signature_wins_for_one_of_our_sample_lines(index: int):
    signature = SIGNATURES[index]
    winners = [first_match(lines) for lines, _, _ in CASES]
    assert any(w is not None and w[0] is signature for w in winners), signature.pattern.pattern


@pytest.mark.parametrize("lines, kind, fragment", CASES, ids=[_case_id(c) for c in CASES])
def test_hints_are_filled_sentences(lines: list[str], kind: str, fragment: str):
    hint = classify(lines, 1).hint
    assert hint.strip() and hint.rstrip().endswith(".")
    assert not re.search(r"\{\w+\}", hint), "unfilled template field"


def test_kinds_are_unique_snake_case_strings():
    assert len(KINDS) == len(set(KINDS))
    assert all(re.fullmatch(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*", kind) for kind in KINDS)
    assert {signature.kind for signature in SIGNATURES} | {"empty_dataset", "killed"} == set(KINDS)


def test_the_kinds_the_executor_relies_on_exist():
    assert {"out_of_memory", "missing_module", "missing_file", "bad_arguments", "dataset_config", "toml_syntax",
            "no_training_items", "empty_dataset", "no_attention_backend", "attention_library_missing",
            "fp8_requires_fp8_base", "no_bitsandbytes", "block_swap_limit", "weights_mismatch", "resume_missing",
            "optimizer_missing"} <= set(KINDS)


def test_static_hints_are_written_for_people_not_programs():
    for signature in SIGNATURES:
        if isinstance(signature.hint, str):
            assert len(signature.hint.split()) >= 5, signature.kind


# --- what must not be mistaken for a failure -------------------------------------------------

def test_nothing_is_reported_for_a_successful_exit():
    assert classify(["torch.OutOfMemoryError: CUDA out of memory."], 0) is None


def test_library_warning_naming_a_missing_module_is_not_a_failure():
    warning = ("WARNING:bitsandbytes.backends.cpu.ops:Failed to load CPU gemm_4bit_forward from kernels-community: "
               "No module named 'kernels'. Please make sure you already `pip install kernels`")
    assert classify([warning, "Failed to import sageattention"], 1) is None


def test_nonetype_not_callable_away_from_attention_code_is_unknown():
    lines = TRACEBACK + ['  File "/opt/musubi/src/musubi_tuner/dataset/loader.py", line 5, in load',
                         "TypeError: 'NoneType' object is not callable"]
    assert classify(lines, 1) is None


def test_log_line_containing_error_colon_is_not_an_argparse_error():
    assert classify(["INFO:musubi_tuner.x:retry: error: transient, will retry"], 1) is None


def test_unknown_exception_is_left_to_the_caller():
    assert classify(TRACEBACK + ["ValueError: something nobody has seen before"], 1) is None


def test_most_specific_signature_wins_over_line_order():
    lines = ["torch.OutOfMemoryError: CUDA out of memory.", "ModuleNotFoundError: No module named 'x'"]
    assert classify(lines, 1).kind == "out_of_memory"


def test_the_last_matching_line_is_the_message():
    lines = ["FileNotFoundError: File /a not found", "FileNotFoundError: File /b not found"]
    assert classify(lines, 1).message == "FileNotFoundError: File /b not found"


# --- exit codes ------------------------------------------------------------------------------

ACCELERATE = ("subprocess.CalledProcessError: Command '['/venv/bin/python', 'train.py']' "
              "returned non-zero exit status 3.")


def test_real_exit_code_unwraps_accelerate():
    assert real_exit_code(["boom", ACCELERATE], 1) == 3


def test_real_exit_code_of_a_child_killed_by_a_signal():
    line = "subprocess.CalledProcessError: Command '['python', 'train.py']' died with <Signals.SIGKILL: 9>."
    assert real_exit_code([line], 1) == -9


def test_real_exit_code_without_wrapper_is_the_exit_code():
    assert real_exit_code(["ValueError: x"], 1) == 1
    assert real_exit_code([], None) is None
    assert real_exit_code([ACCELERATE], 0) == 0


def test_killed_without_message_suggests_system_memory():
    failure = classify(["INFO:x:still training"], -9)
    assert failure.kind == "killed" and "RAM" in failure.hint


def test_killed_grandchild_behind_accelerate_is_reported_as_killed():
    line = "subprocess.CalledProcessError: Command '['python', 'train.py']' died with <Signals.SIGKILL: 9>."
    assert classify([line], 1).kind == "killed"


def test_other_signals_are_not_classified():
    assert classify(["INFO:x:training"], -15) is None


# --- empty dataset: musubi exits 0 ----------------------------------------------------------

FOUND_NONE = "INFO:musubi_tuner.dataset.datasources:found 0 images"


def test_found_zero_images_is_a_failure_even_after_exit_0():
    failure = classify(["INFO:__main__:Load dataset config from /d/set.toml", FOUND_NONE, "0it [00:00, ?it/s]"], 0)
    assert failure.kind == "empty_dataset"
    assert failure.message == FOUND_NONE
    assert "caption" in failure.hint


def test_one_empty_dataset_among_full_ones_is_not_a_failure():
    assert classify([FOUND_NONE, "INFO:musubi_tuner.dataset.datasources:loaded 5 videos"], 0) is None


def test_empty_dataset_explains_an_otherwise_unknown_failure():
    assert classify([FOUND_NONE, "ValueError: something else"], 1).kind == "empty_dataset"


def test_a_known_signature_beats_the_empty_dataset():
    lines = [FOUND_NONE, "ValueError: No training items found in the dataset."]
    assert classify(lines, 1).kind == "no_training_items"


@pytest.mark.parametrize("kind", ["dtype_mismatch", "fp8_unsupported"])
def test_dtype_clash_hints_name_the_settings_to_change(kind: str):
    hint = next(s.hint for s in SIGNATURES if s.kind == kind)
    for setting in ("fp8", "mixed_precision", "DiT file"):
        assert setting in hint, (kind, setting)
    assert "bf16" in hint and "fp16" in hint


def test_a_dtype_clash_is_not_mistaken_for_a_wrong_model():
    lines = FORWARD + ["RuntimeError: mat1 and mat2 shapes cannot be multiplied (77x4096 and 768x1536)"]
    failure = classify(lines, 1)
    assert failure is None or failure.kind != "dtype_mismatch"
