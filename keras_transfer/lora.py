"""LoRA: a low-rank adapter Dense layer and LoRA across a model. (placeholder: being written.)"""


class LoRADense:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError


def apply_lora(*args, **kwargs):
    raise NotImplementedError


def merge_lora(*args, **kwargs):
    raise NotImplementedError


def save_adapters(*args, **kwargs):
    raise NotImplementedError


def load_adapters(*args, **kwargs):
    raise NotImplementedError


def lora_summary(*args, **kwargs):
    raise NotImplementedError

