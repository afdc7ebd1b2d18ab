"""Every YAML file in configs/ loads into its sections' typed configs and starts with its command;
`prm config get` resolves values and stops on a typo in any section."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from prm.app.stages import section_classes
from prm.config import load_section, read_yaml

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
YAML_FILES = sorted(CONFIGS.rglob("*.yaml"))


def test_there_are_configs():
    assert YAML_FILES, "configs/ holds no YAML file"


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_config_loads(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and path.name in first, f"{path} must begin with a comment giving its command"
    classes = section_classes()
    data = read_yaml(path)
    for section in data:
        assert section in classes, f"{path}: unknown section '{section}' (known: {sorted(classes)})"
        load_section(classes[section], section, path, [])


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.json")), ids=lambda p: p.name)
def test_json_configs_parse(path):
    assert isinstance(json.loads(path.read_text()), dict)


def _prm(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prm", *args], capture_output=True, text=True, cwd=cwd)


def test_config_get_resolves_overrides():
    quick = str(CONFIGS / "quickstart.yaml")
    assert _prm("config", "get", quick, "train.max_steps", "max_steps=7", "sample.n=2", cwd=CONFIGS).stdout == "7\n"
    lora = json.loads(_prm("config", "get", quick, "train.lora", "train.lora.r=4", cwd=CONFIGS).stdout)
    assert lora["r"] == 4 and lora["modules_to_save"] == ["score"]
    assert _prm("config", "get", str(CONFIGS / "train_tiny.yaml"), "train.output_dir", "output_dir=/x/y",
                cwd=CONFIGS).stdout == "/x/y\n"


@pytest.mark.parametrize("case", ["override", "section", "key", "yaml_section"])
def test_config_get_and_run_fail_on_a_typo_anywhere(tmp_path, case):
    """A bad key in any section stops `prm config get` (and `prm run`) at once: exit 2, one line naming it."""
    config = CONFIGS / "tiny.yaml"
    args = {"override": [str(config), "run.run_dir", "judge.max_tokenz=3"],
            "section": [str(config), "trian.max_steps"],
            "key": [str(config), "train.lora.rank"]}.get(case)
    if case == "yaml_section":
        bad = tmp_path / "bad.yaml"
        bad.write_text(config.read_text() + "\ntrian:\n  max_steps: 3\n")
        args = [str(bad), "run.run_dir"]
    proc = _prm("config", "get", *args, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert {"override": "judge.max_tokenz", "section": "unknown section 'trian'", "key": "no key 'lora.rank'",
            "yaml_section": "unknown section 'trian'"}[case] in proc.stderr
    if case in ("override", "yaml_section"):
        run = _prm("run", args[0], f"run.run_dir={tmp_path / 'run'}", *args[2:], cwd=tmp_path)
        assert run.returncode == 2 and "Traceback" not in run.stderr and not (tmp_path / "run").exists()


@pytest.mark.parametrize("override, message", [
    ("mc.k=0", "mc.k must be at least 1, got 0"),
    ("sample.n=0", "sample.n must be at least 1, got 0"),
    ("judge.votes=0", "judge.votes must be at least 1, got 0"),
    ("score.batch_size=0", "score.batch_size must be at least 1, got 0"),
    ("problems.n=-1", "problems.n: must be >= 0"),
])
def test_out_of_range_values_fail_wherever_the_section_is_loaded(tmp_path, override, message):
    """A section's value checks run when it is built, so `prm config get` and `prm run --dry-run` stop on them
    (exit 2, the range message), not only the stage that reads the section."""
    config = str(CONFIGS / "tiny.yaml")
    section = override.split(".")[0]
    key = {"mc": "mc.k", "sample": "sample.n", "judge": "judge.votes", "score": "score.batch_size",
           "problems": "problems.n"}[section]
    get = _prm("config", "get", config, key, override, cwd=tmp_path)
    assert get.returncode == 2 and get.stdout == "" and message in get.stderr and "Traceback" not in get.stderr
    run = _prm("run", "--dry-run", config, f"run.run_dir={tmp_path / 'run'}", override, cwd=tmp_path)
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr
    assert "[prm run]" not in run.stdout  # stopped before the first stage


def test_every_stage_section_is_routed_by_the_override_parser():
    """prm.config routes `section.key=value` overrides by section name; its list is the stage list's sections."""
    from prm.config import _KNOWN_SECTIONS

    assert _KNOWN_SECTIONS == set(section_classes())


def test_each_stage_command_declares_a_dataclass_section():
    from prm.app.stages import stage_commands

    commands = stage_commands()
    assert len({c.words for c in commands}) == len(commands), "two stage commands with the same words"
    for command in commands:
        if command.section is not None:
            assert dataclasses.is_dataclass(command.config), command.words


def test_run_stages_takes_the_slurm_job_names(tmp_path):
    """slurm/submit_pipeline.sh runs `prm run --stages prep` etc.: a job name runs exactly its stages."""
    from prm.app.pipeline import JOBS, STAGES

    assert set(JOBS["prep"] + JOBS["judge"] + JOBS["consensus"] + JOBS["eval"]) | {"annotate_mc", "train"} \
        == set(STAGES)
    run = _prm("run", "--dry-run", str(CONFIGS / "tiny.yaml"), f"run.run_dir={tmp_path / 'run'}",
               "--stages", "prep", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    printed = [line.split(":")[0].removeprefix("[prm run] ") for line in run.stdout.splitlines()
               if line.startswith("[prm run]")]
    assert printed == list(JOBS["prep"])
    bad = _prm("run", "--dry-run", str(CONFIGS / "tiny.yaml"), "--stages", "prepp", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown stage 'prepp'" in bad.stderr and "jobs: prep" in bad.stderr


def _dry_run_commands(config: str, tmp_path: Path) -> dict[str, str]:
    run = _prm("run", "--dry-run", config, f"run.run_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = [line.removeprefix("[prm run] ") for line in run.stdout.splitlines() if line.startswith("[prm run]")]
    return dict(line.split(": ", 1) for line in lines)


def test_paper_recipe_trains_on_consensus_output_only(tmp_path):
    from prm.app.sections import RunConfig

    config = str(CONFIGS / "paper_qwen25_math_prm.yaml")
    assert load_section(RunConfig, "run", config, []).train_on_testbed is False
    commands = _dry_run_commands(config, tmp_path)
    assert "testbed_to_trl" not in commands
    assert f"train.data.train_files=[{tmp_path / 'run' / 'train.consensus.jsonl'}]" in commands["train"]
    assert "train.testbed.jsonl" not in commands["train"]



def test_quickstart_constrains_the_judge_and_trains_on_consensus(tmp_path):
    from prm.data_synthesis.judge import JudgeConfig

    config = str(CONFIGS / "quickstart.yaml")
    assert load_section(JudgeConfig, "judge", config, []).constrain is True
    from prm.app.sections import RunConfig

    run = load_section(RunConfig, "run", config, [])
    commands = _dry_run_commands(config, tmp_path)
    assert "train.consensus.jsonl" in commands["train"] and run.annotate_testbed > 0
    # The testbed's truth labels join only where the config opts in (the report counts each source).
    assert ("train.testbed.jsonl" in commands["train"]) == ("testbed_to_trl" in commands) == run.train_on_testbed
