"""`FineTuneConfig`: every option of `fine_tune`, checked once, at construction.

The options are fields of one frozen dataclass, so a run is a value that can
be stored, compared and replayed (`dataclasses.asdict` and back), recipes
derive their configs from it, and the `keras-transfer` command reads each
option's type from its annotation. As in PEFT's configs, options that do not
fit together fail at construction, with a message that names both.

Settings a strategy does not use (`top_blocks` under `"full"`, `lora_rank`
under `"fine_tune"`, `layer_decay` under `"lora"`) are ignored rather than
rejected, so one settings dict can compare strategies. What cannot be meant
is an error: `candidates` or `budget` without `strategy="auto"`, `l2_sp` with
a strategy that trains no pretrained weight.
"""

import dataclasses
import numbers
from typing import Literal

from keras_transfer import _checks
from keras_transfer.search import Candidate

STRATEGIES = ("scratch", "feature_extraction", "fine_tune", "full", "lora", "auto")
MIXED_PRECISION = ("auto", "float32", "mixed_float16", "mixed_bfloat16", "float16", "bfloat16")

# Old spellings, kept for one release: old name -> new name.
RENAMED = {"unfreeze_top_blocks": "top_blocks"}

# Options that only some strategies can use, and those strategies. Giving one
# to any other strategy is a mistake, not a sweep setting (see the module docstring).
ONLY_WITH = {
    "candidates": ("auto",),
    "budget": ("auto",),
    "l2_sp": ("fine_tune", "full", "auto"),
}


