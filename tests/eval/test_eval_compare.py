"""`prm eval compare`: runs side by side and correlations with BoN accuracy on a hand example."""

from __future__ import annotations

import json
import math

import pytest
from prm.eval.compare import compare_runs, correlations

from prm.errors import PrmError


def write_run(root, name, bon, f1, const):
    (root / name / "bon").mkdir(parents=True)
    (root / name / "steps").mkdir(parents=True)
    (root / name / "bon" / "metrics.json").write_text(json.dumps(
        {"kind": "bon", "headline": {"prm_min@1": 0.3, "prm_min@4": bon}}))
    (root / name / "steps" / "metrics.json").write_text(json.dumps(
        {"kind": "steps", "headline": {"prm.f1": f1, "prm.acc_correct": const, "prm.f1.math": None}}))
    return f"{name}={root / name}"


def test_correlations_by_hand(tmp_path):
    specs = [write_run(tmp_path, "a", 0.5, 0.6, 0.9), write_run(tmp_path, "b", 0.6, 0.7, 0.9),
             write_run(tmp_path, "c", 0.8, 0.65, 0.9)]
    m = compare_runs(specs, "bon.prm_min")
    assert m["target"] == "bon.prm_min@4"  # the largest N
    c = m["correlations"]["steps.prm.f1"]
    # x ranks (1, 3, 2) against y ranks (1, 2, 3): rho = 1 - 6 * (0 + 1 + 1) / (3 * 8) = 0.5
    assert c["spearman"]["r"] == pytest.approx(0.5)
    # pairs ab, ac concordant, bc discordant: tau = (2 - 1) / 3
    assert c["kendall"]["r"] == pytest.approx(1 / 3)
    dx = [-0.05, 0.05, 0.0]
    dy = [0.5 - 1.9 / 3, 0.6 - 1.9 / 3, 0.8 - 1.9 / 3]
    r = sum(a * b for a, b in zip(dx, dy, strict=True)) / math.sqrt(sum(a * a for a in dx) * sum(b * b for b in dy))
    assert c["pearson"]["r"] == pytest.approx(r)
    # a constant metric and a metric that is null everywhere have no correlation
    assert m["correlations"]["steps.prm.acc_correct"]["spearman"]["r"] is None
    assert m["correlations"]["steps.prm.f1.math"]["n"] == 0
    assert m["metrics"]["bon.prm_min@4"] == {"a": 0.5, "b": 0.6, "c": 0.8}


def test_too_few_runs_and_bad_specs(tmp_path):
    assert correlations([0.1, 0.2], [0.3, 0.4])["pearson"]["r"] is None
    with pytest.raises(PrmError, match="NAME=REPORT_DIR"):
        compare_runs(["nodir"], "bon.prm_min")
    with pytest.raises(PrmError, match="no such report folder"):
        compare_runs([f"a={tmp_path / 'missing'}"], "bon.prm_min")
    spec = write_run(tmp_path, "a", 0.5, 0.6, 0.9)
    with pytest.raises(PrmError, match="target 'bon.pass'"):
        compare_runs([spec], "bon.pass")


def test_product_is_the_default_headline_and_target(tmp_path, capsys):
    from prm.eval.config import EvalConfig

    from prm.app.cli import main

    assert EvalConfig().aggregations[0] == "product" and EvalConfig().target == "bon.prm_product"
    specs = []
    for name, product, f1 in (("a", 0.4, 0.6), ("b", 0.5, 0.7), ("c", 0.7, 0.8)):
        specs.append(write_run(tmp_path, name, 0.9 - product, f1, 0.9))
        metrics = tmp_path / name / "bon" / "metrics.json"
        data = json.loads(metrics.read_text())
        data["headline"].update({"prm_product@1": 0.2, "prm_product@4": product})
        metrics.write_text(json.dumps(data))
    assert main(["eval", "compare", "--runs", *specs, "-o", str(tmp_path / "cmp")]) == 0
    m = json.loads((tmp_path / "cmp" / "metrics.json").read_text())
    # Against the product the step F1 rises with BoN accuracy; against min it would fall.
    assert m["target"] == "bon.prm_product@4" and m["correlations"]["steps.prm.f1"]["spearman"]["r"] == pytest.approx(1.0)
    assert "with bon.prm_product@4" in capsys.readouterr().out
