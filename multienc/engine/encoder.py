"""Low-level engine API: a transformer encoder computed by multienc's C code.

    enc = Encoder("path/to/model_dir")        # config.json + model.safetensors; device=None: auto
    h = enc.forward(input_ids, attention_mask)  # float32 (B, T, H), HF last_hidden_state
    grads = enc.backward(dL_dh)                 # {hf_name: gradient}, accumulating

The C side owns one flat parameter buffer and one flat gradient buffer; every
HF parameter tensor is a slice of them (``param_info``). numpy sees them only
through copies at the edges (loading, ``state_dict``, gradients).
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from multienc.engine import _C
from multienc.engine.device import resolve_device
from multienc.formats.safetensors import save_file
from multienc.formats.weights import find_weight_file, load_state_dict

FAMILIES = {"bert": 0, "roberta": 1, "electra": 2}
ACTIVATIONS = {"gelu": 0, "gelu_new": 1, "gelu_pytorch_tanh": 1, "gelu_fast": 1}
# Checkpoint tensors that belong to task heads or buffers, not to the encoder.
IGNORED_PREFIXES = ("cls.", "lm_head.", "discriminator_predictions.", "generator_predictions.",
                    "generator_lm_head.", "pooler.", "classifier.", "qa_outputs.",
                    "sop_classifier.", "embeddings.position_ids")
BASE_PREFIXES = ("bert.", "roberta.", "electra.")


class ModelConfigError(ValueError):
    """config.json is missing, unreadable or describes an unsupported model."""


def engine_config(config: Mapping[str, Any], source: str = "config.json") -> Dict[str, Any]:
    """Translate an HF ``config.json`` dict into the C engine's config.

    Raises NotImplementedError for model types, activations or position
    embedding types the engine does not implement, naming the supported ones.
    """
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
        raise NotImplementedError(
            f"{source}: model_type {model_type!r} is not supported; supported model types: "
            f"{', '.join(sorted(FAMILIES))} (SpanBERT and ERNIE 2.0 checkpoints are 'bert')")
    act = config.get("hidden_act", "gelu")
    if act not in ACTIVATIONS:
        raise NotImplementedError(
            f"{source}: hidden_act {act!r} is not supported; supported: {', '.join(ACTIVATIONS)}")
    pos_type = config.get("position_embedding_type", "absolute")
    if pos_type not in (None, "absolute"):
        raise NotImplementedError(
            f"{source}: position_embedding_type {pos_type!r} is not supported (only 'absolute')")
    defaults = {"bert": 0, "roberta": 1, "electra": 0}
    pad = config.get("pad_token_id")
    if pad is None:
        pad = defaults[model_type]
    try:
        hidden = int(config["hidden_size"])
        cfg = {
            "family": FAMILIES[model_type],
            "vocab_size": int(config["vocab_size"]),
            "hidden_size": hidden,
            "num_hidden_layers": int(config["num_hidden_layers"]),
            "num_attention_heads": int(config["num_attention_heads"]),
            "intermediate_size": int(config["intermediate_size"]),
            "max_position_embeddings": int(config.get("max_position_embeddings", 512)),
            "type_vocab_size": int(config.get("type_vocab_size", 2)),
            "embedding_size": int(config.get("embedding_size") or hidden),
            "activation": ACTIVATIONS[act],
            "pad_token_id": int(pad),
            "layer_norm_eps": float(config.get("layer_norm_eps", 1e-12)),
            "hidden_dropout_prob": float(config.get("hidden_dropout_prob", 0.1)),
            "attention_probs_dropout_prob": float(config.get("attention_probs_dropout_prob", 0.1)),
        }
    except KeyError as e:
        raise ModelConfigError(f"{source}: missing required key {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise ModelConfigError(f"{source}: bad value: {e}") from None
    return cfg


def read_config(model_dir: str) -> Dict[str, Any]:
    """Read ``model_dir/config.json`` with errors that name the file."""
    path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(path):
        raise ModelConfigError(f"{model_dir}: no config.json in this directory")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelConfigError(f"{path}: cannot read the model config: {e}") from None
    if not isinstance(config, dict):
        raise ModelConfigError(f"{path}: expected a JSON object")
    return config


def normalize_name(name: str) -> Optional[str]:
    """Map a checkpoint tensor name to the engine's HF base-model name (None = not ours)."""
    for p in BASE_PREFIXES:
        if name.startswith(p):
            name = name[len(p):]
            break
    if name.startswith(IGNORED_PREFIXES):
        return None
    if name.endswith("LayerNorm.gamma"):
        name = name[: -len("gamma")] + "weight"
    elif name.endswith("LayerNorm.beta"):
        name = name[: -len("beta")] + "bias"
    return name


