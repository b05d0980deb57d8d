"""Against a REAL musubi-tuner checkout (skipped unless MUSUBI_TUNER_ROOT points at one with a
venv in <root>/.venv or MUSUBI_TUNER_ENV): every argv the catalogue builds, for every
architecture, step and selector combination, is parsed by the real script's own argparse
parser (via executor/argparse_probe.py, which stops each script before it loads anything), and
the committed flag facts match the checkout. On machines without CUDA, ../shared/tools/cuda_shim
(or MUSUBI_TUNER_TEST_PYTHONPATH) goes on the scripts' PYTHONPATH: Wan scripts need it to import.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from catalogue_cases import all_models, every_option, selector_combinations
from executor import catalogue as cat
from executor.flagfacts import load_flags, probe, probe_environment

pytestmark = pytest.mark.real_musubi
SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


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
    shim = SHARED / "tools" / "cuda_shim"
    if not extra and shim.is_dir():
        extra.append(str(shim))
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
    from executor.flagfacts import _describe_checkout

    commit = _describe_checkout(parsed["root"])["commit"] or ""
    if not commit.startswith(load_flags()["musubi_tuner"]["commit"][:7]):
        pytest.skip(f"checkout {commit[:7]} is not the recorded commit; regenerate with python -m executor.flagfacts")
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
