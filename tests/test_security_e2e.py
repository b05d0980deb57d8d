"""The security stance against a real ComfyUI 0.3.75, through its HTTP API as anyone who can reach
a ``--listen`` server would use it:

- every text input of every pack node is classified (read path, write path, name, data); none
  chooses the interpreter, the musubi checkout or the launcher, and a workflow that points every
  text input at a decoy venv and checkout never runs the decoys;
- ComfyUI's own file routes (/userdata, /upload/image) cannot reach the pack's settings file;
- a workflow cannot have musubi read (and echo into the log) a file outside ComfyUI's input,
  output and models folders or the settings' read_roots; the refusal names the settings line that
  allows the folder, and that line works;
- a full run writes only inside ComfyUI's output and input folders, models/loras/musubi-tuner,
  and the pack's own venv-probe cache;
- secret values in the environment (HF_TOKEN, WANDB_API_KEY, *SECRET*) appear in no file of the
  run folder, no websocket message, no history entry and no error, although the trainer prints
  them.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("hardening", "hardening_e2e")  # before they are imported below

from comfy_harness import ComfyHTTPError  # noqa: E402
from executor.musubi import catalogue as cat  # noqa: E402
from hardening_e2e import Hard, error_text  # noqa: E402

pytestmark = pytest.mark.comfyui
pytest_plugins = ["hardening", "hardening_e2e"]

# Every free-text input of the pack, by what it is. A new one fails the test until it is placed here.
READ_PATHS = {("MusubiDatasetConfig", "directory"), ("MusubiDatasetConfig", "control_directory"),
              ("MusubiLoadDatasetConfig", "path"), ("MusubiSampleOptions", "sample_prompts_file")}
WRITE_PATHS = {("MusubiDatasetConfig", "cache_directory")}  # must stay inside the write roots
NAMES = {("MusubiTrainLoRA", "output_name")}  # a file name, never a path
IDS = {("MusubiWaitForJob", "job_id")}  # 32 hexadecimal characters, else refused
DATA = {("MusubiDatasetConfig", "caption_extension"), ("MusubiDatasetConfig", "target_frames"),
        ("MusubiOptimizerOptions", "optimizer_custom"), ("MusubiOptimizerOptions", "optimizer_args"),
        ("MusubiTrainLoRA", "sample_prompts"), ("MusubiLaunchOptions", "gpu_ids"), ("MusubiLaunchOptions", "extra_args")}
PROGRAM_WORDS = re.compile(r"venv|python|interpreter|executable|root|checkout|script|command|launcher_path|shell",
                           re.IGNORECASE)


def models_node_id(arch: cat.Architecture) -> str:
    return "MusubiModels" + "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", arch.id) if p)


def hf_id_inputs() -> set[tuple[str, str]]:
    return {(models_node_id(a), m.name) for a in cat.ARCHITECTURES.values() for m in a.models if m.kind == "hf_id"}


@pytest.mark.hardening("security", "no_input_picks_the_interpreter")
@pytest.mark.timeout(120)
def test_every_text_input_is_classified_and_none_names_a_program(hard: Hard) -> None:
    info = hard.client.object_info()
    text_inputs, combos = set(), {}
    for node_id, node in info.items():
        if not node_id.startswith("Musubi"):
            continue
        for group in ("required", "optional"):
            for name, spec in node["input"].get(group, {}).items():
                if spec[0] == "STRING":
                    text_inputs.add((node_id, name))
                elif isinstance(spec[0], list):
                    combos[(node_id, name)] = spec[0]
    known = READ_PATHS | WRITE_PATHS | NAMES | IDS | DATA | hf_id_inputs()
    assert text_inputs == known, f"unclassified: {sorted(text_inputs - known)}; gone: {sorted(known - text_inputs)}"
    for node_id, name in text_inputs | set(combos):
        assert not PROGRAM_WORDS.search(name), f"{node_id}.{name} sounds like it picks a program"
    assert combos[("MusubiLaunchOptions", "launcher")] == ["accelerate", "python"], "a launcher is a form, not a path"


def decoy_tree(root: Path, canary: Path) -> dict[str, Path]:
    """A venv and a musubi checkout that, if ever run, leave the canary file."""
    venv_python = root / "venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text(f"#!/bin/sh\ntouch '{canary}'\n", encoding="utf-8")
    venv_python.chmod(0o755)
    package = root / "src" / "musubi_tuner"
    package.mkdir(parents=True)
    for script in ("wan_train_network.py", "wan_cache_latents.py", "wan_cache_text_encoder_outputs.py"):
        (package / script).write_text(f"open({str(canary)!r}, 'w').close()\n", encoding="utf-8")
    state = root / "decoy-state"
    state.mkdir()
    (state / "python").write_text("", encoding="utf-8")
    return {"python": venv_python, "root": root, "venv": root / "venv", "state": state}


@pytest.mark.hardening("security", "no_input_picks_the_interpreter")
@pytest.mark.timeout(240)
def test_a_workflow_pointing_every_text_input_at_a_decoy_runs_only_the_configured_musubi(
        hard: Hard, tmp_path: Path) -> None:
    canary = tmp_path / "decoy ran"
    decoy = decoy_tree(tmp_path / "decoy musubi", canary)
    images = hard.image_folder("sec_decoy", 2)
    # the media folder is inside the decoy checkout, beside its venv and scripts
    media = decoy["root"] / "images"
    (hard.base / "input" / images).rename(media)
    hard.configure(read_roots=[str(tmp_path)])  # the server's settings allow reading the decoy's folder
    values = f"python={decoy['python']} root={decoy['root']} venv={decoy['venv']}"
    prompt = hard.workflow(str(media), output_name="venv",
                           extra_args=f"--metadata_title {json.dumps(values)} "
                                      f"--metadata_description {json.dumps(str(decoy['python']))}",
                           optimizer_args="weight_decay=0.01", gpu_ids="0")
    prompt["5"]["inputs"]["sample_prompts"] = f"a photo --i {decoy['python']}"
    prompt["5"]["inputs"]["launcher"] = "python"
    run = hard.run(prompt, timeout=180)
    assert run.outcome == "success", run.terminal.data.get("exception_message") if run.terminal else run.types[-20:]
    assert not canary.exists(), "a decoy ran"
    for message in run.of_type("executed"):
        argv = message.data["output"].get("argv")
        if not argv:
            continue
        assert argv[0] == str(hard.fake.python), argv[:3]
        scripts = [a for a in argv if a.endswith(".py")]
        assert scripts and scripts[0].startswith(str(hard.fake.root / "src" / "musubi_tuner")), scripts
        assert not any(a.startswith(str(decoy["root"])) and a.endswith(("python", ".py")) and i < argv.index(scripts[0])
                       for i, a in enumerate(argv))
    run_dir = Path(run.of_type("executed")[-1].data["output"]["run_dir"][0])
    plan = json.loads((run_dir / "plan.json").read_text(encoding="utf-8"))
    assert plan["cwd"] == str(hard.fake.root)
    for name in ("PATH", "PYTHONPATH", "VIRTUAL_ENV"):
        assert str(decoy["root"]) not in plan["env"].get(name, ""), name


@pytest.mark.hardening("security", "settings_not_writable_over_http")
@pytest.mark.timeout(120)
def test_comfyuis_file_routes_cannot_reach_the_settings_file(hard: Hard) -> None:
    config = Hard.config_path(hard.server)
    before = config.read_bytes()
    user = hard.base / "user"
    files_before = {p for p in user.rglob("*") if p.is_file()}
    evil = json.dumps({"musubi_tuner": {"venv_path": "/tmp/evil-venv"}}).encode()
    attempts = ["../__musubi-tuner-nodes/config.json", "../../user/__musubi-tuner-nodes/config.json",
                "__musubi-tuner-nodes/../../__musubi-tuner-nodes/config.json", "/" + str(config)]
    answers = []
    for target in attempts:
        quoted = urllib.parse.quote(target, safe="")
        try:
            hard.client.request("POST", f"/userdata/{quoted}?overwrite=true", None)
        except ComfyHTTPError as error:
            answers.append(error.status)
        raw = _raw_post(hard, f"/userdata/{quoted}?overwrite=true", evil, "application/octet-stream")
        answers.append(raw)
    for subfolder, kind in (("../user/__musubi-tuner-nodes", "input"), ("../../user/__musubi-tuner-nodes", "output"),
                            ("../custom_nodes/musubi-tuner-nodes", "input")):
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"config.json\"\r\n"
                f"Content-Type: application/json\r\n\r\n").encode() + evil + (
            f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"subfolder\"\r\n\r\n{subfolder}"
            f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\n{kind}"
            f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"overwrite\"\r\n\r\ntrue"
            f"\r\n--{boundary}--\r\n").encode()
        answers.append(_raw_post(hard, "/upload/image", body, f"multipart/form-data; boundary={boundary}"))
    assert all(code >= 400 for code in answers), answers
    assert config.read_bytes() == before, "the settings file changed"
    assert {p for p in user.rglob("*") if p.is_file()} == files_before
    assert not (hard.base / "custom_nodes" / "musubi-tuner-nodes" / "config.json.tmp").exists()
    pack_config = Path(hard.server.pack_path) / "config.json"
    assert b"evil-venv" not in pack_config.read_bytes()


def _raw_post(hard: Hard, path: str, body: bytes, content_type: str) -> int:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(hard.client.url + path, data=body, method="POST",
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.hardening("security", "writes_stay_in_roots")
@pytest.mark.timeout(240)
def test_a_full_run_writes_only_inside_the_allowed_folders(hard: Hard, tmp_path: Path) -> None:
    probe_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "musubi-tuner-nodes"
    roots = (hard.base, hard.fake.root, hard.fake.venv, tmp_path)
    folder = hard.image_folder("sec_roots", 2)
    before = hard.snapshot(*roots)
    run = hard.run(hard.workflow(folder, output_name="roots_lora"))
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types[-20:]
    after = hard.snapshot(*roots)
    written = sorted(p for p, digest in after.items() if before.get(p) != digest)
    allowed = [str(hard.base / "output") + os.sep, str(hard.loras_dir) + os.sep, str(hard.base / "comfyui.log"),
               str(probe_cache) + os.sep]
    outside = [p for p in written if not any(p == a or p.startswith(a) for a in allowed)
               and f"{os.sep}__pycache__{os.sep}" not in p and p != str(hard.pidfile)]  # the test's own pid list
    assert outside == [], outside
    assert any(p.startswith(str(hard.loras_dir)) for p in written)


@pytest.mark.hardening("security", "reads_stay_in_roots")
@pytest.mark.timeout(240)
def test_a_prompt_file_outside_the_read_roots_is_refused_and_the_line_the_refusal_names_allows_it(
        hard: Hard, tmp_path: Path) -> None:
    server_files = tmp_path / "server files"
    server_files.mkdir()
    prompts = server_files / "notes.txt"
    prompts.write_text("a line of a server file --w 64 --h 64\n", encoding="utf-8")
    folder = hard.image_folder("sec_reads", 2)
    cached = hard.run(hard.workflow(folder, train=False))
    assert cached.outcome == "success", cached.types[-20:]
    # training alone: with a valid output node beside it, ComfyUI would run the rest and skip it
    prompt = hard.workflow(folder, cache=False, output_name="reads_lora", sample_prompts_file=str(prompts))
    runs_before, pids_before = hard.run_folders(), hard.pids()
    with pytest.raises(ComfyHTTPError) as refused:
        hard.client.queue_prompt(prompt)
    assert refused.value.status == 400
    details = " ".join(e.get("details", "") for node in refused.value.node_errors.values()
                       for e in node.get("errors", []))
    assert f"sample_prompts_file {prompts} is outside the folders this pack may read from" in details, details
    assert hard.pids() == pids_before and hard.run_folders() == runs_before, "something ran"
    # wired in from another node, the same file is refused by pre-flight, before any launch
    wired = json.loads(json.dumps(prompt))
    wired["9"] = {"class_type": "PrimitiveString", "inputs": {"value": str(prompts)}}
    wired["5"]["inputs"]["sample_prompts_file"] = ["9", 0]
    run = hard.run(wired)
    assert run.outcome == "error" and "outside the folders this pack may read from" in error_text(run)
    assert hard.pids() == pids_before and hard.run_folders() == runs_before, "something ran"
    # the refusal names the file and the exact line; written there as said, the same prompt trains
    found = re.search(r"add this line inside the \{ \} of the settings file (.+?): (\"read_roots\": \[.*?\],)", details)
    assert found, details
    config = Path(found[1])
    assert config == Hard.config_path(hard.server)
    config.write_text(config.read_text(encoding="utf-8").replace("{", "{" + found[2] + " ", 1), encoding="utf-8")
    run = hard.run(prompt)
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types[-20:]
    run_dir = Path(run.of_type("executed")[-1].data["output"]["run_dir"][0])
    assert "prompt: a line of a server file" in (run_dir / "run.log").read_text(encoding="utf-8")
    # the Setup Check node lists what may be read: ComfyUI's folders and the line just added
    check = hard.run({"1": {"class_type": "MusubiSetupCheck", "inputs": {"refresh": False}}})
    report = check.of_type("executed")[-1].data["output"]["text"][0]
    listed = report.split("read_roots (musubi may be given files from):", 1)[1]
    for folder in (hard.base / "input", hard.base / "output", hard.base / "models", server_files):
        assert f"\n    {folder}\n" in listed, report


SECRETS = {"HF_TOKEN": "hf_e2eSecretTokenValue_0001", "WANDB_API_KEY": "wandb0123456789abcdef0123456789abcdef",
           "MY_SERVICE_SECRET": "s3cr3t-Value-That-Must-Not-Show"}


@pytest.mark.hardening("security", "secrets_never_shown")
@pytest.mark.timeout(300)
def test_secret_values_never_reach_files_messages_history_or_errors(hard: Hard) -> None:
    runs_before = hard.run_folders()
    log_before = hard.server.log_path.stat().st_size
    seen: list[str] = []

    def collect(run: Any, prompt_id: str) -> None:
        for m in run.messages:
            seen.append(json.dumps(m.data, ensure_ascii=False))
        seen.append(json.dumps(hard.client.history(prompt_id), ensure_ascii=False))

    folder = hard.image_folder("sec_secrets", 2)
    cases = [("leak_env", hard.workflow(folder, output_name="secret_lora")),
             ("leak_env,oom", hard.workflow(folder, cache=False, output_name="secret_oom")),
             ("leak_env", {**hard.workflow(folder, cache=False, output_name="secret_dry", dry_run=True)}),
             ("leak_env", {"1": {"class_type": "MusubiSetupCheck", "inputs": {"refresh": True}}})]
    outcomes = []
    for scenario, prompt in cases:
        hard.configure(env={**SECRETS, "FAKE_MUSUBI_SCENARIO": scenario})
        with hard.client.socket() as sock:
            prompt_id = hard.client.queue_prompt(prompt)["prompt_id"]
            run = sock.collect(prompt_id, timeout=180)
        outcomes.append(run.outcome)
        collect(run, prompt_id)
    assert outcomes == ["success", "error", "success", "success"], outcomes
    files = [p for d in hard.run_folders() - runs_before for p in d.rglob("*") if p.is_file()]
    assert any(p.name == "run.log" for p in files)
    leaked = []
    for path in files:
        data = path.read_bytes()
        leaked += [f"{path.name}: {k}" for k, v in SECRETS.items() if v.encode() in data]
    with open(hard.server.log_path, "rb") as log:
        log.seek(log_before)
        server_log = log.read()
    leaked += [f"ComfyUI's log: {k}" for k, v in SECRETS.items() if v.encode() in server_log]
    leaked += [f"websocket/history: {k}" for k, v in SECRETS.items() for text in seen if v in text]
    assert leaked == []
    logs = b"".join(p.read_bytes() for p in files if p.name == "run.log")
    assert b"***" in logs, "the trainer printed the secrets, masked"
