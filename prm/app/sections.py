"""The app's own config sections: `run:` (`prm run`), `ablation:` (`prm experiment ablation`) and `search:`
(`prm experiment search`). Apart from the commands that run them so `prm config get` and `prm run`'s up-front check (prm/app/stages.py) read every
section without importing the commands themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from prm.config import option
from prm.errors import ConfigError


@dataclass
class RunConfig:
    """Section `run:` of a pipeline config."""

    run_dir: str = option("runs/quickstart", help="every stage's output goes here")
    policy_problems: int = option(8, help="problems sampled, annotated (mc + judge) and filtered by consensus")
    bon_problems: int = option(8, help="held-out problems whose sampled pools make the Best-of-N evaluation")
    bon_samples: int = option(8, help="candidates sampled per BoN problem")
    testbed_per_problem: int = option(2, help="testbed solutions per remaining problem (training data)")
    testbed_error_rate: float = option(0.6, help="share of testbed solutions with an injected wrong step")
    heldout_fraction: float = option(0.25, help="share of testbed problems held out as step-error items")
    train_processes: int = option(1, help="processes for training (torchrun --nproc_per_node)")
    seed: int = option(0, help="seed of the testbed")
    annotate_testbed: int = option(
        0, help="testbed solutions (known first errors, not held out) annotated by MC and the judge beside the "
                "policy samples: each annotator's accuracy against the truth; their consensus joins the training data")
    train_on_testbed: bool = option(
        False, help="add the testbed's truth-labeled solutions to the consensus examples for training (opt-in: "
                    "the paper trains on consensus output only)")

    def __post_init__(self) -> None:
        if self.annotate_testbed < 0:
            raise ConfigError(f"run.annotate_testbed must be >= 0, got {self.annotate_testbed}")
        counts = {"policy_problems": self.policy_problems, "bon_problems": self.bon_problems,
                  "bon_samples": self.bon_samples, "testbed_per_problem": self.testbed_per_problem,
                  "train_processes": self.train_processes}
        for name, value in counts.items():
            if value < 1:
                raise ConfigError(f"run.{name} must be at least 1, got {value}")
        for name, share in {"testbed_error_rate": self.testbed_error_rate,
                            "heldout_fraction": self.heldout_fraction}.items():
            if not 0 <= share <= 1:
                raise ConfigError(f"run.{name} is a share in [0, 1], got {share}")


# arm -> (the consensus rule whose examples it trains on, the training loss); mc_matched and untrained are special
ARMS: dict[str, tuple[str, str]] = {
    "mc_only": ("mc_only", "hard"),
    "judge_only": ("judge_only", "hard"),
    "consensus": ("exact", "hard"),
    "mc_matched": ("mc_only", "hard"),
    "consensus_soft": ("exact", "soft"),
    "consensus_soft_mse": ("exact", "soft_mse"),
    "untrained": ("", ""),
}

# The held-out metrics the ablation reports show, and their names.
SHOWN = ("step_auc", "f1", "acc_error", "acc_correct", "acc_error_answer_correct", "prmscore")
NAMES = {"step_auc": "step AUC", "f1": "ProcessBench F1", "acc_error": "acc. erroneous", "acc_correct": "acc. correct",
         "acc_error_answer_correct": "acc. erroneous, right answer", "prmscore": "PRMScore"}


@dataclass
class AblationConfig:
    """Section `ablation:` of an ablation config (the other sections are the stages' own)."""

    run_dir: str = option("runs/ablation", help="every output of the experiment goes here")
    problems: int = option(600, help="gsm_symbolic problems drawn for the testbed")
    problem_seed: int = option(0, help="seed of the problem draw")
    per_problem: int = option(2, help="testbed solutions per problem")
    error_rate: float = option(0.45, help="share of testbed solutions with an error carried to a wrong answer")
    flawed_correct_rate: float = option(0.15, help="share with a wrong step whose value later steps do not use")
    heldout_fraction: float = option(0.2, help="share of problems held out for the evaluation")
    seed: int = option(0, help="seed of the testbed, the held-out split and the size-matched subset")
    arms: list[str] = option(["untrained", "mc_only", "judge_only", "consensus", "mc_matched", "consensus_soft"],
                             help=f"arms to train and evaluate, from: {', '.join(ARMS)}")
    bootstrap: int = option(1000, help="bootstrap resamples of the held-out items for every interval")
    confidence: float = option(0.95, help="interval level")
    threshold: float = option(0.5, help="a step is predicted wrong below this score (fixed: no tuning on held-out)")
    seeds: list[int] | None = option(
        None, help="run every seed of the list (each sets ablation.seed, ablation.problem_seed, mc.simulated.seed, "
                   "judge.simulated.seed and train.seed to itself) under RUN_DIR/seed<s>/ and pool them; "
                   "None: one run with ablation.seed")
    keep_checkpoints: bool = option(
        False, help="keep each arm's DeepSpeed resume checkpoints once its training has finished (about 1.3 GB an arm "
                    "for SmolLM2-135M; a sweep has 30 arms); by default only train/final, which the arm is scored "
                    "with, is kept")
    sweep: dict | None = option(
        None, help="judge-accuracy sweep: {keys: [judge.simulated.<knob>, ...], values: [v, ...]}: each value sets "
                   "every named knob; arms mc_only, judge_only, consensus, mc_matched, untrained")

    def __post_init__(self) -> None:
        if self.seeds is not None:
            if not self.seeds or len(set(self.seeds)) != len(self.seeds):
                raise ConfigError(f"ablation.seeds: give each seed once, at least one; got {self.seeds}")
            if self.seed != 0 and self.seed not in self.seeds:
                raise ConfigError("ablation.seed and ablation.seeds both given: give one (seeds sets seed per run)")
        if self.sweep is not None:
            if set(self.sweep) != {"keys", "values"} or not self.sweep["keys"] or not self.sweep["values"]:
                raise ConfigError("ablation.sweep must be {keys: [judge.simulated.<knob>, ...], values: [v, ...]}, "
                                  f"both non-empty; got {self.sweep}")
            if len(set(self.sweep["values"])) != len(self.sweep["values"]):
                raise ConfigError(f"ablation.sweep.values: give each value once; got {self.sweep['values']}")
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown:
            raise ConfigError(f"ablation.arms: unknown arm '{unknown[0]}'; arms: {', '.join(ARMS)}")
        if len(set(self.arms)) != len(self.arms) or not self.arms:
            raise ConfigError("ablation.arms: name each arm once, at least one")
        for name in ("problems", "per_problem"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ablation.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("error_rate", "flawed_correct_rate", "confidence"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"ablation.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.error_rate + self.flawed_correct_rate > 1.0:
            raise ConfigError("ablation.error_rate + ablation.flawed_correct_rate must be at most 1")
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ConfigError(f"ablation.heldout_fraction must be in (0, 1), got {self.heldout_fraction}")


SEARCH_METHODS = ("bon", "weighted", "majority", "beam", "dvts")


@dataclass
class SearchExperimentConfig:
    """Section `search:` of a search experiment config (the search itself is section `prm_search:`)."""

    run_dir: str = option("runs/search", help="every output of the experiment goes here")
    problems_file: str | None = option(None, help="Problem JSONL; None: made from the `problems:` section")
    budgets: list[int] = option([4, 8, 16], help="budgets N (beams, or samples for Best-of-N)")
    methods: list[str] = option(list(SEARCH_METHODS), help="bon, weighted, majority, beam, dvts")
    bootstrap: int = option(1000, help="bootstrap resamples of the problems for the intervals")
    confidence: float = option(0.95, help="bootstrap interval level")
    seed: int = option(0, help="bootstrap seed")

    def __post_init__(self) -> None:
        bad = [m for m in self.methods if m not in SEARCH_METHODS]
        if bad or not self.methods:
            raise ConfigError(f"search.methods: unknown method {bad[0] if bad else '(none)'}; methods: "
                              f"{', '.join(SEARCH_METHODS)}")
        if not self.budgets or any(n < 1 for n in self.budgets):
            raise ConfigError(f"search.budgets must be a non-empty list of positive integers, got {self.budgets}")
        if not 0.0 < self.confidence < 1.0:
            raise ConfigError(f"search.confidence must be in (0, 1), got {self.confidence}")
