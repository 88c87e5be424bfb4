"""Block specs of keras-hub text backbones (encoders and decoder LLMs), recognised by class name."""

SPECS = ()
