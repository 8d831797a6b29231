"""File formats, the bottom layer: bytes in, arrays and metadata out, nothing executed.

- :mod:`~multienc.formats.safetensors`: the safetensors format (header bounds-checked first).
- :mod:`~multienc.formats.torch_pickle`: ``pytorch_model.bin`` (torch zip + pickle) read by a
  restricted interpreter that never imports or calls what the file names.
- :mod:`~multienc.formats.weights`: a model folder's weight files (single, sharded, either format).
- :mod:`~multienc.formats.checkpoint`: the file format of multienc's own checkpoints.

Imports nothing else of multienc.
"""