def _int_array(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape (batch, length), got {a.shape}")
    if a.size and (a.min() < np.iinfo(np.int32).min or a.max() > np.iinfo(np.int32).max):
        raise ValueError(f"{name} has values outside the int32 range")
    return np.ascontiguousarray(a, dtype=np.int32)


class Encoder:
    """A BERT / RoBERTa / ELECTRA encoder computed by the C engine.

    Args:
        model_dir: folder with ``config.json`` and the weights (HF layout:
            ``model.safetensors``, its sharded index, or ``pytorch_model.bin`` read
            without torch).
        config_overrides: values replacing those of config.json (e.g.
            ``{"hidden_dropout_prob": 0.4}``).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; None takes ``$MULTIENC_DEVICE``,
            else a visible GPU, else the CPU (:func:`multienc.device.resolve_device`).
            Parameters, gradients and activations live there; asking for a GPU that is
            not available raises RuntimeError.
    """

    def __init__(self, model_dir: str, config_overrides: Optional[Mapping[str, Any]] = None,
                 device: Optional[str] = None):
        config = read_config(model_dir)
        config.update(config_overrides or {})
        self._init(config, os.path.join(model_dir, "config.json"), device)
        self.load_state_dict(load_state_dict(model_dir), source=find_weight_file(model_dir)[0])

    @classmethod
    def from_config(cls, config: Mapping[str, Any], seed: int = 0,
                    device: Optional[str] = None) -> "Encoder":
        """An encoder with HF-style random weights (normal(0, initializer_range), LayerNorm 1/0)."""
        self = cls.__new__(cls)
        self._init(dict(config), "config", device)
        rng = np.random.default_rng(seed)
        std = float(config.get("initializer_range", 0.02))
        flat = np.zeros(self._c.num_floats, np.float32)
        for name, shape, off in self._c.param_info():
            n = int(np.prod(shape))
            if name.endswith("LayerNorm.weight"):
                flat[off:off + n] = 1.0
            elif name.endswith("weight"):
                flat[off:off + n] = rng.normal(0.0, std, n).astype(np.float32)
        self._c.write_params(flat)
        return self

    @classmethod
    def from_state_dict(cls, config: Mapping[str, Any], tensors: Mapping[str, np.ndarray],
                        source: str = "state dict", device: Optional[str] = None) -> "Encoder":
        """An encoder with the given config and weights (e.g. from a multienc checkpoint)."""
        self = cls.__new__(cls)
        self._init(dict(config), source, device)
        self.load_state_dict(tensors, source=source)
        return self

    def _init(self, config: Dict[str, Any], source: str, device: Optional[str]) -> None:
        self.config: Dict[str, Any] = config
        self.device: str = resolve_device(device)
        self._c = _C.Encoder(engine_config(config, source), device=self.device)
        self._info: Dict[str, Tuple[Tuple[int, ...], int]] = {
            name: (tuple(shape), off) for name, shape, off in self._c.param_info()}
        self.hidden_size = int(config["hidden_size"])

    @property
    def max_positions(self) -> int:
        """Longest input (special tokens included) the position embeddings allow: RoBERTa numbers
        positions from ``pad_token_id + 1`` (HF-SEMANTICS.md §2), so it loses ``pad_token_id + 1`` of
        ``max_position_embeddings``; the C forward rejects longer inputs with the same rule."""
        cfg = engine_config(self.config)
        if cfg["family"] == FAMILIES["roberta"]:
            return cfg["max_position_embeddings"] - cfg["pad_token_id"] - 1
        return cfg["max_position_embeddings"]

    # ----------------------------------------------------------- parameters
    def param_names(self) -> list:
        """HF names of the encoder's parameters, in buffer order."""
        return list(self._info)

    def _unflatten(self, flat: np.ndarray) -> Dict[str, np.ndarray]:
        return {name: flat[off:off + int(np.prod(shape))].reshape(shape).copy()
                for name, (shape, off) in self._info.items()}

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Copies of every parameter, keyed by HF base-model names."""
        flat = np.empty(self._c.num_floats, np.float32)
        self._c.read_params(flat)
        return self._unflatten(flat)

    def load_state_dict(self, tensors: Mapping[str, np.ndarray], source: str = "state dict") -> None:
        """Set every parameter from an HF-named mapping (task heads and prefixes are ignored).

        Raises ValueError naming ``source`` and the tensor on a missing tensor or a shape
        that disagrees with the config.
        """
        flat = np.zeros(self._c.num_floats, np.float32)
        seen = set()
        for raw, arr in tensors.items():
            name = normalize_name(raw)
            if name is None or name not in self._info:
                continue
            shape, off = self._info[name]
            if tuple(arr.shape) != shape:
                raise ValueError(f"{source}: tensor {raw!r} has shape {tuple(arr.shape)} but the "
                                 f"config implies {shape}")
            if not np.issubdtype(arr.dtype, np.floating):
                raise ValueError(f"{source}: tensor {raw!r} has dtype {arr.dtype}, expected floats")
            flat[off:off + arr.size] = np.asarray(arr, dtype=np.float32).reshape(-1)
            seen.add(name)
        missing = [n for n in self._info if n not in seen]
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise ValueError(f"{source}: missing weight tensor(s) {', '.join(missing[:3])}{more}")
        self._c.write_params(flat)

    def save_pretrained(self, model_dir: str) -> None:
        """Write ``config.json`` and ``model.safetensors`` (HF names) into ``model_dir``."""
        os.makedirs(model_dir, exist_ok=True)
        save_file(self.state_dict(), os.path.join(model_dir, "model.safetensors"),
                  metadata={"format": "pt"})
        tmp = os.path.join(model_dir, ".config.json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.config, f, indent=2, sort_keys=True)
        os.replace(tmp, os.path.join(model_dir, "config.json"))

    # -------------------------------------------------------------- compute
    def forward(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None,
                train: bool = False, seed: int = 0) -> np.ndarray:
        """Last hidden state, float32 (B, T, H).

        ``train=True`` applies dropout (hidden and attention probabilities) drawn
        from a counter-based RNG keyed by ``seed``; ``train=False`` equals HF's
        eval mode. Activations are kept for ``backward``.
        """
        ids = _int_array(input_ids, "input_ids")
        mask = np.ones_like(ids) if attention_mask is None else _int_array(attention_mask, "attention_mask")
        types = None if token_type_ids is None else _int_array(token_type_ids, "token_type_ids")
        if mask.shape != ids.shape:
            raise ValueError(f"attention_mask has shape {mask.shape} but input_ids has {ids.shape}")
        if types is not None and types.shape != ids.shape:
            raise ValueError(f"token_type_ids has shape {types.shape} but input_ids has {ids.shape}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        return self._c.forward(ids, mask, types, bool(train), int(seed))

    def backward(self, grad: Any) -> Dict[str, np.ndarray]:
        """Back-propagate dL/d(last hidden state) of the last forward.

        Parameter gradients accumulate across calls until ``zero_grad``; the
        returned dict holds the accumulated gradients keyed by HF names.
        """
        g = np.asarray(grad)
        if not np.issubdtype(g.dtype, np.floating):
            raise TypeError(f"grad must be a float array, got dtype {g.dtype}")
        self._c.backward(np.ascontiguousarray(g, dtype=np.float32))
        return self.gradients()

    def gradients(self) -> Dict[str, np.ndarray]:
        """Copies of the accumulated gradients keyed by HF names."""
        flat = np.empty(self._c.num_floats, np.float32)
        self._c.read_grads(flat)
        return self._unflatten(flat)

    def buffer_addresses(self, which: str = "grads") -> List[Tuple[str, int, int]]:
        """``[("encoder", device address, floats)]`` of the flat ``"params"`` or ``"grads"`` buffer (for NCCL)."""
        return _C.buffer_addresses(self._c, which)

    def zero_grad(self) -> None:
        """Reset all accumulated gradients to zero."""
        self._c.zero_grad()
