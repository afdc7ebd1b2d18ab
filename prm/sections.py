"""Which config dataclass reads which top-level section of a configs/*.yaml file.

Imported lazily (stage modules import torch), used by `prm run` and by the test that loads every config.
"""

from __future__ import annotations


def section_classes() -> dict[str, type]:
    """Section name -> config dataclass. Each stage adds its own line here."""
    from data_synthesis.consensus import ConsensusConfig
    from data_synthesis.judge import JudgeConfig
    from data_synthesis.mc import MCConfig
    from data_synthesis.problems import ProblemsConfig
    from data_synthesis.sample import SampleConfig
    from eval.config import EvalConfig
    from eval.scoring_cli import ScoreConfig
    from prm.pipeline import RunConfig
    from train.config import TrainConfig

    classes: dict[str, type] = {}
    classes["run"] = RunConfig
    classes["problems"] = ProblemsConfig
    classes["sample"] = SampleConfig
    classes["judge"] = JudgeConfig
    classes["mc"] = MCConfig
    classes["consensus"] = ConsensusConfig
    classes["eval"] = EvalConfig
    classes["score"] = ScoreConfig
    classes["train"] = TrainConfig
    return classes
