"""The `eval:` section of a config file: settings shared by every `prm eval ...` command.

    prm eval bon -i scored_bon.jsonl -o reports/bon --config configs/eval.yaml max_n=16

Command-line flags (`--max-n`, `--threshold`, ...) override the config, which overrides these defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from prm.config import option

# The first is the headline: the product, as the Qwen2.5-Math-PRM paper and Lightman et al. score a solution.
AGGREGATION_NAMES = ("product", "min", "last", "mean", "geomean")


@dataclass
class EvalConfig:
    aggregations: list[str] = option(
        list(AGGREGATION_NAMES), help="solution-score aggregations of step scores (product, min, last, mean, geomean); the first is the "
        "headline in reports"
    )
    # Best-of-N
    max_n: int | None = option(None, help="largest N for Best-of-N (default: the smallest pool size)")
    subsets: int = option(
        200, help="random size-N subsets per problem when C(n, N) exceeds exact_subset_limit"
    )
    exact_subset_limit: int = option(
        256, help="enumerate every size-N subset (exact average) when C(n, N) is at most this"
    )
    seed: int = option(0, help="seed for subset sampling and bootstrap resampling")
    bootstrap: int = option(
        1000, help="bootstrap resamples for confidence intervals, over problems (bon) or items (steps); 0: none")
    confidence: float = option(0.95, help="confidence level of the bootstrap intervals")
    # Step-error benchmarks (ProcessBench, PRMBench)
    threshold: float = option(0.5, help="a step is predicted erroneous when its score is below this")
    fit_on: str | None = option(
        None, help="fit the threshold to maximize F1 on this split and reuse it on all splits (ProcessBench: gsm8k)"
    )
    after_error: str = option(
        "exclude",
        help="PRMBench step F1: gold steps after the first error are 'exclude'd (unlabelled) or counted as 'error'",
    )
    gold_field: str = option(
        "auto",
        help="dotted field holding the gold first error on Solution records (e.g. consensus.first_error); "
        "auto: `label`, else the testbed's `true_first_error`",
    )
    # Scoring before evaluation (--model)
    batch_size: int = option(8, help="batch size when scoring with --model")
    model_format: str = option("auto", help="checkpoint format for --model (see prm.scoring.load_scorer)")
    # Reports
    heatmap_rows: int = option(12, help="solutions shown in the step-score heatmap")
    # Compare
    target: str = option(
        "bon.prm_product", help="BoN metric correlated against in `prm eval compare` (largest N when no @N is given)"
    )

    def __post_init__(self) -> None:
        from prm.errors import ConfigError

        bad = [a for a in self.aggregations if a not in AGGREGATION_NAMES]
        if bad or not self.aggregations:
            raise ConfigError(f"eval.aggregations: unknown {bad or 'empty list'}; choose from {list(AGGREGATION_NAMES)}")
        if self.after_error not in ("exclude", "error"):
            raise ConfigError(f"eval.after_error: expected 'exclude' or 'error', got {self.after_error!r}")
        if self.max_n is not None and self.max_n < 1:
            raise ConfigError(f"eval.max_n: must be at least 1, got {self.max_n}")
        if self.subsets < 1 or self.exact_subset_limit < 1:
            raise ConfigError("eval.subsets and eval.exact_subset_limit must be at least 1")
        if self.bootstrap < 0:
            raise ConfigError(f"eval.bootstrap: must be >= 0, got {self.bootstrap}")
        if not 0.0 < self.confidence < 1.0:
            raise ConfigError(f"eval.confidence: must be in (0, 1), got {self.confidence}")
        if self.batch_size < 1:
            raise ConfigError(f"eval.batch_size: must be at least 1, got {self.batch_size}")
        if not 0.0 <= self.threshold <= 1.0:  # scores are probabilities; NaN fails this too
            raise ConfigError(f"eval.threshold: must be in [0, 1], got {self.threshold}")
