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
from multienc.formats import schema
from multienc.formats.safetensors import BFloat16Bits, release_pages, save_file
from multienc.formats.weights import Tensor, WeightsError, find_weight_file, load_state_dict

#: model_type -> the C engine's family (XLM-RoBERTa and CamemBERT are RoBERTa's architecture under
#: other names; ERNIE is BERT's, with an optional task type table: see engine_config; DeBERTa (v1) is
#: DeBERTa-v2's engine under v1's tensor names: see DebertaV1Names)
FAMILIES = {"bert": 0, "ernie": 0, "roberta": 1, "xlm-roberta": 1, "camembert": 1, "electra": 2, "distilbert": 3,
            "albert": 4, "mpnet": 5, "deberta": 6, "deberta-v2": 6, "modernbert": 7}
_ROBERTA, _DISTILBERT, _ALBERT, _MPNET, _DEBERTA = 1, 3, 4, 5, 6
#: MPNetEmbeddings' padding index: 1 in transformers' code whatever config.pad_token_id says
MPNET_PADDING_IDX = 1
ACTIVATIONS = {"gelu": 0, "gelu_new": 1, "gelu_pytorch_tanh": 1, "gelu_fast": 1}
# Checkpoint tensors that belong to task heads or buffers, not to the encoder.
IGNORED_PREFIXES = ("cls.", "lm_head.", "discriminator_predictions.", "generator_predictions.",
                    "generator_lm_head.", "pooler.", "classifier.", "qa_outputs.",
                    "sop_classifier.", "predictions.", "vocab_transform.", "vocab_layer_norm.",
                    "vocab_projector.", "pre_classifier.", "embeddings.position_ids", "head.", "decoder.")
BASE_PREFIXES = ("bert.", "ernie.", "roberta.", "electra.", "distilbert.", "albert.", "mpnet.", "deberta.", "model.")
# DistilBERT's config.json names (DistilBertConfig.attribute_map, read the other way round).
_DISTILBERT_KEYS = {"hidden_size": "dim", "num_hidden_layers": "n_layers", "num_attention_heads": "n_heads",
                    "intermediate_size": "hidden_dim", "hidden_act": "activation",
                    "hidden_dropout_prob": "dropout", "attention_probs_dropout_prob": "attention_dropout"}
# What the transformers config classes use when config.json omits a key (vocab_size, the hidden,
# layer, head and intermediate sizes are required: a config.json written by transformers has them).
_COMMON_DEFAULTS = {"max_position_embeddings": 512, "type_vocab_size": 2, "hidden_act": "gelu",
                    "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
                    "pad_token_id": 0}
_DEFAULTS = {
    "bert": _COMMON_DEFAULTS,
    "ernie": {**_COMMON_DEFAULTS, "use_task_id": False, "task_type_vocab_size": 3},
    "roberta": {**_COMMON_DEFAULTS, "pad_token_id": 1},
    "xlm-roberta": {**_COMMON_DEFAULTS, "pad_token_id": 1},
    "camembert": {**_COMMON_DEFAULTS, "pad_token_id": 1},
    "electra": _COMMON_DEFAULTS,
    "distilbert": {**_COMMON_DEFAULTS, "sinusoidal_pos_embds": False},
    "albert": {**_COMMON_DEFAULTS, "hidden_act": "gelu_new", "hidden_dropout_prob": 0.0,
               "attention_probs_dropout_prob": 0.0, "embedding_size": 128, "num_hidden_groups": 1,
               "inner_group_num": 1},
    "mpnet": {**_COMMON_DEFAULTS, "pad_token_id": 1, "relative_attention_num_buckets": 32},
    "deberta": {**_COMMON_DEFAULTS, "type_vocab_size": 0, "layer_norm_eps": 1e-7},
    "deberta-v2": {**_COMMON_DEFAULTS, "type_vocab_size": 0, "layer_norm_eps": 1e-7},
}
# LayerNorm weights (initialised to 1): BERT's "....LayerNorm.weight", DistilBERT's "..._layer_norm.weight",
# ModernBERT's "...norm.weight".
NORM_WEIGHTS = ("LayerNorm.weight", "norm.weight")
# ModernBertConfig's defaults (transformers 5.24) for what a config.json may leave out.
_MODERNBERT_DEFAULTS = {"max_position_embeddings": 8192, "hidden_activation": "gelu", "norm_eps": 1e-5,
                        "norm_bias": False, "attention_bias": False, "mlp_bias": False,
                        "attention_dropout": 0.0, "embedding_dropout": 0.0, "mlp_dropout": 0.0,
                        "local_attention": 128, "global_attn_every_n_layers": 3,
                        "global_rope_theta": 160000.0, "local_rope_theta": 10000.0}


class ModelConfigError(ValueError):
    """config.json is missing, unreadable or describes an unsupported model."""


