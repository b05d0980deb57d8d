"""The hardening catalogue as data: every fault, bad input, hostile-but-valid input and security
rule the suite proves, with the outcome a user sees. The catalogue's tests parametrize from these
tables and tag themselves ``@pytest.mark.hardening(kind, case)`` (tests/hardening.py records the
results); ``.ci/hardening_table.py`` reads this file for the totals. Standard library only.

Bad-input channels: ``http_400`` = refused by ``POST /prompt`` (ComfyUI's own type/range/list
checks or the node's VALIDATE_INPUTS); ``execution_error`` = the node raises before anything is
launched (pre-flight: the check needs a wired value or a file's contents); ``launched`` = only the
trainer itself can tell (a wrong model), and the pack turns its error into a clear message.
"""

from __future__ import annotations

KINDS = ("fault", "bad_input", "works", "security", "jobs")

# case -> (what happens, what the user sees)
FAULTS: dict[str, tuple[str, str]] = {
    "sigsegv": ("the trainer crashes with SIGSEGV",
                "execution_error: 'Training failed ...: killed by SIGSEGV', the log's path; no LoRA delivered"),
    "sigkill": ("the trainer is killed by SIGKILL (the OOM killer)",
                "execution_error naming SIGKILL with the 'ran out of system RAM' hint"),
    "dtype_clash": ("the forward pass fails on a dtype clash (mat1/mat2 dtypes, fp8 weights the GPU cannot compute)",
                    "execution_error with the trainer's line and a hint naming fp8, mixed_precision and the DiT "
                    "file's dtype; no LoRA delivered"),
    "exit0_no_lora": ("training exits 0 without writing the LoRA",
                      "execution_error 'train exited 0 but produced no output'; result.json status no_output"),
    "exit0_no_cache": ("latent caching exits 0 without writing cache files",
                       "execution_error on the cache node; result.json status no_output"),
    "hang_timeout": ("the trainer hangs silently past the time limit (command_timeout)",
                     "execution_error 'stopped: it ran longer than the N s time limit' with the setting to raise"),
    "stall": ("the trainer prints nothing for the stall limit (stall_timeout)",
              "execution_error 'stopped: no output for N s' with the setting to raise"),
    "line_10mb": ("the trainer prints a 10 MB line without a newline",
                  "the run succeeds; progress text and error tails stay short; the log keeps every byte"),
    "bad_bytes": ("the trainer prints invalid UTF-8 and a cp932 (Japanese Windows) byte stream",
                  "the run succeeds; text shows U+FFFD for bad bytes; the log keeps the raw bytes"),
    "pipes_held": ("grandchildren keep the pipes open after the trainer exits 0",
                   "the run succeeds within seconds; the leftovers are stopped and the node says so"),
    "comfyui_killed": ("ComfyUI itself is SIGKILLed mid-training",
                       "the supervisor notices and stops the whole trainer tree within seconds"),
    "log_disk_full": ("the run log cannot grow (disk full / file size limit)",
                      "the run goes on and succeeds; the node text and result.json say the log stopped"),
    "same_output_folder": ("two runs target the same output folder at the same time",
                           "the second is refused ('another run ... this run was refused and touched nothing'); "
                           "the first run's files are untouched"),
    "cancel_loading": ("Cancel while the trainer loads its model (silent)",
                       "execution_interrupted; the tree is gone; result.json status cancelled"),
    "cancel_caching": ("Cancel during latent caching",
                       "execution_interrupted; the tree is gone; result.json status cancelled"),
    "cancel_saving": ("Cancel while the final LoRA is being written",
                      "execution_interrupted; the partial file is not delivered to models/loras"),
    "venv_vanishes": ("the musubi venv disappears between pre-flight and launch",
                      "TrainerNotFound naming the missing path and where to set venv_path; nothing started"),
}

