"""Training data: read and validate TrainingExample files, tokenize with `encode_steps`, pack or pad.

    prm train-data check data/train.jsonl --model smollm2-135m-instruct --max-length 1024
    prm train-data export-trl data/train.jsonl -o data/train.trl.jsonl

Every file is read and tokenized before training starts, so a bad record (labels that do not match its
steps, steps that all fall past `max_length`) stops the run with an InputError naming file, line and id.

Labels live only at marker positions: `labels` holds 1 (correct), 0 (wrong) at each step's marker and
-100 everywhere else; `soft` holds the MC value there (NaN elsewhere).

Packing puts several examples in one row of `pack_length` tokens. Each example's `position_ids` restart at
0 and no attention mask is passed: transformers (>= 4.54, checked on 5.x by tests/train/test_train_data.py)
then builds a block-diagonal causal mask from the restarts (flash-attn: varlen), so no token attends
across examples; on CPU the trainer computes causal attention per example instead (train/attention.py). Padding rows (no packing) carry a 2D attention mask instead.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prm.errors import ConfigError, InputError
from prm.jsonl import JsonError, iter_lines, loads_strict, parse_line, write_atomic
from prm.records import RecordError, TrainingExample

IGNORE_INDEX = -100
FORMATS = ("auto", "training", "trl", "math_shepherd", "prm800k", "processbench")


@dataclass
class SourcedExample:
    """A TrainingExample with where it came from (for error messages)."""

    example: TrainingExample
    path: str
    line: int | None

    @property
    def name(self) -> str:
        return self.example.id if self.example.id is not None else f"line {self.line}"


@dataclass
class Tokenized:
    """One example ready for batching: token ids, marker positions and the kept labels."""

    input_ids: list[int]
    marker_positions: list[int]
    labels: list[int]
    soft: list[float]
    name: str

    def __len__(self) -> int:
        return len(self.input_ids)


def _read_ours(path: str) -> list[SourcedExample]:
    out: list[SourcedExample] = []
    for lineno, raw in iter_lines(path):
        data = parse_line(path, lineno, raw)
        if data is None:
            continue
        rid = data.get("id")
        try:
            example = TrainingExample.from_dict(data)
        except RecordError as exc:
            who = f"record {rid}: " if rid is not None else ""
            raise InputError(path, lineno, exc.field, f"{who}{exc.message}") from None
        out.append(SourcedExample(example, path, lineno))
    return out


def _sniff(path: str) -> str:
    for _, raw in iter_lines(path):
        if raw.strip():
            try:
                data = loads_strict(raw)
            except JsonError:
                return "training"  # the strict reader reports the bad line
            if isinstance(data, dict) and "completions" in data:
                return "training"
            return "other"
    return "training"


def read_examples(path: str | Path, fmt: str = "auto") -> list[SourcedExample]:
    """All training examples of one file. `training`/`trl`: our TrainingExample (= TRL stepwise) JSONL;
    `math_shepherd`, `prm800k`, `processbench` (or `auto` on a non-TRL file) go through `prm.formats`."""
    path = str(path)
    if fmt not in FORMATS:
        raise ConfigError(f"data format {fmt!r}: expected one of {list(FORMATS)}")
    if not Path(path).exists():
        raise InputError(path, None, None, "no such file")
    if fmt in ("training", "trl") or (fmt == "auto" and _sniff(path) == "training"):
        return _read_ours(path)
    return _read_via_formats(path, fmt)


def _read_via_formats(path: str, fmt: str) -> list[SourcedExample]:
    """Math-Shepherd / PRM800K / ProcessBench rows -> TrainingExample through prm.formats (row -> Solution ->
    TRL example holding the steps up to the first error; rows without a usable label are dropped)."""
    from prm import formats
    from prm.tables import load_rows

    readers = {"math_shepherd": formats.math_shepherd_to_solution, "prm800k": formats.prm800k_to_solution,
               "processbench": formats.processbench_to_solution}
    out: list[SourcedExample] = []
    for rowno, row in load_rows(path):
        kind = fmt if fmt != "auto" else _guess_format(row, path, rowno)
        try:
            example = formats.solution_to_trl(readers[kind](row))
        except RecordError as exc:
            rid = row.get("id")
            who = f"record {rid}: " if rid is not None else ""
            raise InputError(path, rowno, exc.field, f"{who}{exc.message}") from None
        if example is not None:
            out.append(SourcedExample(example, path, rowno))
    return out


def _guess_format(row: dict[str, Any], path: str, rowno: int) -> str:
    if "final_answer_correct" in row or ("steps" in row and "label" in row):
        return "processbench"
    if "input" in row and "label" in row:
        return "math_shepherd"
    if "question" in row and "label" in row:
        return "prm800k"
    raise InputError(path, rowno, None, "cannot tell the format of this row: set data.format")


def tokenize_examples(examples: Iterable[SourcedExample], tokenizer: Any, max_length: int) -> list[Tokenized]:
    """encode_steps on every example; raises InputError for an example with no step inside max_length.

    Soft targets: the record's `soft_labels`, else its hard labels as 0/1 (used only by validation and the
    hard loss; a soft loss requires soft_labels, see load_tokenized)."""
    from prm.prm_model import encode_steps

    out: list[Tokenized] = []
    for src in examples:
        ex = src.example
        enc = encode_steps(tokenizer, ex.prompt, ex.completions, max_length=max_length,
                           labels=ex.labels, soft_labels=ex.soft_labels)
        if enc.n_steps_kept == 0:
            raise InputError(src.path, src.line, "completions",
                             f"record {src.name}: all {len(ex.completions)} steps fall past max_length={max_length} "
                             f"(the prompt alone takes {len(enc.input_ids)}+ tokens)")
        labels = [int(v) for v in enc.labels or []]
        soft = list(enc.soft_labels) if enc.soft_labels is not None else [float(v) for v in labels]
        assert len(labels) == len(soft) == len(enc.marker_positions) == enc.n_steps_kept
        out.append(Tokenized(enc.input_ids, enc.marker_positions, labels, soft, src.name))
    return out


def load_tokenized(paths: list[str], tokenizer: Any, max_length: int, fmt: str = "auto",
                   soft_loss: str | None = None) -> list[Tokenized]:
    """Read, validate and tokenize every file (all before training starts). With `soft_loss` (the name of a
    soft loss) every example must carry soft_labels: falling back to its hard labels would quietly train
    another objective than the one asked for."""
    if not paths:
        raise ConfigError("no training files: set data.train_files")
    examples: list[SourcedExample] = []
    for path in paths:
        examples.extend(read_examples(path, fmt))
    if not examples:
        raise ConfigError(f"no training examples in {paths}")
    if soft_loss is not None:
        for src in examples:
            if src.example.soft_labels is None:
                raise InputError(src.path, src.line, "soft_labels",
                                 f"record {src.name}: loss={soft_loss} needs soft labels (MC values) on every "
                                 "example; this one has none (binary-search MC leaves steps without a value: "
                                 "use mc mode=exhaustive, or loss=hard)")
    return tokenize_examples(examples, tokenizer, max_length)


# ----------------------------------------------------------------------------------------------- batching

def pack_rows(examples: list[Tokenized], pack_length: int) -> list[list[int]]:
    """Group example indices into rows of at most `pack_length` tokens (first-fit decreasing, stable)."""
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]))
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = len(examples[i])
        for r, free in enumerate(room):
            if n <= free:
                rows[r].append(i)
                room[r] -= n
                break
        else:
            rows.append([i])
            room.append(pack_length - n)
    return rows


def collate(examples: list[list[Tokenized]], pad_id: int, packed: bool, width: int | None = None,
            multiple: int = 1) -> dict[str, Any]:
    """Tensors for a micro-batch; each row holds one (padded) or several (packed) examples.

    `multiple` rounds the width of padded rows up (fewer distinct shapes). Returns input_ids, position_ids,
    labels (-100 off markers), soft (NaN off markers), attention_mask (None when packed), n_tokens (real
    tokens), n_steps."""
    import torch

    lengths = [sum(len(e) for e in row) for row in examples]
    # Few distinct shapes: on CPU every new sequence length costs ~1 s of kernel set-up.
    width = width or -(-max(lengths) // multiple) * multiple
    b = len(examples)
    ids = torch.full((b, width), pad_id, dtype=torch.long)
    pos = torch.zeros((b, width), dtype=torch.long)
    labels = torch.full((b, width), IGNORE_INDEX, dtype=torch.long)
    soft = torch.full((b, width), float("nan"), dtype=torch.float32)
    mask = torch.zeros((b, width), dtype=torch.long)
    for r, row in enumerate(examples):
        if not packed and len(row) != 1:
            raise ValueError("a padded row holds exactly one example")
        at = 0
        for ex in row:
            n = len(ex)
            ids[r, at:at + n] = torch.tensor(ex.input_ids)
            pos[r, at:at + n] = torch.arange(n)
            mask[r, at:at + n] = 1
            p = torch.tensor(ex.marker_positions, dtype=torch.long) + at
            labels[r, p] = torch.tensor(ex.labels, dtype=torch.long)
            soft[r, p] = torch.tensor(ex.soft, dtype=torch.float32)
            at += n
        if packed and at < width:
            # Trailing padding is its own segment (positions restart at 0): it attends only to itself.
            pos[r, at:] = torch.arange(width - at)
    return {
        "input_ids": ids,
        "position_ids": pos,
        "attention_mask": None if packed else mask,
        "labels": labels,
        "soft": soft,
        "n_tokens": int(mask.sum()),
        "n_steps": int((labels != IGNORE_INDEX).sum()),
    }


def make_batches(examples: list[Tokenized], micro_batch_size: int, packed: bool, pack_length: int,
                 seed: int, epoch: int) -> list[list[list[Tokenized]]]:
    """One epoch's micro-batches (lists of rows of examples), shuffled deterministically by (seed, epoch)."""
    if packed:
        rows = [[examples[i] for i in row] for row in pack_rows(examples, pack_length)]
    else:
        rows = [[e] for e in examples]
    rng = random.Random(seed * 1000003 + epoch)
    rng.shuffle(rows)
    if not packed:
        # Sort within windows of 16 micro-batches by length: less padding, still shuffled.
        window = micro_batch_size * 16
        rows = [r for k in range(0, len(rows), window)
                for r in sorted(rows[k:k + window], key=lambda row: len(row[0]))]
    batches = [rows[k:k + micro_batch_size] for k in range(0, len(rows), micro_batch_size)]
    rng.shuffle(batches)
    return batches


# ---------------------------------------------------------------------------------------------- export

def export_trl(examples: Iterable[SourcedExample], path: str | Path) -> int:
    """Write examples in TRL's stepwise-supervision format (`prompt, completions, labels`)."""
    rows = [{"prompt": s.example.prompt, "completions": s.example.completions, "labels": s.example.labels}
            for s in examples]
    write_atomic(path, rows)
    return len(rows)