# config.json's fields the engine reads (others are ignored), BERT's names; sizes are bounded so
# that no product of them overflows, and each must then match the weights before anything is
# allocated. One schema per family: the family's own keys, DistilBERT's names (_DISTILBERT_KEYS).
# Missing keys take the config class's default or are refused by engine_config (_value).
_SIZE = schema.Int(1, 1 << 16)
_DROPOUT = schema.Float(0.0, 1.0, below_hi=True)
_BERT_FIELDS: Dict[str, schema.Schema] = {
    "model_type": schema.Str(max_len=100),
    "hidden_act": schema.Opt(schema.Str(max_len=100)),
    "position_embedding_type": schema.Opt(schema.Str(max_len=100)),
    "pad_token_id": schema.Opt(schema.Int(-1, (1 << 31) - 1)),
    "vocab_size": schema.Int(1, (1 << 31) - 1),
    "hidden_size": _SIZE,
    "num_hidden_layers": schema.Int(1, 1 << 12),
    "num_attention_heads": _SIZE,
    "intermediate_size": schema.Int(1, 1 << 20),
    "max_position_embeddings": schema.Int(1, 1 << 20),
    "type_vocab_size": _SIZE,
    "embedding_size": schema.Opt(_SIZE),
    "layer_norm_eps": schema.Float(1e-30, 1.0),
    "hidden_dropout_prob": _DROPOUT,
    "attention_probs_dropout_prob": _DROPOUT,
    "initializer_range": schema.Float(0.0, 1e3),
}
# DeBERTa's keys (v1 and v2/v3)
_DEBERTA_FIELDS: Dict[str, schema.Schema] = {
    "type_vocab_size": schema.Int(0, 1 << 16),
    "position_biased_input": schema.Bool(),
    "relative_attention": schema.Bool(),
    "pos_att_type": schema.Opt(schema.Either(
        schema.Str(max_len=100), schema.Arr(schema.Str(max_len=100), max_len=8),
        what="a string like 'p2c|c2p' or an array of strings")),
    "max_relative_positions": schema.Int(-1, 1 << 20),
}
_MODEL_TYPE_SCHEMA = schema.Obj({"model_type": _BERT_FIELDS["model_type"]}, required=("model_type",))
_BERT_SCHEMA = schema.Obj(_BERT_FIELDS)
_CONFIG_SCHEMAS: Dict[str, schema.Obj] = {
    "bert": _BERT_SCHEMA, "ernie": schema.Obj({**_BERT_FIELDS, "use_task_id": schema.Bool(),
                                               "task_type_vocab_size": _SIZE}),
    "roberta": _BERT_SCHEMA, "xlm-roberta": _BERT_SCHEMA, "camembert": _BERT_SCHEMA, "electra": _BERT_SCHEMA,
    "distilbert": schema.Obj(
        {**{_DISTILBERT_KEYS.get(k, k): v for k, v in _BERT_FIELDS.items()
            if k not in ("type_vocab_size", "embedding_size", "layer_norm_eps")},
         "sinusoidal_pos_embds": schema.Bool()}),
    "albert": schema.Obj({**_BERT_FIELDS, "num_hidden_groups": schema.Int(1, 1 << 12),
                          "inner_group_num": schema.Int(1, 1 << 12)}),
    "mpnet": schema.Obj({**_BERT_FIELDS, "relative_attention_num_buckets": _SIZE}),
    "deberta": schema.Obj({**_BERT_FIELDS, **_DEBERTA_FIELDS, "talking_head": schema.Opt(schema.Bool())}),
    "deberta-v2": schema.Obj({
        **_BERT_FIELDS,
        **_DEBERTA_FIELDS,
        "position_buckets": schema.Int(-1, 1 << 16),
        "share_att_key": schema.Bool(),
        "norm_rel_ebd": schema.Opt(schema.Str(max_len=100)),
        "conv_kernel_size": schema.Opt(schema.Int(0, 1 << 10)),
        "conv_groups": _SIZE,
        "conv_act": schema.Str(max_len=100),
        "attention_head_size": schema.Opt(_SIZE),
    }),
    "modernbert": schema.Obj({
        **{k: _BERT_FIELDS[k] for k in ("model_type", "vocab_size", "hidden_size", "num_hidden_layers",
                                        "num_attention_heads", "intermediate_size", "max_position_embeddings",
                                        "hidden_dropout_prob", "initializer_range")},
        "pad_token_id": schema.Opt(schema.Int(-1, (1 << 31) - 1)),
        "head_dim": schema.Opt(_SIZE),
        "hidden_activation": schema.Opt(schema.Str(max_len=100)),
        "norm_eps": schema.Opt(schema.Float(1e-30, 1.0)),
        **{k: schema.Opt(schema.Bool()) for k in ("norm_bias", "attention_bias", "mlp_bias")},
        **{k: schema.Opt(_DROPOUT) for k in ("attention_dropout", "embedding_dropout", "mlp_dropout")},
        "local_attention": schema.Opt(schema.Int(2, 1 << 20)),
        "global_attn_every_n_layers": schema.Opt(schema.Int(1, 1 << 12)),
        "layer_types": schema.Opt(schema.Arr(schema.Str(max_len=100), max_len=1 << 12)),
        **{k: schema.Opt(schema.Float(1e-30, 1e30)) for k in ("global_rope_theta", "local_rope_theta")},
        "rope_parameters": schema.Opt(schema.MapOf(schema.Opt(schema.Obj({
            "rope_type": schema.Str(max_len=100), "type": schema.Str(max_len=100),
            "rope_theta": schema.Float(1e-30, 1e30)})), max_len=16)),
    }),
}


