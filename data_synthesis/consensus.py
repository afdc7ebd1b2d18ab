"""Consensus filtering: keep the solutions whose MC and judge labels agree, as training examples.

    prm consensus -i annotated.jsonl -o consensus.jsonl [--train train.jsonl] [--report consensus_report]
    prm consensus --mc mc.jsonl --judge judged.jsonl -o consensus.jsonl [--config F] [rule=judge_only]

Input: solutions carrying both `mc` and `judge` (one file), or an MC file and a judge file joined by id
(the judge annotation of the second is added to the record of the first; ids in only one file are
reported and count as missing that annotation). Rules (`rule`):
- `exact` (default, the Qwen2.5-Math-PRM rule): keep when MC and judge give the same first error (-1 too).
- `both_correct_or_same_error`: as `exact`, but agreement on "no error" counts only when the solution's
  final answer is also correct (a wrong final answer implies some wrong step).
- `judge_only` / `mc_only`: keep whatever that annotator labeled (first error from it alone).
Each solution gets `consensus: {kept, first_error, reason}` and goes to `-o`; the kept ones also go to
`--train` (default `OUT.train.jsonl`) as TrainingExample records: prompt = the problem, completions =
the steps up to and including the first error (all steps when there is none), labels True ... then False
at the error, `soft_labels` = mc.values when every kept step has one, id = the solution id. The report
(`--report` PREFIX, default `OUT.report`, written as PREFIX.json and PREFIX.md): share kept, reasons,
the agreement matrix of MC vs judge first errors (buckets -1, 0, 1, 2, 3+, or relative position with
`buckets=relative`), counts by source and by number of steps, and accuracy against `true_first_error`
where the records carry it.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from prm.config import option
from prm.errors import ConfigError, InputError, PrmError
from prm.records import ConsensusAnnotation, Solution, TrainingExample
from prm.stage import StageCommand

Rule = Literal["exact", "judge_only", "mc_only", "both_correct_or_same_error"]


@dataclass
class ConsensusConfig:
    """Section `consensus:` of a config file."""

    rule: Rule = option("exact", help="exact | both_correct_or_same_error | judge_only | mc_only")
    soft_labels: bool = option(True, help="add soft_labels from mc.values to training examples when complete")
    buckets: Literal["absolute", "relative"] = option(
        "absolute", help="agreement matrix buckets: absolute (-1, 0, 1, 2, 3+) or relative (share of steps)")


# ---------------------------------------------------------------------------------------------------------
# The decision
# ---------------------------------------------------------------------------------------------------------


def decide(solution: Solution, rule: str) -> ConsensusAnnotation:
    """Whether to keep one solution under `rule`, with the first error the training labels use."""
    mc = solution.mc.first_error if solution.mc is not None else None
    judge_parsed = solution.judge is not None and solution.judge.parsed and solution.judge.first_error is not None
    judge = solution.judge.first_error if judge_parsed else None  # type: ignore[union-attr]
    if rule == "mc_only":
        if mc is None:
            return ConsensusAnnotation(False, None, "no mc annotation")
        return ConsensusAnnotation(True, mc, "mc label")
    if rule == "judge_only":
        if solution.judge is None:
            return ConsensusAnnotation(False, None, "no judge annotation")
        if judge is None:
            return ConsensusAnnotation(False, None, "judge unparsed")
        return ConsensusAnnotation(True, judge, "judge label")
    if rule not in ("exact", "both_correct_or_same_error"):
        raise ConfigError(f"unknown consensus rule {rule!r}: expected exact, both_correct_or_same_error, "
                          "judge_only or mc_only")
    if mc is None:
        return ConsensusAnnotation(False, None, "no mc annotation")
    if solution.judge is None:
        return ConsensusAnnotation(False, None, "no judge annotation")
    if judge is None:
        return ConsensusAnnotation(False, None, "judge unparsed")
    if mc != judge:
        return ConsensusAnnotation(False, None, f"disagree (mc {mc}, judge {judge})")
    if mc == -1 and rule == "both_correct_or_same_error" and not solution.correct:
        return ConsensusAnnotation(False, None, "both say no error but the final answer is wrong")
    return ConsensusAnnotation(True, mc, "agree: no error" if mc == -1 else "agree: same first error")


def training_example(solution: Solution, first_error: int, soft: bool = True) -> TrainingExample:
    """Steps up to and including the first error; labels True... then False at the error."""
    n = len(solution.steps)
    if not -1 <= first_error < n:
        raise PrmError(f"solution {solution.id}: first_error {first_error} outside its {n} steps")
    last = n if first_error == -1 else first_error + 1
    labels = [True] * last
    if first_error >= 0:
        labels[first_error] = False
    soft_labels = None
    if soft and solution.mc is not None:
        values = solution.mc.values[:last]
        if all(v is not None for v in values):
            soft_labels = [float(v) for v in values]  # type: ignore[arg-type]
    return TrainingExample(prompt=solution.problem, completions=list(solution.steps[:last]), labels=labels,
                           soft_labels=soft_labels, id=solution.id)


# ---------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------

ABS_BUCKETS = ["-1", "0", "1", "2", "3+"]
REL_BUCKETS = ["-1", "<25%", "25-50%", "50-75%", ">=75%"]
NONE_BUCKET = "none"


def bucket(first_error: int | None, n_steps: int, kind: str = "absolute") -> str:
    if first_error is None:
        return NONE_BUCKET
    if first_error < 0:
        return "-1"
    if kind == "relative":
        share = first_error / n_steps
        return REL_BUCKETS[1 + min(3, int(share * 4))]
    return str(first_error) if first_error < 3 else "3+"


def _steps_bucket(n: int) -> str:
    return str(n) if n <= 10 else "11+"


def _truth(solution: Solution) -> int | None:
    v = solution.extra.get("true_first_error")
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def consensus_report(records: Sequence[Solution], kind: str = "absolute") -> dict[str, Any]:
    """Share kept, reasons, MC-vs-judge agreement matrix, counts by source and steps, accuracy vs truth."""
    total = len(records)
    kept = [r for r in records if r.consensus is not None and r.consensus.kept]
    names = (REL_BUCKETS if kind == "relative" else ABS_BUCKETS) + [NONE_BUCKET]
    matrix = {m: dict.fromkeys(names, 0) for m in names}
    for r in records:
        mc = r.mc.first_error if r.mc is not None else None
        judge = r.judge.first_error if r.judge is not None and r.judge.parsed else None
        matrix[bucket(mc, len(r.steps), kind)][bucket(judge, len(r.steps), kind)] += 1

    def groups(key) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = defaultdict(lambda: {"total": 0, "kept": 0})
        for r in records:
            g = out[key(r)]
            g["total"] += 1
            g["kept"] += int(r.consensus is not None and r.consensus.kept)
        for g in out.values():
            g["share_kept"] = g["kept"] / g["total"]
        return dict(sorted(out.items(), key=lambda kv: (len(kv[0]), kv[0])))

    report: dict[str, Any] = {
        "solutions": total,
        "kept": len(kept),
        "share_kept": len(kept) / total if total else None,
        "kept_with_error": sum(1 for r in kept if r.consensus.first_error not in (None, -1)),  # type: ignore[union-attr]
        "reasons": dict(Counter(r.consensus.reason for r in records if r.consensus is not None).most_common()),
        "buckets": kind,
        "agreement_matrix": {"rows": "mc first_error", "columns": "judge first_error", "counts": matrix},
        "by_source": groups(lambda r: str(r.extra.get("source") or r.generator)),
        "by_steps": groups(lambda r: _steps_bucket(len(r.steps))),
    }
    with_mc_judge = [r for r in records if r.mc is not None and r.judge is not None and r.judge.parsed]
    if with_mc_judge:
        report["agreement_rate"] = sum(r.mc.first_error == r.judge.first_error for r in with_mc_judge) / len(
            with_mc_judge)  # type: ignore[union-attr]
    known = [r for r in records if _truth(r) is not None]
    if known:
        acc: dict[str, Any] = {"with_truth": len(known)}
        mc_known = [r for r in known if r.mc is not None]
        if mc_known:
            acc["mc"] = sum(r.mc.first_error == _truth(r) for r in mc_known) / len(mc_known)  # type: ignore[union-attr]
        judge_known = [r for r in known if r.judge is not None and r.judge.parsed]
        if judge_known:
            acc["judge"] = sum(r.judge.first_error == _truth(r) for r in judge_known) / len(judge_known)  # type: ignore[union-attr]
        kept_known = [r for r in known if r.consensus is not None and r.consensus.kept]
        if kept_known:
            acc["kept"] = sum(r.consensus.first_error == _truth(r) for r in kept_known) / len(kept_known)  # type: ignore[union-attr]
            acc["kept_count"] = len(kept_known)
        report["accuracy_vs_truth"] = acc
    return report


def report_markdown(report: dict[str, Any]) -> str:
    lines = ["# Consensus report", ""]
    share = report["share_kept"]
    lines.append(f"Kept {report['kept']} of {report['solutions']} solutions"
                 + (f" ({share:.1%})" if share is not None else "")
                 + f"; {report['kept_with_error']} kept solutions have an error step.")
    if "agreement_rate" in report:
        lines.append(f"MC and judge first errors agree on {report['agreement_rate']:.1%} of the solutions with both.")
    lines += ["", "## Reasons", "", "| reason | count |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in report["reasons"].items()]
    counts = report["agreement_matrix"]["counts"]
    cols = list(next(iter(counts.values())).keys()) if counts else []
    lines += ["", f"## Agreement matrix ({report['buckets']} buckets; rows: MC, columns: judge)", "",
              "| mc \\ judge | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for row, cells in counts.items():
        lines.append(f"| {row} | " + " | ".join(str(cells[c]) for c in cols) + " |")
    for title, key in (("By source", "by_source"), ("By number of steps", "by_steps")):
        lines += ["", f"## {title}", "", "| group | total | kept | share kept |", "|---|---:|---:|---:|"]
        lines += [f"| {k} | {g['total']} | {g['kept']} | {g['share_kept']:.1%} |" for k, g in report[key].items()]
    acc = report.get("accuracy_vs_truth")
    if acc:
        lines += ["", f"## First-error accuracy vs truth ({acc['with_truth']} solutions with true_first_error)", "",
                  "| labels | accuracy |", "|---|---:|"]
        for name in ("mc", "judge", "kept"):
            if name in acc:
                lines.append(f"| {name} | {acc[name]:.1%} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------
# CLI: prm consensus
# ---------------------------------------------------------------------------------------------------------


def join_by_id(mc_records: Sequence[Solution], judge_records: Sequence[Solution], judge_path: str
               ) -> tuple[list[Solution], dict[str, int]]:
    """MC records with the judge annotation of the judge record of the same id added."""
    from prm.jsonl import check_unique_ids

    check_unique_ids(judge_records, judge_path)
    judges = {r.id: r for r in judge_records}
    out, mc_ids = [], set()
    for r in mc_records:
        mc_ids.add(r.id)
        other = judges.get(r.id)
        if other is not None and other.judge is not None:
            if other.steps != r.steps:
                raise InputError(judge_path, None, "steps", f"solution {r.id!r} has different steps in the two files")
            data = r.to_dict()
            data["judge"] = other.judge.to_dict()
            r = Solution.from_dict(data)
        out.append(r)
    stats = {"only_in_mc": len(mc_ids - set(judges)), "only_in_judge": len(set(judges) - mc_ids)}
    return out, stats


def run_consensus(args: argparse.Namespace) -> int:
    """prm consensus (-i annotated.jsonl | --mc mc.jsonl --judge judged.jsonl) -o consensus.jsonl
    [--train train.jsonl] [--report PREFIX] [--config F] [key=value ...]"""
    from tqdm import tqdm

    from prm.config import load_section
    from prm.jsonl import JsonlWriter, check_unique_ids, load_records, write_text_atomic

    cfg = load_section(ConsensusConfig, "consensus", args.config, args.overrides)
    if bool(args.input) == bool(args.mc or args.judge):
        raise PrmError("give either -i FILE (solutions with mc and judge) or --mc FILE --judge FILE")
    if not args.input and not (args.mc and args.judge):
        raise PrmError("--mc and --judge go together")
    join_stats: dict[str, int] = {}
    if args.input:
        records = load_records(args.input, Solution, require_records=True)
        source = args.input
    else:
        mc_records = load_records(args.mc, Solution, require_records=True)
        judge_records = load_records(args.judge, Solution, require_records=True)
        # Swapped or wrong files would otherwise give "kept 0" and exit 0.
        if mc_records and all(r.mc is None for r in mc_records):
            raise InputError(args.mc, None, "mc", "no record carries an mc annotation (is this the --judge file?)")
        if judge_records and all(r.judge is None for r in judge_records):
            raise InputError(args.judge, None, "judge", "no record carries a judge annotation (is this the --mc file?)")
        records, join_stats = join_by_id(mc_records, judge_records, args.judge)
        source = args.mc
    check_unique_ids(records, source)  # the joined records keep the --mc file's order
    if records and all(r.mc is None for r in records) and all(r.judge is None for r in records):
        raise InputError(source, None, "mc", "no record carries an mc or a judge annotation")

    output = Path(args.output)
    train_path = Path(args.train) if args.train else output.with_name(output.stem + ".train.jsonl")
    report_prefix = Path(args.report) if args.report else output.with_name(output.stem + ".report")
    annotated = []
    for r in records:
        data = r.to_dict()
        data["consensus"] = decide(r, cfg.rule).to_dict()
        annotated.append(Solution.from_dict(data))
    examples = [training_example(r, r.consensus.first_error, cfg.soft_labels)  # type: ignore[union-attr, arg-type]
                for r in annotated if r.consensus.kept]  # type: ignore[union-attr]

    with JsonlWriter(output, resume=True) as out, JsonlWriter(train_path, resume=True) as train:
        for r in tqdm(annotated, desc="consensus", unit="sol", disable=len(annotated) < 1000):
            if r.id not in out.done:
                out.write(r)
        for ex in examples:
            if ex.id not in train.done:
                train.write(ex)

    report = consensus_report(annotated, cfg.buckets)
    report.update({"rule": cfg.rule, "input": source, "output": str(output), "train": str(train_path), **join_stats})
    write_text_atomic(report_prefix.with_name(report_prefix.name + ".json"), json.dumps(report, indent=2) + "\n")
    write_text_atomic(report_prefix.with_name(report_prefix.name + ".md"), report_markdown(report))
    share = report["share_kept"]
    print(f"consensus ({cfg.rule}): kept {report['kept']} of {report['solutions']}"
          + (f" ({share:.1%})" if share is not None else "")
          + f" -> {train_path}; all annotated -> {output}; report {report_prefix}.json/.md"
          + (f"; {join_stats['only_in_mc']} id(s) only in --mc, {join_stats['only_in_judge']} only in --judge"
             if join_stats else ""))
    return 0


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--input", default=None, help="solutions carrying both mc and judge annotations")
    p.add_argument("--mc", default=None, help="MC-labeled solutions (joined by id with --judge)")
    p.add_argument("--judge", default=None, help="judge-labeled solutions")
    p.add_argument("-o", "--output", required=True, help="all solutions with a consensus annotation")
    p.add_argument("--train", default=None, help="kept solutions as training examples (default OUT.train.jsonl)")
    p.add_argument("--report", default=None, help="report prefix: PREFIX.json and PREFIX.md (default OUT.report)")


COMMAND = StageCommand(("consensus",), "keep solutions whose MC and judge first errors agree; training examples",
                       _add_arguments, run_consensus, section="consensus", config=ConsensusConfig,
                       description=__doc__)
