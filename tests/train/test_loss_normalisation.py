"""The loss of one optimizer step is the mean over every labelled step in it, whatever the micro-batch size,
gradient accumulation, packing or process count: real `prm train` runs over the same four examples (one
optimizer step covers them all; they carry 4, 3, 1 and 3 labelled steps, so a mean of per-micro-batch means
would differ) log the same loss and the same gradient norm at every step, and, since each step's update
follows from its gradient, the same losses afterwards."""

from __future__ import annotations

import json

import pytest

from tests.train.trainer_helpers import base_overrides, run_train, write_toy

STEPS = 3


def _run(root, name, model, data, nproc=1, **kw):
    out = root / name
    res = run_train(base_overrides(model, out, data, max_steps=STEPS, **{"optim.lr": 1e-3, **kw}), nproc=nproc)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "losses.jsonl").read_text().splitlines()]
    assert len(rows) == STEPS and all(r["steps"] == 11 for r in rows)  # every labelled step in every step
    return [r["loss"] for r in rows], [r["grad_norm"] for r in rows]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("norm")
    data = write_toy(root, 4, seed=0)
    ref = _run(root, "one-batch-of-4", tiny_model_dir, data, **{"data.micro_batch_size": 4, "data.packing": "false"})
    return root, data, ref


def _same(got, want):
    for a, b in zip(got, want, strict=True):
        assert a == pytest.approx(b, rel=1e-4)


def test_accumulated_micro_batches_give_the_same_step(reference, tiny_model_dir):
    root, data, (loss, norm) = reference
    assert norm[0] > 0 and loss[-1] < loss[0]
    acc = _run(root, "four-of-1", tiny_model_dir, data, gradient_accumulation_steps=4,
               **{"data.micro_batch_size": 1, "data.packing": "false"})
    _same(acc[0], loss)
    _same(acc[1], norm)


@pytest.mark.slow
def test_packing_and_two_processes_give_the_same_step(reference, tiny_model_dir):
    root, data, (loss, norm) = reference
    # packed: the four examples share one row. Two ranks: 11 labelled steps cannot split evenly over them, so
    # an average of per-rank means would differ.
    for name, nproc, kw in (("packed", 1, {"data.micro_batch_size": 1, "data.packing": "true"}),
                            ("two-ranks", 2, {"data.micro_batch_size": 2, "data.packing": "false"}),
                            ("two-ranks-accumulated", 2, {"data.micro_batch_size": 1, "data.packing": "false",
                                                          "gradient_accumulation_steps": 2})):
        got = _run(root, name, tiny_model_dir, data, nproc=nproc, **kw)
        _same(got[0], loss)
        _same(got[1], norm)
