"""Choosing depth and rates by trial: candidates, and successive halving over them.

`fine_tune(strategy="auto")` trains one head (phase 1), then gives every
candidate (how many blocks train, at which backbone rate) a short budget from
that same head, keeps the better half, continues the survivors, and runs the
winner to the full budget: successive halving (Jamieson & Talwalkar, 2016),
the inner loop of Hyperband.

Written here rather than through KerasTuner's Hyperband: a KerasTuner trial
builds a fresh model from a hypermodel function and trains it from scratch (or
from a checkpoint of the same trial), while our candidates must all start from
one trained head, keep their own per-block `MultiOptimizer`, and share the
backbone weights of one model in memory. The schedule itself is a dozen lines
(`successive_halving`), independent of Keras, and tested on its own.
"""

import dataclasses
import math
import time

import pandas as pd


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One way to run phase 2 of `fine_tune`: how deep, at which rate.

    Attributes:
        name: a short label, e.g. `"top_8@1e-04"`.
        top_blocks: backbone blocks that train (0: the head alone, i.e.
            feature extraction continued; -1: LoRA adapters, as the name
            `"lora"` gives).
        backbone_lr: rate of the pretrained blocks (of the top one, with
            `layer_decay`), or `"find"` for `kt.lr_find`'s suggestion.
        layer_decay: per-block decay of the rates from `backbone_lr` at the
            top backbone block down, or None.

    Example:

    >>> import keras_transfer as kt
    >>> kt.Candidate("top_4@3e-05", top_blocks=4, backbone_lr=3e-5).top_blocks
    4
    """

    name: str
    top_blocks: int
    backbone_lr: object = 1e-5
    layer_decay: object = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"`name` must be a non-empty string. Received: name={self.name!r}")
        if isinstance(self.top_blocks, bool) or not isinstance(self.top_blocks, int) or self.top_blocks < -1:
            raise ValueError(
                f"`top_blocks` must be an integer >= 0 (or -1 for LoRA). Received: top_blocks={self.top_blocks!r}"
            )
        rate = self.backbone_lr
        if rate != "find" and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0):
            raise ValueError(f"`backbone_lr` must be a positive number or 'find'. Received: backbone_lr={rate!r}")
        decay = self.layer_decay
        if decay is not None and (isinstance(decay, bool) or not isinstance(decay, (int, float))
                                  or not 0 < decay <= 1):
            raise ValueError(f"`layer_decay` must be None or a number in (0, 1]. Received: layer_decay={decay!r}")


def default_candidates(num_backbone_blocks, backbone_lr=None):
    """The depths and rates `strategy="auto"` tries, spread from none to all blocks.

    Feature extraction; the top 2 blocks at a low rate (1e-5, the usual
    near-domain choice); about half the blocks at 1e-4; and every block at
    1e-4 with layer decay 0.8 (the far-domain choice). The rates are the
    guide's range for pretrained blocks (1e-5..1e-4); `backbone_lr` replaces
    both when given (a number, or `"find"`).

    Args:
        num_backbone_blocks: how many blocks the backbone has.
        backbone_lr: one rate for every candidate, or None for the spread.

    Returns:
        A list of `Candidate`s, shallowest first, without duplicates.

    Example:

    >>> from keras_transfer.search import default_candidates
    >>> [c.name for c in default_candidates(18)]
    ['feature_extraction', 'top_2@1e-05', 'top_9@1e-04', 'all_18@1e-04_decay0.8']
    """
    if isinstance(num_backbone_blocks, bool) or not isinstance(num_backbone_blocks, int) or num_backbone_blocks < 1:
        raise ValueError(
            f"`num_backbone_blocks` must be a positive integer. Received: num_backbone_blocks={num_backbone_blocks!r}"
        )
    n = num_backbone_blocks
    low, high = (1e-5, 1e-4) if backbone_lr is None else (backbone_lr, backbone_lr)

    def label(top, rate, decay=None):
        depth = "all" if top == n else "top"
        rate_text = rate if isinstance(rate, str) else f"{rate:.0e}"
        return f"{depth}_{top}@{rate_text}" + (f"_decay{decay}" if decay else "")

    candidates = [Candidate("feature_extraction", 0)]
    for top, rate, decay in ((min(2, n), low, None), (max(1, n // 2), high, None), (n, high, 0.8)):
        candidate = Candidate(label(top, rate, decay), top, rate, decay)
        if all((c.top_blocks, c.backbone_lr, c.layer_decay) != (top, rate, decay) for c in candidates):
            candidates.append(candidate)
    return candidates


def successive_halving(candidates, train, *, max_epochs, min_epochs=1, eta=2, budget=None, verbose=0):
    """Successive halving: short runs for all, longer runs for the better ones.

    Rung `i` trains every surviving candidate up to `min_epochs * eta**i`
    epochs in total (at most `max_epochs`), then keeps the best
    `ceil(n / eta)`; the last one standing trains up to `max_epochs`.
    Candidates continue where they stopped: `train(candidate, epochs)` adds
    `epochs` epochs to that candidate and returns its score so far (higher
    is better; any comparable value, e.g. `(accuracy, -loss)`).

    `budget` caps the epochs spent over all candidates: a call never gets
    more than what is left, and when nothing is left the best candidate so
    far wins.

    Args:
        candidates: a non-empty list of candidates (any objects with a
            `name`, or strings).
        train: `train(candidate, epochs) -> score`.
        max_epochs: epochs the winner trains in total (>= `min_epochs`).
        min_epochs: epochs of every candidate in the first rung.
        eta: how many candidates rung `i` holds per survivor (an int >= 2).
        budget: total epochs over all candidates, or None for the schedule's
            own cost.
        verbose: 1 prints one line per trained candidate.

    Returns:
        `(winner, table)`: the winning candidate, and a DataFrame with one
        row per call of `train`: `rung`, `candidate`, `epochs` (added),
        `total_epochs` (the candidate's so far), `score`, `seconds`,
        `kept` (whether it survived that rung).

    Example:

    >>> from keras_transfer.search import successive_halving
    >>> quality = {"a": 0.1, "b": 0.3, "c": 0.2}
    >>> spent = {}
    >>> def train(name, epochs):
    ...     spent[name] = spent.get(name, 0) + epochs
    ...     return quality[name] * spent[name]
    >>> winner, table = successive_halving(["a", "b", "c"], train, max_epochs=4)
    >>> winner, spent
    ('b', {'a': 1, 'b': 4, 'c': 2})
    """
    candidates = list(candidates)
    if not candidates:
        raise ValueError(f"`candidates` must be a non-empty list. Received: candidates={candidates!r}")
    names = [getattr(c, "name", c) for c in candidates]
    if len(set(names)) != len(names):
        raise ValueError(f"`candidates` must have distinct names. Received names: {names}")
    if not callable(train):
        raise TypeError(f"`train` must be callable. Received: train={train!r}")
    for name, value, low in (("min_epochs", min_epochs, 1), ("max_epochs", max_epochs, 1), ("eta", eta, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"`{name}` must be an integer >= {low}. Received: {name}={value!r}")
    if max_epochs < min_epochs:
        raise ValueError(
            "`max_epochs` must be at least `min_epochs`. "
            f"Received: min_epochs={min_epochs}, max_epochs={max_epochs}"
        )
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0):
        raise ValueError(f"`budget` must be a positive integer (epochs) or None. Received: budget={budget!r}")

    done = {name: 0 for name in names}
    scores = {}
    rows = []
    spent = 0
    alive = list(range(len(candidates)))
    rung = 0
    while True:
        last = len(alive) == 1
        target = max_epochs if last else min(max_epochs, min_epochs * eta**rung)
        for i in alive:
            epochs = target - done[names[i]]
            if budget is not None:
                epochs = min(epochs, budget - spent)
            if epochs <= 0:
                continue
            start = time.perf_counter()
            scores[names[i]] = train(candidates[i], epochs)
            done[names[i]] += epochs
            spent += epochs
            rows.append({"rung": rung, "candidate": names[i], "epochs": epochs, "total_epochs": done[names[i]],
                         "score": scores[names[i]], "seconds": time.perf_counter() - start, "kept": True})
            if verbose:
                print(f"rung {rung}: {names[i]:<28} {done[names[i]]} epoch(s), score {_show(scores[names[i]])}")
        scored = [i for i in alive if names[i] in scores]
        out_of_budget = budget is not None and spent >= budget
        if last or out_of_budget or not scored:
            break
        ranked = sorted(scored, key=lambda i: scores[names[i]], reverse=True)
        keep = set(ranked[: math.ceil(len(alive) / eta)])
        for row in rows:
            if row["rung"] == rung:
                row["kept"] = names.index(row["candidate"]) in keep
        alive = [i for i in alive if i in keep]
        rung += 1
    contenders = [i for i in alive if names[i] in scores] or [i for i in range(len(names)) if names[i] in scores]
    if not contenders:
        raise ValueError(f"`budget` left no epoch to train any candidate. Received: budget={budget!r}")
    winner = max(contenders, key=lambda i: scores[names[i]])
    table = pd.DataFrame(rows, columns=["rung", "candidate", "epochs", "total_epochs", "score", "seconds", "kept"])
    return candidates[winner], table


def _show(score):
    return ", ".join(f"{s:.4f}" for s in score) if isinstance(score, tuple) else f"{score:.4f}"


def plot_search(table):
    """Draws a successive-halving table: each candidate's score against its epochs.

    Args:
        table: the `table` of `successive_halving` (or `FineTuneResult.search`).

    Returns:
        A `matplotlib.figure.Figure` (no global matplotlib state is touched).

    Example:

    >>> import pandas as pd
    >>> from keras_transfer.search import plot_search
    >>> table = pd.DataFrame({"rung": [0, 0, 1], "candidate": ["a", "b", "b"],
    ...                       "total_epochs": [1, 1, 3], "score": [0.5, 0.7, 0.8]})
    >>> figure = plot_search(table)
    >>> [line.get_label() for line in figure.axes[0].get_lines()]
    ['a', 'b']
    """
    from matplotlib.figure import Figure

    needed = {"candidate", "total_epochs", "score"}
    if not isinstance(table, pd.DataFrame) or not needed <= set(table.columns):
        raise ValueError(f"`table` must be a DataFrame with columns {sorted(needed)}. Received: {type(table).__name__}")
    figure = Figure(figsize=(6.5, 3.8))
    ax = figure.add_subplot()
    for name, rows in table.groupby("candidate", sort=False):
        scores = [s[0] if isinstance(s, tuple) else s for s in rows.score]
        ax.plot(rows.total_epochs, scores, marker="o", label=str(name))
    ax.set_xlabel("epochs trained (phase 2)")
    ax.set_ylabel("validation score")
    ax.set_title("Successive halving over depth and rate")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure
