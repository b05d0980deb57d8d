"""Against a REAL musubi-tuner checkout (skipped unless MUSUBI_TUNER_ROOT points at one with a
venv in <root>/.venv or MUSUBI_TUNER_ENV): every argv the catalogue builds, for every
architecture, step and selector combination, is parsed by the real script's own argparse
parser (via executor/musubi/argparse_probe.py, which stops each script before it loads anything), and
the committed flag facts match the checkout. On machines without CUDA, tests/fixtures/real_musubi/cuda_shim
(or MUSUBI_TUNER_TEST_PYTHONPATH) goes on the scripts' PYTHONPATH: Wan scripts need it to import.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from catalogue_cases import all_models, every_option, selector_combinations
from executor.musubi import catalogue as cat
from executor.musubi.flagfacts import load_flags, probe, probe_environment

pytestmark = pytest.mark.real_musubi
TOOLS = Path(__file__).resolve().parent / "fixtures" / "real_musubi"


def _install() -> tuple[str, str]:
    root = os.environ.get("MUSUBI_TUNER_ROOT", "")
    if not root or not (Path(root) / "src" / "musubi_tuner").is_dir():
        pytest.skip("MUSUBI_TUNER_ROOT does not point at a musubi-tuner checkout")
    venv = Path(os.environ.get("MUSUBI_TUNER_ENV") or Path(root) / ".venv")
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not python.is_file():
        pytest.skip(f"no musubi venv python at {python}")
    return root, str(python)


def _environment(root: str) -> dict[str, str]:
    extra = [p for p in os.environ.get("MUSUBI_TUNER_TEST_PYTHONPATH", "").split(os.pathsep) if p]
    if not extra:
        extra.append(str(TOOLS / "cuda_shim"))
    return probe_environment(root, extra)


RECORDED = load_flags()["scripts"]


def _cases(folder: Path) -> dict[str, list[tuple[str, list[str]]]]:
    """script -> [(case name, argv)], model paths being real (empty) files in ``folder``."""
    for m in {m.name for a in cat.ARCHITECTURES.values() for m in a.models} | {"lora"}:
        (folder / f"{m}.safetensors").write_bytes(b"")
    dataset = folder / "dataset.toml"
    dataset.write_text("[general]\nresolution = [64, 64]\n", encoding="utf-8")
    cases: dict[str, list[tuple[str, list[str]]]] = {}
    for arch in cat.ARCHITECTURES.values():
        models = all_models(arch, str(folder))
        for step in cat.STEPS:
            script = arch.scripts[step]
            for selectors in selector_combinations(arch):
                for label, options in (("recommended", {}),
                                       ("every option", every_option(arch, step, selectors, RECORDED))):
                    argv = cat.build_args(arch.id, step, dataset_config=str(dataset), models=models,
                                          selectors=selectors, options=options, output_dir=str(folder / "out"),
                                          output_name="lora")
                    cases.setdefault(script, []).append((f"{arch.id} {step} {selectors} {label}", argv))
        if cat.CONVERT in arch.scripts:
            argv = cat.build_args(arch.id, cat.CONVERT, models={"lora": str(folder / "lora.safetensors")},
                                  output_dir=str(folder / "out"), output_name="converted")
            cases.setdefault(arch.scripts[cat.CONVERT], []).append((f"{arch.id} convert", argv))
    return cases


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root, python = _install()
    env = _environment(root)
    cases = _cases(tmp_path_factory.mktemp("models"))

    def run(script: str) -> tuple[str, dict]:
        argvs = [argv for _, argv in cases[script]]
        return script, probe(python, root, script, "batch", argv_lists=argvs, env=env, timeout=600)

    # two at a time: each probe imports torch (about 5 s and 1 GB)
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = dict(pool.map(run, sorted(cases)))
    return {"cases": cases, "answers": answers, "root": root}


@pytest.mark.timeout(1800)
def test_every_catalogue_argv_parses_in_the_real_script(parsed: dict) -> None:
    failures = []
    count = 0
    for script, cases in parsed["cases"].items():
        answer = parsed["answers"][script]
        real_flags = answer["facts"]["flags"]
        for (name, argv), result in zip(cases, answer["results"]):
            count += 1
            if not result["ok"]:
                failures.append(f"{script} [{name}]: error={result['error']} unknown={result['unknown']}")
            abbreviated = [t for t in argv if t.startswith("--") and t not in real_flags]
            if abbreviated:
                failures.append(f"{script} [{name}]: not exact flag names {abbreviated}")
    assert not failures, "\n".join(failures[:30])
    assert count > 300
    print(f"{count} argv lists parsed by {len(parsed['cases'])} real scripts")


@pytest.mark.timeout(1800)
def test_recorded_flag_facts_match_the_checkout(parsed: dict) -> None:
    from executor.musubi.flagfacts import _describe_checkout

    commit = _describe_checkout(parsed["root"])["commit"] or ""
    if not commit.startswith(load_flags()["musubi_tuner"]["commit"][:7]):
        pytest.skip(f"checkout {commit[:7]} is not the recorded commit; regenerate with python -m executor.musubi.flagfacts")
    for script, answer in parsed["answers"].items():
        assert answer["facts"]["flags"] == RECORDED[script]["flags"], script
        assert answer["facts"]["positionals"] == RECORDED[script]["positionals"], script


def test_probe_reports_argparse_errors_and_unknown_flags() -> None:
    root, python = _install()
    env = _environment(root)
    script = "zimage_cache_latents.py"
    answer = probe(python, root, script, "batch", env=env, argv_lists=[
        ["--vae", "x"], ["--dataset_config", "d", "--vae_tiling"], ["--dataset_config", "d"]])
    missing, unknown, fine = answer["results"]
    assert not missing["ok"] and "--dataset_config" in missing["error"]
    assert not unknown["ok"] and unknown["unknown"] == ["--vae_tiling"]
    assert fine["ok"]


# ---------------------------------------------------------------------------- Wan end to end

def _png(path: Path, rgb: tuple[int, int, int], size: int = 64) -> None:
    """A solid-colour RGB PNG written with the standard library (the test venv has no PIL)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * size
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * size))
                     + chunk(b"IEND", b""))


