"""multienc: fine-tune several pretrained transformer encoders together.

The engine (forward, backward, optimizer, tokenizers) is C, with an optional
CUDA backend; this package is the Python API around it. See README.md for the
user guide and docs/ARCHITECTURE.md for the layers:

    cli, benchmark, plot, data; encoders, task_heads, trainer (the seed's module names)
      training/      ModelTrainer, its settings, schedule, log
      models/        LanguageModel, MultiEncoder, heads, their inputs and checkpoints
      datasets/      corpora, their files and downloads
      engine/        the C extension: encoders, tokenizers, task model, devices
      evaluation/    metrics
      hub/           model files from folders, the HF cache or the hub; downloads
      formats/       safetensors, torch pickles, weight folders, checkpoint files
"""
from multienc.engine import build_info, cuda_available
from multienc.models.initialization import set_seed

__version__ = "0.1.0"

__all__ = ["build_info", "cuda_available", "set_seed", "__version__"]
