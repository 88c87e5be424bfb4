"""Accelerator detection and distribution strategies. (placeholder: being written.)"""


def auto_strategy(*args, **kwargs):
    raise NotImplementedError


def accelerator_kind(*args, **kwargs):
    raise NotImplementedError


def scale_batch_size(*args, **kwargs):
    raise NotImplementedError