# case -> (node.input = value, channel)
BAD_INPUTS: dict[str, tuple[str, str]] = {
    "dataset_dir_empty": ("MusubiDatasetConfig.directory = ''", "http_400"),
    "dataset_dir_outside_read_roots": ("directory = a folder of images outside ComfyUI's folders and read_roots",
                                       "http_400"),
    "control_dir_outside_read_roots": ("control_directory = a folder outside the read roots", "http_400"),
    "dataset_dir_dotdot_missing": ("directory = '../../../no/such/folder'", "http_400"),
    "dataset_dir_is_file": ("directory = an image file", "http_400"),
    "dataset_dir_nul": ("directory with a NUL byte", "http_400"),
    "dataset_dir_10k_chars": ("directory of 10,000 characters", "http_400"),
    "dataset_dir_dash": ("directory = '-rf'", "http_400"),
    "cache_dir_absolute_outside": ("cache_directory = a folder outside the allowed roots", "http_400"),
    "cache_dir_dotdot_escape": ("cache_directory = '../../../../../../../tmp/x'", "http_400"),
    "cache_dir_into_models": ("cache_directory = models/diffusion_models (musubi deletes stale caches)",
                              "http_400"),
    "caption_ext_traversal": ("caption_extension = '/../../../etc/passwd'", "http_400"),
    "caption_ext_nul": ("caption_extension with a NUL byte", "http_400"),
    "target_frames_garbage": ("target_frames = '1, x' (video)", "execution_error"),
    "width_zero": ("width = 0", "http_400"),
    "width_huge": ("width = 10**9", "http_400"),
    "batch_size_negative": ("batch_size = -1", "http_400"),
    "num_repeats_not_a_number": ("num_repeats = 'many'", "http_400"),
    "media_not_in_list": ("media = '../video'", "http_400"),
    "frame_extraction_injection": ("frame_extraction = 'head; rm -rf /'", "http_400"),
    "toml_not_a_dataset": ("MusubiLoadDatasetConfig.path = a TOML that is no dataset config", "execution_error"),
    "toml_path_is_folder": ("path = a folder", "http_400"),
    "toml_path_outside_read_roots": ("path = a dataset TOML outside the read roots", "http_400"),
    "toml_lists_folder_outside_read_roots": ("a dataset TOML in input/ whose image_directory is outside the read roots",
                                             "execution_error"),
    "toml_jsonl_lists_files_outside_read_roots": ("a JSONL dataset in input/ that lists images outside the read roots",
                                                  "execution_error"),
    "toml_path_dash": ("path = '-h'", "http_400"),
    "toml_path_nul": ("path with a NUL byte", "http_400"),
    "toml_syntax_error": ("path = a TOML with a syntax error", "execution_error"),
    "toml_image_dir_is_file": ("a dataset TOML whose image_directory is a file", "execution_error"),
    "toml_cache_outside_roots": ("a dataset TOML whose cache_directory is outside the allowed roots",
                                 "execution_error"),
    "model_path_traversal": ("MusubiModelsWan.dit = '../../../../etc/passwd'", "http_400"),
    "selector_not_in_list": ("task = 't2v-999B'", "http_400"),
    "hf_id_flag_injection": ("MusubiModelsKandinsky5.text_encoder_qwen = '--config_file=/tmp/x'",
                             "execution_error"),
    "hf_id_local_folder_outside_read_roots": ("MusubiModelsKandinsky5.text_encoder_qwen = a local folder outside "
                                              "the read roots (not a Hugging Face id)", "execution_error"),
    "name_dotdot": ("MusubiTrainLoRA.output_name = '../../evil'", "http_400"),
    "name_separators": ("output_name = 'sub/dir\\\\name'", "http_400"),
    "name_con": ("output_name = 'CON'", "http_400"),
    "name_nul_device": ("output_name = 'nul'", "http_400"),
    "name_com1": ("output_name = 'COM1'", "http_400"),
    "name_lpt1_ext": ("output_name = 'lpt1.lora'", "http_400"),
    "name_trailing_dot": ("output_name = 'my_lora.'", "http_400"),
    "name_trailing_space": ("output_name = 'my_lora '", "http_400"),
    "name_dash": ("output_name = '-rf'", "http_400"),
    "name_nul_byte": ("output_name with a NUL byte", "http_400"),
    "name_5000_chars": ("output_name of 5,000 characters", "http_400"),
    "name_empty": ("output_name = ''", "http_400"),
    "extra_output_dir": ("extra_args = '--output_dir /tmp/evil'", "execution_error"),
    "extra_config_file": ("extra_args = '--config_file /tmp/evil.toml'", "execution_error"),
    "extra_python": ("extra_args = '--python /bin/sh'", "execution_error"),
    "extra_dataset_config": ("extra_args = '--dataset_config /tmp/x.toml'", "execution_error"),
    "extra_hf_token": ("extra_args = '--huggingface_token hf_x'", "execution_error"),
    "extra_unknown_flag": ("extra_args = '--no_such_flag 1'", "execution_error"),
    "extra_abbreviation": ("extra_args = '--max_train 5'", "execution_error"),
    "extra_short_flag": ("extra_args = '-o /tmp/x'", "execution_error"),
    "extra_shell_chain": ("extra_args = '--max_grad_norm 1; touch /tmp/pwned'", "execution_error"),
    "extra_nul": ("extra_args with a NUL byte", "execution_error"),
    "extra_unclosed_quote": ("extra_args = '--metadata_title \"open'", "execution_error"),
    "prompt_file_outside_read_roots": ("sample_prompts_file = a text file outside the read roots (musubi logs "
                                       "every prompt)", "http_400"),
    "prompt_file_dotdot": ("sample_prompts_file = '../../../../../../../../etc/hostname'", "http_400"),
    "prompt_file_wired_outside": ("sample_prompts_file wired from a PrimitiveString node, outside the read roots",
                                  "execution_error"),
    "resume_is_file": ("resume = a file's path instead of a run from the list", "http_400"),
    "resume_dash_missing": ("resume = '-x'", "http_400"),
    "resume_planted_state": ("resume = a complete-looking state folder in input/ (where /upload/image writes)",
                             "http_400"),
    "initial_weights_pickle": ("initial_weights = a .pt LoRA in models/loras (a pickle)", "http_400"),
    "optimizer_custom_stdlib": ("optimizer_custom = 'os.system'", "http_400"),
    "optimizer_custom_garbage": ("optimizer_custom = 'x; rm -rf /'", "http_400"),
    "optimizer_args_unclosed": ("optimizer_args = 'betas=\"(0.9'", "execution_error"),
    "gpu_ids_injection": ("gpu_ids = '0; rm -rf /'", "http_400"),
    "gpu_ids_not_numbers": ("gpu_ids = 'cuda:0'", "http_400"),
    "gpu_ids_beyond_gpu_count": ("gpu_ids = '0,3' when the venv sees 2 GPUs", "execution_error"),
    "learning_rate_nan": ("learning_rate = NaN (JSON allows it; every range check passes NaN)", "http_400"),
    "network_alpha_infinite": ("network_alpha = Infinity", "http_400"),
    "discrete_flow_shift_minus_infinity": ("discrete_flow_shift = -Infinity", "http_400"),
    "source_fps_nan": ("MusubiDatasetConfig.source_fps = NaN", "http_400"),
    "network_dim_negative": ("network_dim = -1", "http_400"),
    "learning_rate_too_big": ("learning_rate = 5.0", "http_400"),
    "seed_negative": ("seed = -1", "http_400"),
    "epochs_huge": ("max_train_epochs = 10**12", "http_400"),
    "blocks_to_swap_over_limit": ("blocks_to_swap = 100 (Wan 1.3B allows fewer)", "execution_error"),
    "launcher_not_in_list": ("launcher = 'bash'", "http_400"),
    "initial_weights_traversal": ("initial_weights = '../../../etc/passwd'", "http_400"),
    "warmup_with_constant": ("lr_warmup_steps = 10 with the constant scheduler", "execution_error"),
    "num_processes_zero": ("num_processes = 0", "http_400"),
    "cache_workers_huge": ("MusubiCacheLatents.num_workers = 10**6", "http_400"),
    "vae_dtype_not_in_list": ("MusubiCacheLatents.vae_dtype = 'float64'", "http_400"),
    "wrong_architecture_model": ("a DiT of another size (musubi's 'size mismatch for ...')", "launched"),
}