@dataclasses.dataclass(frozen=True)
class FineTuneConfig:
    """The options of `kt.fine_tune`, checked alone and together at construction.

    Every field is an argument of `fine_tune` of the same name and meaning
    (see its docstring); `fine_tune(model, train_ds, val_ds, config=config)`
    runs it. Values are normalised: `verbose` becomes 0, 1 or 2, `candidates`
    a tuple of `Candidate`s and names, `mixed_precision=False` None.

    Args:
        num_classes: number of classes (at least 2).
        head_epochs, fine_tune_epochs: epochs of phase 1 and phase 2.
        strategy: one of `STRATEGIES`.
        top_blocks: backbone blocks phase 2 trains under `"fine_tune"` (and
            the `"fine_tune"` candidate of `"auto"`); None: the top half.
        head_lr, backbone_lr: learning rates (positive) or `"find"`.
        layer_decay: per-block decay of the rates from `backbone_lr` at the
            top backbone block down, or None.
        lora_rank, lora_alpha: rank and scale of the LoRA adapters of
            `"lora"` (and of `"auto"`'s LoRA candidate); None: rank 8, and
            alpha equal to the rank.
        cache_features, early_stopping, mixed_precision, jit_compile,
        checkpoint_dir, label_smoothing, dropout, optimizer, weight_decay,
        warmup_steps, decay_steps, patience, verbose, monitor: as in
            `fine_tune`.
        l2_sp: L2-SP strength (>= 0) for strategies that train pretrained
            weights (`"fine_tune"`, `"full"`, `"auto"`), or None.
        candidates, budget: for `strategy="auto"` only.

    Raises:
        ValueError: for a value out of range, or options that do not fit
            together; the message names the options and what they received.

    Example:

    >>> import dataclasses
    >>> from keras_transfer.config import FineTuneConfig
    >>> config = FineTuneConfig(num_classes=4, strategy="auto", budget=6, verbose=True)
    >>> config.verbose
    1
    >>> FineTuneConfig(**dataclasses.asdict(config)) == config
    True
    >>> FineTuneConfig(num_classes=4, budget=6)
    Traceback (most recent call last):
    ...
    ValueError: `budget` is for strategy='auto' only. Received: strategy='fine_tune', budget=6
    """

    num_classes: int
    _: dataclasses.KW_ONLY
    head_epochs: int = 5
    fine_tune_epochs: int = 5
    strategy: Literal[STRATEGIES] = "fine_tune"
    top_blocks: int | None = None
    head_lr: float | Literal["find"] = 1e-3
    backbone_lr: float | Literal["find"] = 1e-4
    layer_decay: float | None = None
    lora_rank: int | None = None
    lora_alpha: float | None = None
    cache_features: bool = True
    early_stopping: bool = True
    mixed_precision: Literal[MIXED_PRECISION] | None = "auto"
    jit_compile: bool | Literal["auto"] = "auto"
    checkpoint_dir: str | None = None
    label_smoothing: float = 0.0
    dropout: float = 0.2
    optimizer: str = "adam"
    weight_decay: float | None = None
    warmup_steps: int = 0
    decay_steps: int | None = None
    patience: int = 3
    verbose: int | Literal["auto"] = "auto"
    monitor: str = "val_accuracy"
    l2_sp: float | None = None
    candidates: tuple[str, ...] | None = None
    budget: int | None = None

    def __post_init__(self):
        self._check_fields()
        self._check_combinations()

    @property
    def unfreeze_top_blocks(self):
        """Deprecated: `top_blocks`."""
        _checks.renamed({"unfreeze_top_blocks": None}, "unfreeze_top_blocks", "top_blocks", type(self).__name__)
        return self.top_blocks

    def _set(self, name, value):
        object.__setattr__(self, name, value)  # normalising a frozen dataclass's own fields

    def _check_fields(self):
        n = self.num_classes
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 2:
            raise ValueError(f"`num_classes` must be an integer >= 2. Received: num_classes={n!r}")
        for name in ("head_epochs", "fine_tune_epochs", "warmup_steps", "patience"):
            self._set(name, _checks.non_negative_int(name, getattr(self, name)))
        if self.strategy not in STRATEGIES:
            raise ValueError(f"Unknown `strategy`. Received: strategy={self.strategy!r}. "
                             f"Valid strategies: {list(STRATEGIES)}")
        self._set("top_blocks", _checks.non_negative_int("top_blocks", self.top_blocks, optional=True))
        for name in ("head_lr", "backbone_lr"):
            value = getattr(self, name)
            if value != "find":
                try:
                    self._set(name, _checks.positive_float(name, value))
                except ValueError:
                    raise ValueError(f"`{name}` must be a positive number or 'find'. Received: {name}={value!r}") from None
        decay = self.layer_decay
        if decay is not None and (isinstance(decay, bool) or not isinstance(decay, numbers.Real) or not 0 < decay <= 1):
            raise ValueError(f"`layer_decay` must be a number in (0, 1] or None. Received: layer_decay={decay!r}")
        self._set("lora_rank", _checks.positive_int("lora_rank", self.lora_rank, optional=True))
        self._set("lora_alpha", _checks.positive_float("lora_alpha", self.lora_alpha, optional=True))
        for name in ("cache_features", "early_stopping"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` must be True or False. Received: {name}={getattr(self, name)!r}")
        if self.mixed_precision is False:
            self._set("mixed_precision", None)
        if self.mixed_precision is not None:
            _checks.choice("mixed_precision", self.mixed_precision, MIXED_PRECISION + (None,))
        _checks.choice("jit_compile", self.jit_compile, (True, False, "auto"))
        for name, low, high in (("label_smoothing", 0, 1), ("dropout", 0, 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value < high:
                raise ValueError(f"`{name}` must be a number in [{low}, {high}). Received: {name}={value!r}")
        if self.weight_decay is not None and (isinstance(self.weight_decay, bool)
                                              or not isinstance(self.weight_decay, numbers.Real)
                                              or self.weight_decay < 0):
            raise ValueError(f"`weight_decay` must be a number >= 0 or None. Received: weight_decay={self.weight_decay!r}")
        self._set("decay_steps", _checks.positive_int("decay_steps", self.decay_steps, optional=True))
        self._set("verbose", _checks.verbose(self.verbose))
        if not isinstance(self.monitor, str) or not self.monitor:
            raise ValueError(
                f"`monitor` must be the name of a log value, e.g. 'val_accuracy'. Received: monitor={self.monitor!r}"
            )
        l2_sp = self.l2_sp
        if l2_sp is not None and (isinstance(l2_sp, bool) or not isinstance(l2_sp, numbers.Real) or not l2_sp >= 0):
            raise ValueError(f"`l2_sp` must be a number >= 0 or None. Received: l2_sp={l2_sp!r}")
        if self.budget is not None and (isinstance(self.budget, bool) or not isinstance(self.budget, numbers.Integral)
                                        or self.budget <= 0):
            raise ValueError("`budget` must be a positive integer (epochs over all candidates). "
                             f"Received: budget={self.budget!r}")
        if self.candidates is not None:
            if isinstance(self.candidates, (str, Candidate, dict)) or not len(self.candidates):
                raise ValueError(f"`candidates` must be a non-empty list. Received: candidates={self.candidates!r}")
            # `dataclasses.asdict` turns Candidates into dicts; they come back as Candidates.
            self._set("candidates", tuple(Candidate(**c) if isinstance(c, dict) else c for c in self.candidates))

    def _check_combinations(self):
        if self.head_epochs + self.fine_tune_epochs == 0:
            raise ValueError("`head_epochs` and `fine_tune_epochs` are both 0: nothing to train. "
                             f"Received: head_epochs={self.head_epochs}, fine_tune_epochs={self.fine_tune_epochs}")
        for name, strategies in ONLY_WITH.items():
            value = getattr(self, name)
            if value is not None and self.strategy not in strategies:
                if name == "l2_sp":
                    raise ValueError(
                        f"`l2_sp` pulls pretrained weights that train toward their start; strategy={self.strategy!r} "
                        f"trains none (use 'fine_tune', 'full' or 'auto'). Received: strategy={self.strategy!r}, "
                        f"l2_sp={value!r}"
                    )
                raise ValueError(f"`{name}` is for strategy='auto' only. Received: strategy={self.strategy!r}, "
                                 f"{name}={value!r}")
        if self.strategy == "auto" and self.fine_tune_epochs == 0:
            for name in ("candidates", "budget"):
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"`{name}` is spent in phase 2, and `fine_tune_epochs=0` leaves none: strategy='auto' "
                        f"would train the head alone. Received: fine_tune_epochs=0, {name}={getattr(self, name)!r}"
                    )
        if self.strategy == "fine_tune" and self.top_blocks == 0:
            raise ValueError(
                "strategy='fine_tune' with `top_blocks=0` trains no block of the backbone: that is "
                "strategy='feature_extraction'. Received: strategy='fine_tune', top_blocks=0"
            )


def take_renamed(options, where):
    """Replaces old option names in `options` (a dict) by their new ones, warning once for each.

    Passing an option under both names is an error that names both.

    Example:

    >>> import warnings
    >>> from keras_transfer.config import take_renamed
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", FutureWarning)
    ...     take_renamed({"unfreeze_top_blocks": 2}, "fine_tune")
    {'top_blocks': 2}
    """
    options = dict(options)
    for old, new in RENAMED.items():
        if old in options and new in options:
            raise ValueError(f"`{old}` is the old name of `{new}`; pass `{new}` only. "
                             f"Received: {old}={options[old]!r}, {new}={options[new]!r}")
        if old in options:
            options[new] = _checks.renamed(options, old, new, where)
    return options
