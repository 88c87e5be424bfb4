"""`BlockSpec`: how one architecture family's layers group into blocks (the table's row type)."""

import dataclasses
import re

from keras_transfer import _checks


def _check_regex(name, regex):
    try:
        re.compile(regex)
    except (re.error, TypeError) as error:
        raise ValueError(f"`{name}` must be a regular expression. Received: {name}={regex!r} ({error})") from None


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """How one architecture family's layers group into blocks.

    Args:
        family: a short family name, shown in reports.
        model: regex, full-matched against the model's `name` or class name.
        rules: ordered `(block, regex)` pairs. A layer whose name full-matches
            `regex` goes to block `block`, which may use the regex's groups
            (`r"\\1"`). Rules only move forward: once a layer matched rule `k`,
            later layers are matched against rules `k..` only.
        unmatched: where a layer that matches no rule goes: `"previous"` joins
            the block of the last matched layer, `"next"` the block of the
            next matched layer (for families whose blocks end at a named
            layer, such as InceptionV3's `mixedN`).
        expand: regex of top-level layers to open into their sublayers before
            matching (a ViT's encoder holds all its transformer blocks).
        signature: layer-name regexes that all must be present; they
            recognise the family in a renamed model.
        lora_targets: regexes full-matched against the names of the
            family's `Dense` / `EinsumDense` layers: where `apply_lora` puts
            adapters when given no `targets` (for transformers, the attention
            query and value projections, as keras-hub's own
            `default_lora_layer_names`). Empty: `apply_lora`'s general rule.
    """

    family: str
    model: str
    rules: tuple
    unmatched: str = "previous"
    expand: str = ""
    signature: tuple = ()
    lora_targets: tuple = ()

    def __post_init__(self):
        if not isinstance(self.family, str) or not self.family:
            raise ValueError(f"`family` must be a non-empty string. Received: family={self.family!r}")
        _check_regex("model", self.model)
        if (not isinstance(self.rules, (tuple, list)) or not self.rules
                or not all(isinstance(r, (tuple, list)) and len(r) == 2 for r in self.rules)):
            raise ValueError(f"`rules` must be a non-empty sequence of (block, regex) pairs. "
                             f"Received: rules={self.rules!r}")
        for block, regex in self.rules:
            _check_regex(f"rules[{block!r}]", regex)
        _checks.choice("unmatched", self.unmatched, ("previous", "next"))
        if self.expand:
            _check_regex("expand", self.expand)
        for field in ("signature", "lora_targets"):
            value = getattr(self, field)
            if isinstance(value, str) or not isinstance(value, (tuple, list)):
                raise ValueError(f"`{field}` must be a tuple of regexes. Received: {field}={value!r}")
            for regex in value:
                _check_regex(field, regex)
        # Frozen and hashable: store sequences as tuples.
        object.__setattr__(self, "rules", tuple(tuple(r) for r in self.rules))
        object.__setattr__(self, "signature", tuple(self.signature))
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
