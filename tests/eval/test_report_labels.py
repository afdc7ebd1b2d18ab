"""Plot row labels tell items apart (the step heatmap once cut ids to 20 characters, so two items with a long
shared prefix showed the same label)."""

from prm.eval.report import distinct_labels


def test_labels_drop_the_shared_prefix_and_keep_the_distinct_end():
    ids = ["gsm_symbolic-0-1234-tb0-longer-suffix-aaaa", "gsm_symbolic-0-1234-tb0-longer-suffix-bbbb",
           "gsm_symbolic-0-17-tb1"]
    labels = distinct_labels(ids)
    assert labels == ["…-tb0-longer-suffix-aaaa", "…-tb0-longer-suffix-bbbb", "17-tb1"]
    assert len(set(labels)) == 3 and all(len(label) <= 24 for label in labels)
    assert [f[:20] for f in ids[:2]][0] == [f[:20] for f in ids[:2]][1]  # what the old cut showed
    assert distinct_labels(["chain_sum-0-3-tb1", "chain_sum-0-4-tb0"]) == ["3-tb1", "4-tb0"]


def test_labels_that_still_collide_are_numbered():
    assert distinct_labels(["a", "a"]) == ["a", "a#1"]
    assert distinct_labels(["x" * 30 + "-same-tail-of-many-chars", "y" * 30 + "-same-tail-of-many-chars"]) == [
        "…same-tail-of-many-chars", "…same-tail-of-many-chars#1"]
    assert distinct_labels(["only-one-id"]) == ["only-one-id"]
