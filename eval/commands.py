"""The `prm eval` commands (listed in eval/cli.py).

    prm eval bon -i scored_bon.jsonl -o reports/bon [--max-n 64] [--subsets 200] [--seed 0] [--model PATH]
    prm eval steps -i gsm8k.jsonl -i math.jsonl -o reports/steps [--threshold 0.5 | --fit-on gsm8k] [--bootstrap 1000]
    prm eval rewardmath -i rewardmath.jsonl -o reports/rewardmath [--model PATH]   (prm data convert --from rewardmath)
    prm eval pairwise -i rewardbench.jsonl -o reports/pairwise [--model PATH]      (prm data convert --from rewardbench)
    prm eval compare -o reports/cmp --runs a=reports/a b=reports/b c=reports/c

Every command takes `--config FILE.yaml` (its `eval:` section) and `key=value` overrides (before `--runs`);
flags override both. Each writes metrics.json, report.md and PNG plots into its output folder.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from prm.eval.config import EvalConfig

from prm.stage import StageCommand


def _config(args: argparse.Namespace, **flags: Any) -> Any:
    from prm.config import load_section

    cfg = load_section(EvalConfig, "eval", args.config, args.overrides)
    changes = {k: v for k, v in flags.items() if v is not None}
    if getattr(args, "aggregations", None):
        changes["aggregations"] = [a.strip() for a in args.aggregations.split(",") if a.strip()]
    return dataclasses.replace(cfg, **changes) if changes else cfg


def _pools(path: str, cfg: Any, model: str | None) -> list[Any]:
    from prm.eval.data import load_pools, require_scores, score_pools

    pools = load_pools(path)
    if model:
        score_pools(pools, model, cfg.model_format, cfg.batch_size)
    else:
        require_scores(pools, path)
    return pools


def _cmd_bon(args: argparse.Namespace) -> int:
    from prm.eval.bon import evaluate_bon, pools_to_bon_rows, write_bon_report

    from prm.jsonl import write_atomic

    cfg = _config(args, max_n=args.max_n, subsets=args.subsets, seed=args.seed, bootstrap=args.bootstrap)
    pools = _pools(args.input, cfg, args.model)
    metrics = evaluate_bon(pools, cfg)
    if args.model:
        write_atomic(f"{args.output}/scored_bon.jsonl", pools_to_bon_rows(pools))
    path = write_bon_report(metrics, args.output, cfg, args.input)
    top = metrics["ns"][-1]
    print(f"N={top}: pass {metrics['headline'][f'pass@{top}']:.4f}, maj {metrics['headline'][f'maj@{top}']:.4f}, "
          + ", ".join(f"prm_{a} {metrics['headline'][f'prm_{a}@{top}']:.4f}" for a in cfg.aggregations))
    print(f"report: {path}")
    return 0


def _cmd_steps(args: argparse.Namespace) -> int:
    from prm.eval.data import load_step_items, score_step_items
    from prm.eval.step_error import evaluate_steps, write_steps_report

    if args.threshold is not None and args.fit_on is not None:
        from prm.errors import PrmError

        raise PrmError("give either --threshold or --fit-on, not both")
    cfg = _config(args, threshold=args.threshold, fit_on=args.fit_on, after_error=args.after_error,
                  bootstrap=args.bootstrap, seed=args.seed, confidence=args.confidence)
    if args.threshold is not None:  # a fixed threshold on the command line wins over a configured fit_on
        cfg = dataclasses.replace(cfg, fit_on=None)
    items = []
    for path in args.input:
        items.extend(load_step_items(path, cfg.gold_field))
    if args.model:
        score_step_items(items, args.model, cfg.model_format, cfg.batch_size)
    metrics = evaluate_steps(items, cfg)
    path = write_steps_report(metrics, items, args.output, cfg, args.input)
    for source, res in metrics["sources"].items():
        f1 = res["average"]["f1"]
        extra = f" (threshold {res['threshold']:.4f})" if source == "prm" else ""
        print(f"{source}{extra}: average F1 {'undefined' if f1 is None else f'{f1:.4f}'}")
    print(f"report: {path}")
    return 0


def _cmd_rewardmath(args: argparse.Namespace) -> int:
    from prm.eval.rewardmath import evaluate_rewardmath, write_rewardmath_report

    cfg = _config(args)
    pools = _pools(args.input, cfg, args.model)
    metrics = evaluate_rewardmath(pools, cfg)
    path = write_rewardmath_report(metrics, pools, args.output, cfg, args.input)
    for agg, r in metrics["aggregations"].items():
        print(f"{agg}: accuracy {r['accuracy']:.4f}, MRR {r['mrr']:.4f}")
    print(f"report: {path}")
    return 0


def _cmd_pairwise(args: argparse.Namespace) -> int:
    from prm.eval.pairwise import evaluate_pairwise, write_pairwise_report

    cfg = _config(args)
    pools = _pools(args.input, cfg, args.model)
    metrics = evaluate_pairwise(pools, cfg)
    path = write_pairwise_report(metrics, args.output, args.input)
    for agg, r in metrics["aggregations"].items():
        sections = "".join(f", {name} {v:.4f}" for name, v in r.get("sections", {}).items())
        print(f"{agg}: accuracy {r['accuracy']:.4f} over {r['pairs']} pairs ({r['ties']} ties){sections}")
    print(f"report: {path}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from prm.eval.compare import compare_runs, write_compare_report

    cfg = _config(args, target=args.target)
    metrics = compare_runs(args.runs, cfg.target)
    path = write_compare_report(metrics, args.output)
    for key, c in metrics["correlations"].items():
        r = c["spearman"]["r"]
        print(f"{key}: Spearman {'undefined' if r is None else f'{r:.3f}'} with {metrics['target']}")
    print(f"report: {path}")
    return 0


def _common(p: argparse.ArgumentParser, model: bool = True) -> None:
    p.add_argument("-o", "--output", required=True, metavar="REPORT_DIR",
                   help="folder for metrics.json, report.md and the plots")
    if model:
        p.add_argument("--model", default=None, metavar="PATH",
                       help="score every solution with this PRM checkpoint first (else step_scores must be present)")
    p.add_argument("--aggregations", default=None, metavar="A,B",
                   help="comma-separated aggregations: product,min,last,mean,geomean (default: all; the first is the headline)")


def _add_bon_arguments(bon: argparse.ArgumentParser) -> None:
    bon.add_argument("-i", "--input", required=True,
                     help="BoN items with step_scores on candidates, or `prm sample` Solution records")
    bon.add_argument("--max-n", type=int, default=None, help="largest N (default: the smallest pool size)")
    bon.add_argument("--subsets", type=int, default=None, help="random size-N subsets when not enumerating all")
    bon.add_argument("--seed", type=int, default=None, help="seed for subsets and bootstrap")
    bon.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples (0: no intervals)")
    _common(bon)


def _add_steps_arguments(steps: argparse.ArgumentParser) -> None:
    steps.add_argument("-i", "--input", required=True, action="append",
                       help="ProcessBench items or annotated Solution records (repeat for several splits)")
    steps.add_argument("--threshold", type=float, default=None, help="fixed threshold (default 0.5)")
    steps.add_argument("--fit-on", default=None, metavar="SPLIT",
                       help="fit the threshold on this split (max F1) and reuse it on all")
    steps.add_argument("--after-error", default=None, choices=["exclude", "error"],
                       help="PRMBench step F1: steps after the gold first error excluded (default) or erroneous")
    steps.add_argument("--bootstrap", type=int, default=None,
                       help="bootstrap resamples of the items for intervals (default 1000; 0: none)")
    steps.add_argument("--confidence", type=float, default=None, help="interval level (default 0.95)")
    steps.add_argument("--seed", type=int, default=None, help="seed of the bootstrap resamples")
    _common(steps)


def _add_rewardmath_arguments(rm: argparse.ArgumentParser) -> None:
    rm.add_argument("-i", "--input", required=True, help="items with one correct and several incorrect solutions")
    _common(rm)


def _add_pairwise_arguments(pw: argparse.ArgumentParser) -> None:
    pw.add_argument("-i", "--input", required=True, help="items with correct (chosen) and incorrect (rejected)")
    _common(pw)


def _add_compare_arguments(cmp_: argparse.ArgumentParser) -> None:
    cmp_.add_argument("-o", "--output", required=True, metavar="OUT", help="folder for the comparison report")
    cmp_.add_argument("--target", default=None, help="BoN metric to correlate with (default eval.target)")
    cmp_.add_argument("--runs", required=True, nargs="+", metavar="NAME=REPORT_DIR",
                      help="one per checkpoint (a NAME may repeat to merge report folders)")


def _eval(word: str, help: str, add_arguments: Any, run: Any) -> StageCommand:  # noqa: A002
    return StageCommand(("eval", word), help, add_arguments, run, section="eval", config=EvalConfig)


COMMANDS: list[StageCommand] = [
    _eval("bon", "Best-of-N: pass@N, maj@N, PRM@N, PRM-weighted vote, with intervals", _add_bon_arguments, _cmd_bon),
    _eval("steps", "ProcessBench first-error F1 and PRMBench step F1 / PRMScore", _add_steps_arguments, _cmd_steps),
    _eval("rewardmath", "RewardMATH one-to-many accuracy and MRR", _add_rewardmath_arguments, _cmd_rewardmath),
    _eval("pairwise", "RewardBench-style chosen vs rejected accuracy (ties are wrong), per subset, with "
                      "RewardBench's section scores", _add_pairwise_arguments, _cmd_pairwise),
    _eval("compare", "several checkpoints: benchmarks beside BoN, with correlations", _add_compare_arguments,
          _cmd_compare),
]