# hostile-looking inputs that are valid and must work end to end
WORKS: dict[str, str] = {
    "unicode_and_spaces_everywhere": "ComfyUI, musubi-tuner, its venv and the dataset all live under paths with "
                                     "spaces and non-ASCII characters; the whole chain trains and delivers",
    "shell_metacharacters_inert": "a dataset folder and an extra argument full of ; | & $( ) ` ' \" < > run as plain "
                                  "text; command.txt quotes them so a shell gives the same argv back",
    "dash_folder_name": "a dataset folder named '-weird' trains (argv holds absolute paths only)",
}

SECURITY: dict[str, str] = {
    "no_input_picks_the_interpreter": "no node input changes argv[0], the musubi root or the launcher "
                                      "(every text input set to a decoy venv/checkout; the decoys never run)",
    "settings_not_writable_over_http": "ComfyUI's /userdata and /upload routes cannot reach the pack's settings "
                                       "file",
    "only_catalogue_scripts": "only scripts named by the catalogue, inside <root>/src/musubi_tuner, are run",
    "writes_stay_in_roots": "a full run writes only under ComfyUI's output/input folders and models/loras/musubi-tuner",
    "reads_stay_in_roots": "no workflow makes musubi read (and echo) a file outside ComfyUI's input/output/models "
                           "folders or the read_roots of the server's settings; the refusal names the line that "
                           "allows a folder, and that line works",
    "no_eval_exec": "no eval/exec/compile in the pack (AST) and ruff S102,S307,E702 is clean",
    "no_runtime_install": "no subprocess call installs anything (no pip/ensurepip/uv); no shell; argv lists only",
    "only_recorded_states": "resume loads only training states the pack recorded as musubi wrote them (path, "
                            "per-file SHA-256, run, in the pack's data folder), through a verified private copy; a "
                            "state planted or changed through ComfyUI's upload route is refused before launch",
    "secrets_never_shown": "HF_TOKEN / WANDB_API_KEY / *SECRET* values never appear in command.txt, plan.json, "
                           "result.json, run.log, progress text, errors or history",
}