def _fixtures_dir() -> Path:
    base = os.environ.get("MUSUBI_TUNER_FIXTURES") or os.path.join(
        os.path.expanduser("~"), ".cache", "musubi-tuner-nodes", "wan-fixtures")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _make_fixture(python: str, env: dict, what: str, out: Path, data: Path) -> None:
    import subprocess

    tool = TOOLS / "make_wan_fixtures.py"
    done = subprocess.run([python, str(tool), what], env={**env, "OUT": str(out), "DATA": str(data)},
                          cwd=str(out), capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.mark.timeout(2400)
def test_wan_plan_runs_end_to_end_on_cpu(tmp_path: Path) -> None:
    """Cache latents and train one epoch through make_plan/execute_plan with tiny random-weight
    Wan2.1 fixtures (text-encoder caches are written by the fixture tool: the real umT5 is 11 GB).
    Opt-in (MUSUBI_TUNER_E2E=1): building the DiT fixture once needs about 12 GB of RAM."""
    import dataclasses

    import psutil

    from executor.setup.settings import load_settings
    from executor.runs.folders import RESULT_FILE
    from executor.runs.execute import execute_plan
    from executor.runs.plan import make_plan

    root, python = _install()
    if os.environ.get("MUSUBI_TUNER_E2E") != "1":
        pytest.skip("set MUSUBI_TUNER_E2E=1 to run the Wan end-to-end run (minutes, up to 12 GB RAM)")
    env = _environment(root)
    fixtures = _fixtures_dir()
    vae, dit = fixtures / "wan21_vae_random_bf16.safetensors", fixtures / "wan21_t2v_1.3B_random_fp32.safetensors"
    need = 13e9 if not dit.is_file() else 8e9
    if psutil.virtual_memory().available < need:
        pytest.skip(f"needs {need / 1e9:.0f} GB of free RAM")

    data = tmp_path / "data"
    images = data / "images"
    images.mkdir(parents=True)
    for name, rgb, caption in (("red", (200, 30, 30), "a red square"), ("green", (30, 200, 30), "a green square"),
                               ("blue", (30, 30, 200), "a blue square")):
        _png(images / f"{name}.png", rgb)
        (images / f"{name}.txt").write_text(caption, encoding="utf-8")
    if not vae.is_file():
        _make_fixture(python, env, "vae", fixtures, data)
    if not dit.is_file():
        _make_fixture(python, env, "dit32", fixtures, data)
    toml = tmp_path / "dataset.toml"
    toml.write_text(
        '[general]\nresolution = [64, 64]\ncaption_extension = ".txt"\nbatch_size = 1\nenable_bucket = false\n\n'
        f'[[datasets]]\nimage_directory = "{images.as_posix()}"\ncache_directory = "{(data / "cache").as_posix()}"\n',
        encoding="utf-8")

    settings = load_settings(environ={"HOME": str(tmp_path), "MUSUBI_TUNER_ROOT": root,
                                      "MUSUBI_TUNER_ENV": str(Path(python).parent.parent)})
    shim = [p for p in env["PYTHONPATH"].split(os.pathsep)[1:] if p]
    settings = dataclasses.replace(settings, env={**settings.env, "PYTHONPATH": os.pathsep.join(shim),
                                                  "HF_HUB_OFFLINE": "1"})
    runs = tmp_path / "runs"

    latents = make_plan(settings, {"architecture": "wan", "step": "cache_latents", "dataset_config": str(toml),
                                   "models": {"vae": str(vae)}, "runs_dir": str(runs)}, use_probe=False)
    assert "--vae" in latents.command.argv
    execute_plan(latents, check=True)
    assert sorted(p.name for p in (data / "cache").glob("*_wan.safetensors")) == [
        "blue_0064x0064_wan.safetensors", "green_0064x0064_wan.safetensors", "red_0064x0064_wan.safetensors"]

    _make_fixture(python, env, "te", fixtures, data)  # *_wan_te.safetensors beside the latents
    out = tmp_path / "out"
    train = make_plan(settings, {
        "architecture": "wan", "step": "train", "dataset_config": str(toml), "models": {"dit": str(dit)},
        "selectors": {"task": "t2v-1.3B"}, "output_dir": str(out), "output_name": "wan_e2e", "runs_dir": str(runs),
        # CPU: no fp8, no bitsandbytes optimizer; a tiny rank and one epoch keep it short
        "options": {"fp8_base": False, "optimizer_type": "adamw", "network_dim": 4, "max_train_epochs": 1}},
        use_probe=False)
    argv = list(train.command.argv)
    assert argv[argv.index("--task") + 1] == "t2v-1.3B" and "--sdpa" in argv
    result = execute_plan(train, check=True)
    assert result.exit_code == 0
    lora = out / "wan_e2e.safetensors"
    assert lora.is_file() and lora.stat().st_size > 1_000_000
    record = json.loads((Path(train.run_dir) / RESULT_FILE).read_text(encoding="utf-8"))
    assert str(lora) in record["files_produced"]


# ---------------------------------------------------------------------------- plans

def _safetensors(path: Path) -> None:
    """The smallest file pre-flight accepts as safetensors: a length and an empty JSON header."""
    path.write_bytes((2).to_bytes(8, "little") + b"{}")


@pytest.mark.timeout(1800)
def test_every_plan_command_parses_in_the_real_script(tmp_path: Path) -> None:
    """The "Done when" of the catalogue issue: for every architecture x step, the command
    make_plan builds (pre-flight included) is accepted by the real script's parser."""
    from executor.setup.settings import load_settings
    from executor.runs.plan import make_plan

    root, python = _install()
    env = _environment(root)
    settings = load_settings(environ={"HOME": str(tmp_path), "MUSUBI_TUNER_ROOT": root,
                                      "MUSUBI_TUNER_ENV": str(Path(python).parent.parent)})
    models = tmp_path / "models"
    models.mkdir()
    for name in {m.name for a in cat.ARCHITECTURES.values() for m in a.models} | {"lora"}:
        _safetensors(models / f"{name}.safetensors")

    by_script: dict[str, list[tuple[str, list[str]]]] = {}
    for arch in cat.ARCHITECTURES.values():
        data = tmp_path / arch.id
        images, controls, cache = data / "images", data / "controls", data / "cache"
        for folder in (images, controls, cache):
            folder.mkdir(parents=True)
        _png(images / "a.png", (10, 20, 30))
        (images / "a.txt").write_text("a caption", encoding="utf-8")
        _png(controls / "a.png", (30, 20, 10))
        # image data everywhere: FramePack takes images only in one-frame mode
        selectors = next(s for s in selector_combinations(arch) if "image" in arch.media_for(s))
        _safetensors(cache / f"a_0064x0064_{arch.suffix(selectors)}.safetensors")
        _safetensors(cache / f"a_{arch.suffix(selectors)}_te.safetensors")
        control = arch.control_for(selectors) in ("required", "exactly_one")
        dataset = {"general": {"resolution": [64, 64], "caption_extension": ".txt", "batch_size": 1},
                   "datasets": [{"image_directory": str(images), "cache_directory": str(cache),
                                 **({"control_directory": str(controls)} if control else {})}]}
        for step in arch.scripts:
            spec = {"architecture": arch.id, "step": step, "runs_dir": str(tmp_path / "runs"), "selectors": selectors,
                    "models": {m.name: str(models / f"{m.name}.safetensors") for m in arch.models
                               if m.kind != "hf_id"}}
            if step == cat.CONVERT:
                spec.update(models={"lora": str(models / "lora.safetensors")}, output_dir=str(tmp_path / "out"),
                            output_name=f"{arch.id}_comfy")
            else:
                spec.update(dataset_config=dataset, output_dir=str(tmp_path / "out"), output_name=f"{arch.id}_lora")
            plan = make_plan(settings, spec, use_probe=False)
            argv = list(plan.command.argv)
            at = next(i for i, a in enumerate(argv) if a.replace("\\", "/").endswith(arch.scripts[step]))
            by_script.setdefault(arch.scripts[step], []).append((f"{arch.id} {step}", argv[at + 1:]))

    def run(script: str) -> tuple[str, dict]:
        argvs = [argv for _, argv in by_script[script]]
        return script, probe(python, root, script, "batch", argv_lists=argvs, env=env, timeout=600)

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = dict(pool.map(run, sorted(by_script)))
    failures = [f"{name}: {result}" for script, cases in by_script.items()
                for (name, _), result in zip(cases, answers[script]["results"]) if not result["ok"]]
    assert not failures, "\n".join(failures)
    assert sum(len(c) for c in by_script.values()) == 3 * len(cat.ARCHITECTURES) + 3
