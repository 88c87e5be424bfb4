"""Transfer diagnostics: how far to unfreeze, and the pitfalls, measured. (placeholder: being written.)"""


def probe_blocks(*args, **kwargs):
    raise NotImplementedError


def suggest_unfreeze(*args, **kwargs):
    raise NotImplementedError


def domain_shift(*args, **kwargs):
    raise NotImplementedError


def negative_transfer(*args, **kwargs):
    raise NotImplementedError


def forgetting(*args, **kwargs):
    raise NotImplementedError