def hidden_dropout_key(model_type: str) -> str:
    """The config.json key of the hidden dropout probability (``dropout`` for DistilBERT)."""
    return _DISTILBERT_KEYS["hidden_dropout_prob"] if model_type == "distilbert" else "hidden_dropout_prob"


def _value(config: Mapping[str, Any], model_type: str, key: str) -> Any:
    """config.json's value for an engine key: the family's own name for it, else the config
    class's default (None counts as missing, as transformers' ``pad_token_id=None`` does)."""
    name = _DISTILBERT_KEYS.get(key, key) if model_type == "distilbert" else key
    value = config.get(name)
    if value is None:
        if key not in _DEFAULTS[model_type]:
            raise KeyError(name)
        value = _DEFAULTS[model_type][key]
    return value


def engine_config(config: Mapping[str, Any], source: str = "config.json") -> Dict[str, Any]:
    """Translate an HF ``config.json`` dict into the C engine's config.

    Raises :class:`ModelConfigError` naming ``source`` and the field for a missing or malformed
    value, NotImplementedError for model types, activations or position embedding types the
    engine does not implement, naming the supported ones.
    """
    config = dict(config)
    try:
        model_type = schema.check(config, _MODEL_TYPE_SCHEMA)["model_type"]
        if model_type not in FAMILIES:
            raise NotImplementedError(
                f"{source}: model_type {model_type!r} is not supported; supported model types: "
                f"{', '.join(sorted(FAMILIES))} (SpanBERT checkpoints are 'bert')")
        schema.check(config, _CONFIG_SCHEMAS[model_type])
    except schema.SchemaError as e:
        raise ModelConfigError(f"{source}: {e}") from None
    if model_type == "modernbert":
        return _modernbert_config(config, source)
    family = FAMILIES[model_type]
    act = _value(config, model_type, "hidden_act")
    if act not in ACTIVATIONS:
        raise NotImplementedError(
            f"{source}: {'activation' if family == _DISTILBERT else 'hidden_act'} {act!r} is not supported; "
            f"supported: {', '.join(ACTIVATIONS)}")
    pos_type = config.get("position_embedding_type", "absolute")
    if pos_type not in (None, "absolute"):
        raise NotImplementedError(
            f"{source}: position_embedding_type {pos_type!r} is not supported (only 'absolute')")

    def get(key: str) -> Any:
        return _value(config, model_type, key)

    try:
        hidden = int(get("hidden_size"))
        cfg = {
            "family": family,
            "vocab_size": int(get("vocab_size")),
            "hidden_size": hidden,
            "num_hidden_layers": int(get("num_hidden_layers")),
            "num_attention_heads": int(get("num_attention_heads")),
            "intermediate_size": int(get("intermediate_size")),
            "max_position_embeddings": int(get("max_position_embeddings")),
            # DistilBERT, MPNet: no token types; DistilBERT's LayerNorms use eps 1e-12 in its code
            "type_vocab_size": 0 if family in (_DISTILBERT, _MPNET) else int(get("type_vocab_size")),
            "embedding_size": int(get("embedding_size")) if family == _ALBERT
            else int(config.get("embedding_size") or hidden),
            "activation": ACTIVATIONS[act],
            "pad_token_id": MPNET_PADDING_IDX if family == _MPNET else int(get("pad_token_id")),
            "layer_norm_eps": 1e-12 if family == _DISTILBERT else float(get("layer_norm_eps")),
            "hidden_dropout_prob": float(get("hidden_dropout_prob")),
            "attention_probs_dropout_prob": float(get("attention_probs_dropout_prob")),
        }
        if family == _ALBERT:
            cfg["num_hidden_groups"] = int(get("num_hidden_groups"))
            cfg["inner_group_num"] = int(get("inner_group_num"))
        if family == _MPNET:
            cfg["relative_attention_num_buckets"] = int(get("relative_attention_num_buckets"))
        if family == _DEBERTA:
            cfg.update(_deberta_config(config, cfg, source, v1=model_type == "deberta"))
        if family == _DISTILBERT:
            cfg["frozen_position_embeddings"] = int(bool(get("sinusoidal_pos_embds")))
        if model_type == "ernie" and get("use_task_id"):  # ErnieEmbeddings adds task_type_embeddings(0)
            cfg["task_type_vocab_size"] = int(get("task_type_vocab_size"))
    except KeyError as e:
        raise ModelConfigError(f"{source}: missing required key {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise ModelConfigError(f"{source}: bad value: {e}") from None
    return cfg


def _global_every(config: Mapping[str, Any], layers: int, source: str) -> int:
    """ModernBERT's layer pattern as the engine's n (layer l global iff l % n == 0): from
    ``layer_types`` (what transformers 5 writes) when present, else ``global_attn_every_n_layers``
    (the hub checkpoints' spelling), as ModernBertConfig.__post_init__ reads them."""
    n = int(config.get("global_attn_every_n_layers") or _MODERNBERT_DEFAULTS["global_attn_every_n_layers"])
    types = config.get("layer_types")
    if types is None:
        return n
    types = list(types)
    if len(types) != layers or not set(types) <= {"full_attention", "sliding_attention"}:
        raise ModelConfigError(f"{source}: layer_types must name 'full_attention' or 'sliding_attention' "
                               f"for each of the {layers} layers, got {types!r}")
    for n in range(1, layers + 1):
        if types == ["sliding_attention" if i % n else "full_attention" for i in range(layers)]:
            return n
    raise NotImplementedError(f"{source}: layer_types {types!r} is not a pattern of one global layer every n "
                              f"layers from layer 0, the only pattern multienc's ModernBERT implements")


def _rope_theta(config: Mapping[str, Any], layer_type: str, legacy_key: str, source: str) -> float:
    """The rotary base of one layer type: ``rope_parameters[layer_type]`` (transformers 5), else the
    hub spelling ``global_rope_theta`` / ``local_rope_theta``, else ModernBertConfig's default. Only
    the default rotary type (no scaling) is implemented."""
    if config.get("rope_scaling") is not None:
        raise NotImplementedError(f"{source}: rope_scaling is not supported (only the default rotary embedding)")
    params = (config.get("rope_parameters") or {}).get(layer_type) or {}
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type != "default":
        raise NotImplementedError(f"{source}: rope_parameters[{layer_type!r}] has rope_type {rope_type!r}; "
                                  f"only 'default' is supported")
    theta = params.get("rope_theta")
    if theta is None:
        theta = config.get(legacy_key, _MODERNBERT_DEFAULTS[legacy_key])
    return float(theta)


def _modernbert_config(config: Mapping[str, Any], source: str) -> Dict[str, Any]:
    """The engine config of a ModernBERT ``config.json`` (see :func:`engine_config`)."""
    def get(key: str) -> Any:
        value = config.get(key)
        return _MODERNBERT_DEFAULTS[key] if value is None else value

    act = get("hidden_activation")
    if act not in ACTIVATIONS:
        raise NotImplementedError(
            f"{source}: hidden_activation {act!r} is not supported; supported: {', '.join(ACTIVATIONS)}")
    try:
        hidden, heads, layers = int(config["hidden_size"]), int(config["num_attention_heads"]), \
            int(config["num_hidden_layers"])
        head_dim = config.get("head_dim")
        if head_dim is not None and heads and int(head_dim) != hidden // heads:
            raise NotImplementedError(f"{source}: head_dim {head_dim} != hidden_size / num_attention_heads "
                                      f"is not supported")
        # a missing key takes ModernBertConfig's default, an explicit null means no padding row
        pad = config["pad_token_id"] if "pad_token_id" in config else 50283
        return {
            "family": FAMILIES["modernbert"],
            "vocab_size": int(config["vocab_size"]),
            "hidden_size": hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "intermediate_size": int(config["intermediate_size"]),
            "max_position_embeddings": int(get("max_position_embeddings")),
            "type_vocab_size": 0,  # no token type embeddings
            "activation": ACTIVATIONS[act],
            "pad_token_id": -1 if pad is None else int(pad),
            "layer_norm_eps": float(get("norm_eps")),
            "attention_probs_dropout_prob": float(get("attention_dropout")),
            # LanguageModel's hidden_dropout_prob option, recorded as for the other families;
            # ModernBERT has no hidden dropout (modernbert.c does not read it)
            "hidden_dropout_prob": float(config.get("hidden_dropout_prob", 0.1)),
            "embedding_dropout": float(get("embedding_dropout")),
            "mlp_dropout": float(get("mlp_dropout")),
            "norm_bias": int(bool(get("norm_bias"))),
            "attention_bias": int(bool(get("attention_bias"))),
            "mlp_bias": int(bool(get("mlp_bias"))),
            "local_attention": int(get("local_attention")),
            "global_attn_every_n_layers": _global_every(config, layers, source),
            "global_rope_theta": _rope_theta(config, "full_attention", "global_rope_theta", source),
            "local_rope_theta": _rope_theta(config, "sliding_attention", "local_rope_theta", source),
        }
    except KeyError as e:
        raise ModelConfigError(f"{source}: missing required key {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise ModelConfigError(f"{source}: bad value: {e}") from None


def param_table(config: Mapping[str, Any], source: str = "config.json") -> Dict[str, Tuple[Tuple[int, ...], int]]:
    """{HF name: (shape, offset)} of the encoder ``config`` describes, computed by the C engine
    without allocating it; ModelConfigError for a config the engine refuses (e.g. a
    hidden size that is not a multiple of the number of heads)."""
    cfg = engine_config(config, source)
    try:
        table, _ = _C.encoder_param_table(cfg)
    except ValueError as e:
        raise ModelConfigError(f"{source}: {e}") from None
    return {name: (tuple(shape), off) for name, shape, off in table}


def match_weights(info: Mapping[str, Tuple[Tuple[int, ...], int]], tensors: Mapping[str, Tensor],
                  source: str, v1: Optional["DebertaV1Names"] = None) -> Dict[str, Tensor]:
    """The tensor for each parameter of the layout ``info``, by its engine name, from HF-named
    tensors (heads and prefixes ignored; ``v1``: DeBERTa (v1)'s names, :class:`DebertaV1Names`).

    Every tensor the layout expects must be there with its shape and a float dtype
    (:class:`~multienc.formats.weights.WeightsError` naming ``source`` and the tensor otherwise);
    this is checked before the buffer is allocated or written, so a config whose sizes the weights
    do not back is refused without allocating what it declares."""
    if v1 is not None:
        tensors = v1.from_hf(tensors, info, source)
    found: Dict[str, Tensor] = {}
    for raw, arr in tensors.items():
        name = normalize_name(raw)
        if name is None or name not in info:
            continue
        shape = info[name][0]
        if tuple(arr.shape) != shape:
            raise WeightsError(f"{source}: tensor {raw!r} has shape {tuple(arr.shape)} but the "
                               f"config implies {shape}")
        if not isinstance(arr, BFloat16Bits) and not np.issubdtype(arr.dtype, np.floating):
            raise WeightsError(f"{source}: tensor {raw!r} has dtype {arr.dtype}, expected floats")
        found[name] = arr
    missing = [n for n in info if n not in found]
    if v1 is not None:  # as the checkpoint names them (a missing in_proj: its query block)
        missing = [m for m in map(v1.hf_name, missing) if m is not None]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise WeightsError(f"{source}: missing weight tensor(s) {', '.join(missing[:3])}{more}")
    return found


def _deberta_config(config: Mapping[str, Any], cfg: Mapping[str, Any], source: str, v1: bool) -> Dict[str, int]:
    """DeBERTa's engine keys, read as DebertaV2Config and its modules read them (getattr defaults
    for the keys the config class does not declare). DeBERTa (``v1``) is v2's engine with relative
    distances without buckets, its own projections of the relative embeddings (``pos_proj`` without
    bias, ``pos_q_proj``), no LayerNorm on them, no ConvLayer and no key biases (:class:`DebertaV1Names`);
    its ``talking_head`` is refused."""
    att = config.get("pos_att_type") or []
    if isinstance(att, str):
        att = [x.strip() for x in att.lower().split("|")]
    max_rel = int(config.get("max_relative_positions", -1))
    common = {"position_biased_input": int(bool(config.get("position_biased_input", True))),
              "relative_attention": int(bool(config.get("relative_attention", False))),
              "max_relative_positions": max_rel if max_rel >= 1 else cfg["max_position_embeddings"],
              "pos_att": (1 if "c2p" in att else 0) | (2 if "p2c" in att else 0)}
    if v1:
        if config.get("talking_head"):
            raise NotImplementedError(f"{source}: DeBERTa's talking_head is not supported (no released "
                                      "checkpoint uses it)")
        return {**common, "position_buckets": -1, "share_att_key": 0, "norm_rel_ebd": 0, "zero_key_biases": 1}
    conv = {}
    if int(config.get("conv_kernel_size") or 0) > 0:  # v2's ConvLayer after the first layer
        act = config.get("conv_act", "tanh")
        if act not in ACTIVATIONS:
            raise NotImplementedError(f"{source}: conv_act {act!r} is not supported; supported: "
                                      f"{', '.join(ACTIVATIONS)}")
        conv = {"conv_kernel_size": int(config["conv_kernel_size"]), "conv_groups": int(config.get("conv_groups", 1)),
                "conv_act": ACTIVATIONS[act]}
    head = config.get("attention_head_size")
    if head is not None and int(head) * cfg["num_attention_heads"] != cfg["hidden_size"]:
        raise ModelConfigError(f"{source}: attention_head_size {head} x num_attention_heads "
                               f"{cfg['num_attention_heads']} != hidden_size {cfg['hidden_size']} (the attention "
                               "output projection is hidden_size x hidden_size)")
    norm = [x.strip() for x in str(config.get("norm_rel_ebd", "none")).lower().split("|")]
    return {**common, "position_buckets": int(config.get("position_buckets", -1)),
            "share_att_key": int(bool(config.get("share_att_key", False))),
            "norm_rel_ebd": int("layer_norm" in norm), **conv}


def sinusoidal_table(n_pos: int, dim: int) -> np.ndarray:
    """DistilBERT's fixed position table (``create_sinusoidal_embeddings``): angles
    ``pos / 10000^(2 (j // 2) / dim)`` in float64, sine in even and cosine in odd columns, float32."""
    angle = np.array([[pos / np.power(10000, 2 * (j // 2) / dim) for j in range(dim)] for pos in range(n_pos)])
    table = np.empty((n_pos, dim), np.float32)
    table[:, 0::2] = np.sin(angle[:, 0::2])
    table[:, 1::2] = np.cos(angle[:, 1::2])
    return table


def read_config(model_dir: str) -> Dict[str, Any]:
    """Read ``model_dir/config.json`` with errors that name the file."""
    path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(path):
        raise ModelConfigError(f"{model_dir}: no config.json in this directory")
    try:
        with open(path, encoding="utf-8") as f:
            config = schema.load_json(f.read())
    except (OSError, UnicodeDecodeError, ValueError) as e:
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


class DebertaV1Names:
    """DeBERTa (v1)'s tensor names over the engine's DeBERTa-v2 layout (``zero_key_biases``).

    A v1 layer projects queries, keys and values with one ``attention.self.in_proj`` without bias,
    its rows interleaved by head (transformers' ``transpose_for_scores(qp).chunk(3)``: head h's
    query, key and value rows are rows ``3hD + [0, D)``, ``3hD + [D, 2D)``, ``3hD + [2D, 3D)``), then
    adds ``q_bias`` and ``v_bias``; it projects the relative embeddings with ``pos_proj`` (no bias,
    c2p) and ``pos_q_proj`` (p2c). The engine holds them as v2's ``query_proj`` / ``key_proj`` /
    ``value_proj`` and ``pos_key_proj`` / ``pos_query_proj``, whose two key biases stay 0: they exist
    only in the engine and are neither read from nor written to a checkpoint."""

    #: name within a layer's attention.self: engine -> v1 (None: the engine's zero key biases; the
    #: key and value weights go into in_proj with the query's)
    _RENAME = {"query_proj.weight": "in_proj.weight", "key_proj.weight": None, "value_proj.weight": None,
               "query_proj.bias": "q_bias", "key_proj.bias": None, "value_proj.bias": "v_bias",
               "pos_key_proj.weight": "pos_proj.weight", "pos_key_proj.bias": None,
               "pos_query_proj.weight": "pos_q_proj.weight", "pos_query_proj.bias": "pos_q_proj.bias"}
    _QKV = ("query_proj.weight", "key_proj.weight", "value_proj.weight")

    def __init__(self, engine_cfg: Mapping[str, Any]):
        H, NH = int(engine_cfg["hidden_size"]), int(engine_cfg["num_attention_heads"])
        D = H // NH
        j = np.arange(3 * H)
        part, r = j // H, j % H
        #: in_proj row of each row of the engine's fused [query; key; value] weight
        self.rows = 3 * D * (r // D) + part * D + r % D
        self.hidden = H

    @staticmethod
    def _split(name: str) -> Tuple[str, str]:
        """(``encoder.layer.N.attention.self.``, the rest) of a name there, else ("", name)."""
        parts = name.split(".", 4)
        if len(parts) == 5 and parts[:2] == ["encoder", "layer"] and parts[2].isdigit() and \
                parts[3] == "attention" and parts[4].startswith("self."):
            prefix = ".".join(parts[:4]) + ".self."
            return prefix, name[len(prefix):]
        return "", name

    def hf_name(self, name: str) -> Optional[str]:
        """The v1 name of an engine parameter (None: not in a v1 checkpoint)."""
        prefix, local = self._split(name)
        if not prefix or local not in self._RENAME:
            return name
        v1 = self._RENAME[local]
        return None if v1 is None else prefix + v1

    def to_hf(self, tensors: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Engine-named tensors (parameters or gradients) under v1's names and layout."""
        out: Dict[str, np.ndarray] = {}
        for name, value in tensors.items():
            v1 = self.hf_name(name)
            if v1 is None:
                continue
            if v1.endswith(".in_proj.weight"):
                prefix = self._split(name)[0]
                fused = np.concatenate([tensors[prefix + n] for n in self._QKV])
                value = np.empty_like(fused)
                value[self.rows] = fused
            out[v1] = value
        return out

    def from_hf(self, tensors: Mapping[str, Tensor], info: Mapping[str, Tuple[Tuple[int, ...], int]],
                source: str) -> Dict[str, Tensor]:
        """A v1 checkpoint's tensors (any prefix) under the engine's names of ``info``: in_proj split
        into the query, key and value weights, zero key biases. Other tensors keep their names."""
        out: Dict[str, Tensor] = {}
        engine_of = {v1: n for n, v1 in zip(info, map(self.hf_name, info)) if v1 is not None}
        for raw, value in tensors.items():
            name = normalize_name(raw)
            engine = engine_of.get(name) if name is not None else None
            if engine is None or engine == name:
                out[raw] = value
            elif name.endswith(".in_proj.weight"):
                if tuple(value.shape) != (3 * self.hidden, self.hidden):
                    raise WeightsError(f"{source}: tensor {raw!r} has shape {tuple(value.shape)} but the config "
                                       f"implies {(3 * self.hidden, self.hidden)}")
                if not isinstance(value, BFloat16Bits) and not np.issubdtype(value.dtype, np.floating):
                    raise WeightsError(f"{source}: tensor {raw!r} has dtype {value.dtype}, expected floats")
                arr = value.widen() if isinstance(value, BFloat16Bits) else np.asarray(value, dtype=np.float32)
                fused = arr[self.rows]
                prefix = self._split(name)[0]
                for k, n in enumerate(self._QKV):
                    out[prefix + n] = fused[k * self.hidden:(k + 1) * self.hidden]
            else:
                out[engine] = value
        for n, (shape, _) in info.items():
            if self.hf_name(n) is None and n.endswith(".bias"):  # the engine's key biases
                out[n] = np.zeros(shape, np.float32)
        return out


def deberta_v1_names(config: Mapping[str, Any], source: str = "config.json") -> Optional[DebertaV1Names]:
    """:class:`DebertaV1Names` for a DeBERTa (v1) config, None for any other model."""
    return DebertaV1Names(engine_config(config, source)) if config.get("model_type") == "deberta" else None


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
    """A BERT / RoBERTa / XLM-RoBERTa / CamemBERT / ELECTRA / ERNIE / DistilBERT / ALBERT / MPNet / DeBERTa
    (v1, v2, v3) / ModernBERT encoder computed by the C engine.

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
        source = os.path.join(model_dir, "config.json")
        info = param_table(config, source)
        # float16 and bfloat16 weights as stored: _write_weights widens them one tensor at a time
        found = match_weights(info, load_state_dict(model_dir, widen=False), find_weight_file(model_dir)[0],
                              deberta_v1_names(config, source))
        self._init(config, source, device)
        self._write_weights(found)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], seed: int = 0,
                    device: Optional[str] = None) -> "Encoder":
        """An encoder with HF-style random weights (normal(0, initializer_range), LayerNorm 1/0;
        DistilBERT's ``sinusoidal_pos_embds`` table as its ``create_sinusoidal_embeddings``)."""
        self = cls.__new__(cls)
        self._init(dict(config), "config", device)
        rng = np.random.default_rng(seed)
        std = float(config.get("initializer_range", 0.02))
        flat = np.zeros(self._c.num_floats, np.float32)
        sinusoidal = bool(self.engine_config.get("frozen_position_embeddings"))
        for name, shape, off in self._c.param_info():
            n = int(np.prod(shape))
            if sinusoidal and name == "embeddings.position_embeddings.weight":
                flat[off:off + n] = sinusoidal_table(*shape).reshape(-1)
            elif name.endswith(NORM_WEIGHTS):
                flat[off:off + n] = 1.0
            elif name.endswith("weight"):
                flat[off:off + n] = rng.normal(0.0, std, n).astype(np.float32)
        self._c.write_params(flat)
        return self

    @classmethod
    def from_state_dict(cls, config: Mapping[str, Any], tensors: Mapping[str, np.ndarray],
                        source: str = "state dict", device: Optional[str] = None) -> "Encoder":
        """An encoder with the given config and weights (e.g. from a multienc checkpoint)."""
        info = param_table(config, source)
        found = match_weights(info, tensors, source, deberta_v1_names(config, source))
        self = cls.__new__(cls)
        self._init(dict(config), source, device)
        self._write_weights(found)
        return self

    def _init(self, config: Dict[str, Any], source: str, device: Optional[str]) -> None:
        self.config: Dict[str, Any] = config
        #: the config as the C engine reads it (family code, BERT's key names, defaults filled in)
        self.engine_config: Dict[str, Any] = engine_config(config, source)
        self.device: str = resolve_device(device, self.engine_config["family"])
        self._c = _C.Encoder(self.engine_config, device=self.device)
        self._info: Dict[str, Tuple[Tuple[int, ...], int]] = {
            name: (tuple(shape), off) for name, shape, off in self._c.param_info()}
        self._v1 = DebertaV1Names(self.engine_config) if config.get("model_type") == "deberta" else None
        self.hidden_size: int = self.engine_config["hidden_size"]

    @property
    def max_positions(self) -> int:
        """Longest input (special tokens included) the position embeddings allow: RoBERTa and
        XLM-RoBERTa number positions from ``pad_token_id + 1`` (HF-SEMANTICS.md §2), so they lose
        ``pad_token_id + 1`` of ``max_position_embeddings``; the C forward rejects longer inputs
        with the same rule."""
        cfg = self.engine_config
        if cfg["family"] in (_ROBERTA, _MPNET):
            return cfg["max_position_embeddings"] - cfg["pad_token_id"] - 1
        return cfg["max_position_embeddings"]

    @property
    def uses_token_types(self) -> bool:
        """Whether ``forward`` reads ``token_type_ids``: the model has more than one token type.
        Models with one type (RoBERTa, XLM-RoBERTa) take None (all zeros); DistilBERT, which has no
        token type embeddings, refuses them."""
        return self.engine_config["type_vocab_size"] > 1

    # ----------------------------------------------------------- parameters
    def param_names(self) -> list:
        """HF names of the encoder's parameters, in buffer order."""
        if self._v1 is not None:
            return [n for n in map(self._v1.hf_name, self._info) if n is not None]
        return list(self._info)

    def _unflatten(self, flat: np.ndarray) -> Dict[str, np.ndarray]:
        """The tensors of ``flat`` (a copy of the buffer, owned by the caller) by HF name: views of
        it, not copies."""
        tensors = {name: flat[off:off + int(np.prod(shape))].reshape(shape)
                   for name, (shape, off) in self._info.items()}
        return tensors if self._v1 is None else self._v1.to_hf(tensors)

    @property
    def num_floats(self) -> int:
        """Floats in the parameter buffer (the size of :meth:`state_dict`'s ``out``): every parameter
        once, some padded to 64-byte boundaries."""
        return self._c.num_floats

    def state_dict(self, out: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
        """Every parameter, keyed by HF base-model names: views of one copy of the parameter buffer
        made for this call, so the engine never sees changes to them (and a tensor kept alone keeps
        that copy alive). ``out``, a writable contiguous float32 array of :attr:`num_floats`
        elements, takes the copy instead of a fresh array (another array: ValueError; not an array:
        TypeError): what a caller that copies the weights again and again reuses (the trainer's
        best model)."""
        flat = np.empty(self._c.num_floats, np.float32) if out is None else out
        self._c.read_params(flat)
        return self._unflatten(flat)

    def params_finite(self) -> bool:
        """Whether every parameter is finite (no NaN or infinity), checked where the parameters
        live, without copying them."""
        return self._c.params_finite()

    def load_state_dict(self, tensors: Mapping[str, np.ndarray], source: str = "state dict") -> None:
        """Set every parameter from an HF-named mapping (task heads and prefixes are ignored).

        Raises :class:`~multienc.formats.weights.WeightsError` (a ValueError) naming ``source`` and
        the tensor on a missing tensor or a shape that disagrees with the config.
        """
        self._write_weights(match_weights(self._info, tensors, source, self._v1))

    def _write_weights(self, found: Mapping[str, Tensor]) -> None:
        """Copy each matched tensor (:func:`match_weights`) to its place in the parameter buffer,
        one at a time, dropping a memory-mapped file's pages once each is copied
        (:func:`~multienc.formats.safetensors.release_pages`): loading holds the weights once, plus
        the tensor being copied (widened to float32 here when the file holds float16 or bfloat16),
        never a second copy of the whole model."""
        for name, arr in found.items():
            if isinstance(arr, BFloat16Bits):
                values, stored = arr.widen(), arr.bits
            else:
                values, stored = np.ascontiguousarray(arr, dtype=np.float32), arr
            self._c.write_params(values.reshape(-1), self._info[name][1])
            release_pages(stored)

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
                train: bool = False, seed: int = 0, inference: bool = False) -> np.ndarray:
        """Last hidden state, float32 (B, T, H).

        ``train=True`` applies dropout (hidden and attention probabilities) drawn
        from a counter-based RNG keyed by ``seed``; ``train=False`` equals HF's
        eval mode. Activations are kept for ``backward``, unless ``inference=True``
        (eval mode, as under ``torch.inference_mode``): then only two layers'
        activations live at a time, so an L-layer model needs about 2/L of the
        memory, and ``backward`` raises RuntimeError until the next forward without it.
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
        return self._c.forward(ids, mask, types, bool(train), int(seed), inference=bool(inference))

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
        """The accumulated gradients keyed by HF names: views of one copy of the gradient buffer
        made for this call."""
        flat = np.empty(self._c.num_floats, np.float32)
        self._c.read_grads(flat)
        return self._unflatten(flat)

    def buffer_addresses(self, which: str = "grads") -> List[Tuple[str, int, int]]:
        """``[("encoder", device address, floats)]`` of the flat ``"params"`` or ``"grads"`` buffer (for NCCL)."""
        return _C.buffer_addresses(self._c, which)

    @property
    def workspace_bytes(self) -> int:
        """Bytes of memory (on the encoder's device) its activations take: grown to the largest
        forward so far, never shrunk."""
        return self._c.workspace_bytes

    @property
    def gradient_bytes(self) -> int:
        """Bytes of memory (on the encoder's device) its gradient buffer takes: 0 until something
        needs one (the first backward, a training run's start, ``buffer_addresses("grads")``), so
        an encoder that only predicts holds no gradients (as a torch module before its first
        backward); then the size of its parameters."""
        return self._c.gradient_bytes

    @property
    def precision(self) -> str:
        """Precision of the linear layers: ``"fp32"`` or ``"bf16"``."""
        return self._c.precision

    def set_precision(self, precision: str) -> None:
        """Run the linear layers in ``"bf16"`` (inputs rounded to bfloat16, products accumulated in
        float32; CPUs with AVX512-BF16 only, NotImplementedError elsewhere) or ``"fp32"``. Weights,
        gradients and every other op stay float32."""
        self._c.set_precision(precision)

    def zero_grad(self) -> None:
        """Reset all accumulated gradients to zero."""
        self._c.zero_grad()
