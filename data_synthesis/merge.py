"""Join the shard files of a sharded stage into one file, checking that nothing is missing.

    prm data merge -o merged.jsonl --shards 8 out.jsonl          # out.shard-0000{0..7}-of-00008.jsonl
    prm data merge -o merged.jsonl a.jsonl b.jsonl ...            # explicit shard files
    prm data merge -o merged.jsonl --shards 8 out.jsonl --expect solutions.jsonl
    prm data merge -o solutions.jsonl --shards 8 samples.jsonl --expect problems.jsonl --key problem_id

Checks, each reported in full (every missing file, every cut-off file) as one error, exit 2:
- every shard file exists (with --shards N, or when explicit files follow the shard naming convention and
  so name their N) and ends with a complete line (a kill mid-write leaves a torn last line: resume that
  shard, which repairs it);
- each record of a named shard file belongs to that shard (`--key`, default the record id), so files
  from runs with different N are never mixed;
- no record is dropped: a record that appears twice with identical content is kept once, twice with
  different content is an error naming both places;
- with `--expect INPUT`, every id of INPUT is present as the `--key` of some merged record (missing ids
  are listed, grouped by the shard to rerun; `--allow-missing` writes the output anyway). The output
  then follows INPUT's order.
The output is written atomically.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prm.errors import InputError, PrmError
from prm.jsonl import iter_lines, parse_line, write_atomic
from prm.records import record_id
from prm.shards import parse_shard_path, shard_of, shard_path, shard_paths
from prm.stage import StageCommand

_SHOW = 10  # ids listed in an error before "... and K more"


@dataclass
class MergeReport:
    records: int = 0
    files: int = 0
    duplicates: int = 0  # identical records seen more than once, kept once
    missing_ids: list[str] = field(default_factory=list)
    unexpected_ids: list[str] = field(default_factory=list)


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOW])
    return shown + (f", ... and {len(items) - _SHOW} more" if len(items) > _SHOW else "")


def resolve_shard_files(paths: list[str], shards: int | None) -> list[tuple[Path, tuple[int, int] | None]]:
    """(file, (i, n) or None) for each shard file to merge; raises PrmError listing every missing file."""
    if shards is not None:
        if shards < 1:
            raise PrmError(f"--shards must be at least 1, got {shards}")
        if len(paths) != 1:
            raise PrmError("with --shards N give one output name (out.jsonl), not the shard files themselves")
        files = [(p, (i, shards)) for i, p in enumerate(shard_paths(paths[0], shards))]
    else:
        files = []
        for p in paths:
            parsed = parse_shard_path(p)
            files.append((Path(p), (parsed[1], parsed[2]) if parsed else None))
        named = [parse_shard_path(p) for p in paths]
        if all(named) and named:
            bases = {(str(base), n) for base, _, n in named}  # type: ignore[misc]
            if len(bases) == 1:
                base, n = next(iter(bases))
                have = {i for _, i, _ in named}  # type: ignore[misc]
                absent = [str(shard_path(base, i, n)) for i in range(n) if i not in have]
                if absent:
                    raise PrmError(f"{len(absent)} of {n} shard file(s) not given: {_listing(absent)}")
    seen: set[Path] = set()
    for p, _ in files:
        if p in seen:
            raise PrmError(f"shard file {p} given twice")
        seen.add(p)
    missing = [f"{p}" + (f" (shard {s[0]}/{s[1]})" if s else "") for p, s in files if not p.exists()]
    if missing:
        raise PrmError(f"{len(missing)} of {len(files)} shard file(s) missing: {_listing(missing)}; "
                       "run (or resume) those shards, then merge again")
    return files


def _read_shard(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], str | None]:
    """(line number, object) for each record, and a reason if the file is not complete."""
    size = path.stat().st_size
    if size:
        with open(path, "rb") as fh:
            fh.seek(size - 1)
            if fh.read(1) != b"\n":
                last = sum(1 for _ in iter_lines(path))
                return [], f"{path}: last line ({last}) is cut off (killed mid-write?)"
    rows = []
    for lineno, raw in iter_lines(path):
        data = parse_line(str(path), lineno, raw)
        if data is not None:
            rows.append((lineno, data))
    return rows, None


def _key_of(data: dict[str, Any], key: str, path: str, lineno: int) -> str:
    value = record_id(data) if key == "id" else data.get(key)
    if value is None:
        raise InputError(path, lineno, key, "missing: every merged record needs it")
    return str(value)


def _expected_ids(path: str) -> list[str]:
    """The ids (id, else problem_id) of every record of the input file, in order."""
    if not Path(path).exists():
        raise InputError(path, None, None, "no such file (--expect)")
    ids = []
    for lineno, raw in iter_lines(path):
        data = parse_line(path, lineno, raw)
        if data is None:
            continue
        rid = record_id(data)
        if rid is None:
            raise InputError(path, lineno, "id", "missing: --expect needs an id on every record")
        ids.append(rid)
    return ids


def merge_shards(
    paths: list[str],
    output: str,
    shards: int | None = None,
    expect: str | None = None,
    key: str = "id",
    allow_missing: bool = False,
) -> MergeReport:
    """Merge shard files into `output` (see the module docstring for the checks)."""
    files = resolve_shard_files(paths, shards)
    report = MergeReport(files=len(files))
    incomplete: list[str] = []
    by_id: dict[str, tuple[str, dict[str, Any]]] = {}
    merged: list[tuple[str, dict[str, Any]]] = []  # (key, record) in shard, then line order
    contents = []
    for path, shard in files:
        rows, problem = _read_shard(path)
        if problem:
            incomplete.append(problem + (f"; resume it with --shard {shard[0]}/{shard[1]}" if shard else ""))
        contents.append((path, shard, rows))
    if incomplete:
        raise PrmError(f"{len(incomplete)} shard file(s) incomplete: " + " | ".join(incomplete))
    for path, shard, rows in contents:
        for lineno, data in rows:
            where = f"{path}:{lineno}"
            rid = record_id(data)
            if rid is None:
                raise InputError(str(path), lineno, "id", "missing: every merged record needs an id")
            rkey = _key_of(data, key, str(path), lineno)
            if shard is not None and shard_of(rkey, shard[1]) != shard[0]:
                raise PrmError(
                    f"{where}: record {key} '{rkey}' belongs to shard {shard_of(rkey, shard[1])}/{shard[1]}, "
                    f"not {shard[0]}/{shard[1]} (files of runs with a different shard count mixed? "
                    f"or sharded by another key than --key {key}?)"
                )
            if rid in by_id:
                first_where, first = by_id[rid]
                if first != data:
                    raise PrmError(f"duplicate id '{rid}' with different content: {first_where} and {where}")
                report.duplicates += 1
                continue
            by_id[rid] = (where, data)
            merged.append((rkey, data))

    records = [data for _, data in merged]
    if expect is not None:
        expected = _expected_ids(expect)
        order = {rid: i for i, rid in reversed(list(enumerate(expected)))}
        present = {rkey for rkey, _ in merged}
        report.missing_ids = [rid for rid in dict.fromkeys(expected) if rid not in present]
        report.unexpected_ids = sorted(present - set(order))
        if report.missing_ids:
            n = shards or next((s[1] for _, s in files if s), None)
            groups = ""
            if n:
                per_shard: dict[int, int] = defaultdict(int)
                for rid in report.missing_ids:
                    per_shard[shard_of(rid, n)] += 1
                groups = " (by shard: " + ", ".join(f"{i}/{n}: {c}" for i, c in sorted(per_shard.items())) + ")"
            message = (f"{len(report.missing_ids)} of {len(order)} id(s) of {expect} missing from the shards"
                       f"{groups}: {_listing(report.missing_ids)}")
            if not allow_missing:
                raise PrmError(message + "; rerun those shards, or pass --allow-missing")
            print(f"warning: {message}")
        if report.unexpected_ids:
            print(f"warning: {len(report.unexpected_ids)} merged {key}(s) not in {expect}: "
                  f"{_listing(report.unexpected_ids)}")
        # Follow the input's order; records whose key is not in the input go last, in shard order.
        ranked = sorted(range(len(merged)), key=lambda j: (order.get(merged[j][0], len(order)), j))
        records = [merged[j][1] for j in ranked]

    write_atomic(output, records)
    report.records = len(records)
    return report


def _cmd_merge(args: argparse.Namespace) -> int:
    report = merge_shards(args.files, args.output, shards=args.shards, expect=args.expect, key=args.key,
                          allow_missing=args.allow_missing)
    extra = f", {report.duplicates} identical duplicate(s) kept once" if report.duplicates else ""
    print(f"merged {report.records} record(s) from {report.files} shard file(s) into {args.output}{extra}")
    return 0


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+",
                        help="shard files, or with --shards N the unsharded output name (out.jsonl)")
    parser.add_argument("-o", "--output", required=True, help="merged JSONL file (written atomically)")
    parser.add_argument("--shards", type=int, default=None, metavar="N",
                        help="merge out.shard-0000I-of-N.jsonl for I in 0..N-1 of the one name given")
    parser.add_argument("--expect", default=None, metavar="INPUT",
                        help="input file of the sharded stage: every one of its ids must be present")
    parser.add_argument("--key", default="id",
                        help="field the stage sharded by and that --expect ids match (default: id; "
                             "problem_id for sampling output)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="with --expect: write the output even if ids are missing (a warning)")


COMMAND = StageCommand(("data", "merge"), "join shard files by id, checking that no shard, record or id is missing",
                       _add_arguments, _cmd_merge, description=__doc__)