# Background jobs (docs/background-training.md, rendered by .ci/jobs_table.py): case -> (what
# happens, what the job does). Their tests also record "jobs_stuck": jobs left in a non-final state.
JOBS: dict[str, tuple[str, str]] = {
    "comfyui_sigterm": ("ComfyUI is stopped with SIGTERM mid-training, then started again",
                        "the job trains on; at start it is re-attached, its progress continues from where it "
                        "was, it finishes and its LoRA is delivered to models/loras"),
    "comfyui_sigkill": ("ComfyUI is killed with SIGKILL (its whole process group) mid-training, then started again",
                        "the same: re-attached, progress continues, finished, LoRA delivered"),
    "ended_while_down": ("the training ends while ComfyUI is down",
                         "at the next start the job is succeeded and its LoRA is delivered"),
    "trainer_killed_while_down": ("the trainer is killed while ComfyUI is down",
                                  "at the next start the job is failed with its reason, hint and log tail; never "
                                  "running"),
    "power_loss": ("the job's wrapper and trainer die together, leaving no exit record (a power cut)",
                   "the job is lost with its log tail and a result.json; never running"),
    "trainer_crash": ("the trainer crashes, runs out of memory or exits 0 without a LoRA in a background job",
                      "failed with the same message, hint and loss history as the same run in the foreground"),
    "stop_route": ("Stop on a running job (POST /musubi-tuner/jobs/{id}/stop, or the command line)",
                   "the whole process tree is gone within 2 s; the job is cancelled"),
    "stop_ignored": ("the job's wrapper cannot act on a stop (frozen)",
                     "5 s later the backstop kills it and its tree; the job is cancelled"),
    "launch_not_recorded": ("the manager died between starting a job and recording it",
                            "at start the job is queued again (nothing ran) and then runs"),
    "gpu_unavailable": ("a job is pinned to a GPU that is reserved or absent",
                        "failed at once (it could never start), naming the settings to change"),
    "folder_busy": ("two jobs write into one output folder",
                    "the second waits until the first ended, then runs"),
    "store_race": ("several processes move the same jobs in the store at once",
                   "every job is moved exactly once"),
    "second_manager": ("two ComfyUIs of one user (or the command line) manage one job store",
                       "one leads, the other only watches; a stop from either ends the job"),
}

TABLES = {"fault": FAULTS, "bad_input": BAD_INPUTS, "works": WORKS, "security": SECURITY, "jobs": JOBS}


def case_ids(kind: str) -> list[str]:
    return list(TABLES[kind])
