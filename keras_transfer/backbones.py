"""The backbone registry: name -> model, preprocessing, input size, block spec. (placeholder: being written.)"""


class Backbone:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError


def get_backbone(*args, **kwargs):
    raise NotImplementedError


def list_backbones(*args, **kwargs):
    raise NotImplementedError


def load_hub_task(*args, **kwargs):
    raise NotImplementedError

