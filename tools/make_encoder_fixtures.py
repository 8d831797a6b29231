"""Generate the tiny encoder fixtures and their HF reference outputs.

Run with the reference environment (torch + transformers), not the test venv:

    .venv-ref/bin/python tools/make_encoder_fixtures.py [name ...]   # default: all

For each fixture (bert, roberta, electra with embedding_size != hidden_size, xlm-roberta,
distilbert, distilbert-sinusoidal, albert with 4 layers over 2 groups of 2 shared layers,
albert-uneven with 3 layers over 2 groups, mpnet with sequences of up to 140 tokens, so that every
relative position bucket is used, the DeBERTa matrix below, ernie with ERNIE 2.0's task type
table, and DeBERTa (v1) as deberta, deberta-c2p and deberta-abs) it writes ``tests/fixtures/models/<name>/`` holding
the model saved by transformers (``config.json`` + ``model.safetensors``) and ``reference.npz``
with, per input case, the inputs, the eval-mode ``last_hidden_state``, a fixed random ``R`` and
the gradient of ``sum(last_hidden_state * R)`` for EVERY parameter (keys ``grad/<hf name>``;
zeros for a parameter without gradient). Attention is the eager implementation, the parity
reference named in HF-SEMANTICS.md.

The newer fixtures also hold a train-mode case (keys ``train/...``, with ``train/seed``; DeBERTa's
also ``train_short/...`` on the 3-token case): HF's
forward and gradients in train mode with every dropout mask replaced by the mask multienc's C
engine draws for that seed (its counter-based ``me_uniform`` of csrc/backend.h, ported to numpy
below, at the engine's dropout sites). HF decides where dropout happens; the masks only make
the two runs comparable, so the case checks that the engine drops exactly where HF does (e.g.
no dropout after ALBERT's FFN or after DistilBERT's attention output).

DistilBERT with ``sinusoidal_pos_embds``: transformers 4.x freezes the position table
(``requires_grad = False``; no gradient, not in the optimizer). transformers 5.24's
``_init_weights`` sets ``requires_grad = False`` on a temporary copy only, so the table stays
trainable there; multienc keeps the v4 (and original DistilBERT) semantics, and this generator
freezes the table explicitly, so its reference gradient is zero.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import torch
import transformers

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from _numeric import me_uniform  # noqa: E402  (the numpy port the tests use too)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "models")


def configs() -> dict:
    common = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=37, max_position_embeddings=40,
                  hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    distil = dict(vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=40,
                  dropout=0.1, attention_dropout=0.1, activation="gelu", pad_token_id=0)
    return {
        "bert": transformers.BertConfig(**common, type_vocab_size=2, hidden_act="gelu",
                                        layer_norm_eps=1e-12, pad_token_id=0),
        "roberta": transformers.RobertaConfig(**{**common, "max_position_embeddings": 42},
                                              type_vocab_size=1, hidden_act="gelu_new",
                                              layer_norm_eps=1e-5, pad_token_id=1,
                                              bos_token_id=0, eos_token_id=2),
        "electra": transformers.ElectraConfig(**common, embedding_size=16, type_vocab_size=2,
                                              hidden_act="gelu", layer_norm_eps=1e-12,
                                              pad_token_id=0),
        "xlm-roberta": transformers.XLMRobertaConfig(**{**common, "max_position_embeddings": 42},
                                                     type_vocab_size=1, hidden_act="gelu",
                                                     layer_norm_eps=1e-5, pad_token_id=1,
                                                     bos_token_id=0, eos_token_id=2),
        "distilbert": transformers.DistilBertConfig(**distil),
        "distilbert-sinusoidal": transformers.DistilBertConfig(**distil, sinusoidal_pos_embds=True),
        "albert": transformers.AlbertConfig(**{**common, "num_hidden_layers": 4}, embedding_size=16,
                                            num_hidden_groups=2, inner_group_num=2, type_vocab_size=2,
                                            hidden_act="gelu_new", layer_norm_eps=1e-12, pad_token_id=0),
        "albert-uneven": transformers.AlbertConfig(**{**common, "num_hidden_layers": 3}, embedding_size=32,
                                                   num_hidden_groups=2, inner_group_num=1,
                                                   type_vocab_size=2, hidden_act="gelu",
                                                   layer_norm_eps=1e-12, pad_token_id=0),
        # positions run from padding_idx + 1 = 2: 142 of them for 140 tokens
        **deberta_configs(common),
        "mpnet": transformers.MPNetConfig(**{**common, "max_position_embeddings": 142}, hidden_act="gelu",
                                          layer_norm_eps=1e-5, relative_attention_num_buckets=32,
                                          pad_token_id=1, bos_token_id=0, eos_token_id=2),
        # ERNIE 2.0's shape of config: BERT's layers, four token types and the task type table
        # (use_task_id), whose row 0 every token gets
        "ernie": transformers.ErnieConfig(**common, type_vocab_size=4, use_task_id=True, task_type_vocab_size=3,
                                          hidden_act="gelu", layer_norm_eps=1e-5, pad_token_id=0),
        **deberta_v1_configs(common),
    }


def deberta_v1_configs(common: dict) -> dict:
    """DeBERTa (v1) as microsoft/deberta-base (relative attention only, c2p + p2c, distances clamped
    at max_relative_positions = max_position_embeddings, no token types), with c2p only, absolute
    positions, token types and max_relative_positions 16, so that the 40-token cases reach the clamp,
    and without relative attention (absolute positions and token types only)."""
    base = dict(common, hidden_act="gelu", layer_norm_eps=1e-7, pad_token_id=0, relative_attention=True,
                position_biased_input=False, max_relative_positions=-1, type_vocab_size=0, pos_att_type="c2p|p2c")
    v = transformers.DebertaConfig
    return {"deberta": v(**base),
            "deberta-c2p": v(**{**base, "pos_att_type": "c2p", "position_biased_input": True, "type_vocab_size": 2,
                                "max_relative_positions": 16}),
            "deberta-abs": v(**{**base, "relative_attention": False, "pos_att_type": None,
                                "position_biased_input": True, "type_vocab_size": 2})}


def deberta_configs(common: dict) -> dict:
    """DeBERTa-v3 as released (relative attention only, log buckets, c2p + p2c through the shared
    key/query projections, LayerNorm on the relative embeddings, no token types) and its variants:
    separate pos_key_proj / pos_query_proj with embedding_size != hidden_size and token types;
    c2p only; p2c only without norm_rel_ebd; DeBERTa-v2 style without buckets (position_buckets -1,
    raw distances clamped at max_relative_positions) with absolute positions too and an explicit
    attention_head_size; DeBERTa-v2 with its ConvLayer (kernel 3, 2 groups, gelu) after layer 0. Sequences of 3 to 40 tokens reach the exact region (|d| < 4), the log
    region and the clamp of the 16-row table (8 buckets, max_relative_positions 20)."""
    base = dict(common, hidden_act="gelu", layer_norm_eps=1e-7, pad_token_id=0, relative_attention=True,
                position_biased_input=False, position_buckets=8, max_relative_positions=20,
                type_vocab_size=0, norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type="p2c|c2p")
    v = transformers.DebertaV2Config
    return {
        "deberta-v3": v(**base),
        "deberta-v3-separate": v(**{**base, "share_att_key": False, "pos_att_type": "c2p|p2c",
                                    "embedding_size": 16, "type_vocab_size": 2}),
        "deberta-v3-c2p": v(**{**base, "pos_att_type": "c2p"}),
        "deberta-v3-p2c": v(**{**base, "pos_att_type": "p2c", "share_att_key": False, "norm_rel_ebd": "none"}),
        "deberta-v2-nobuckets": v(**{**base, "position_buckets": -1, "max_relative_positions": 16,
                                     "position_biased_input": True, "attention_head_size": 8,
                                     "hidden_act": "gelu_new"}),
        "deberta-v2-conv": v(**{**base, "conv_kernel_size": 3, "conv_act": "gelu", "conv_groups": 2,
                                "position_buckets": 16, "max_relative_positions": 32}),
    }


# Fixtures with a train-mode case, and the dropout sites of one layer application after the
# attention probabilities, in HF's call order (csrc/model/encoder.c: SITE_ATT_OUT 2, SITE_FFN_OUT 3).
TRAIN_CASE_SITES = {"xlm-roberta": (2, 3), "ernie": (2, 3), "distilbert": (3,), "distilbert-sinusoidal": (3,),
                    "albert": (2,), "albert-uneven": (2,), "mpnet": (2, 3), "deberta-v3": (2, 3),
                    "deberta-v3-separate": (2, 3), "deberta-v2-conv": (2, 3), "deberta": (2, 3),
                    "deberta-c2p": (2, 3), "deberta-abs": (2, 3)}
# ... and the sites of a layer application's dropouts before its attention probabilities:
# DeBERTa's pos_dropout on the relative embeddings (SITE_REL 4)
BEFORE_ATTENTION_SITES = {"deberta-v3": (4,), "deberta-v3-separate": (4,), "deberta-v2-conv": (4,), "deberta": (4,),
                          "deberta-c2p": (4,)}
# ... and after the first application's hidden dropouts: DeBERTa-v2's ConvLayer (SITE_CONV 5)
AFTER_FIRST_LAYER_SITES = {"deberta-v2-conv": (5,)}
TRAIN_SEED = 7


def make_model(name: str, cfg):
    cls = {"bert": transformers.BertModel, "roberta": transformers.RobertaModel,
           "electra": transformers.ElectraModel, "xlm-roberta": transformers.XLMRobertaModel,
           "distilbert": transformers.DistilBertModel, "albert": transformers.AlbertModel,
           "mpnet": transformers.MPNetModel, "deberta-v2": transformers.DebertaV2Model,
           "ernie": transformers.ErnieModel, "deberta": transformers.DebertaModel}[cfg.model_type]
    if cfg.model_type in ("electra", "distilbert", "deberta-v2", "deberta"):  # no pooler
        return cls(cfg)
    return cls(cfg, add_pooling_layer=False)


def types_on(family: str) -> bool:
    return configs()[family].type_vocab_size > 0


def cases(family: str, rng: np.random.Generator) -> list:
    """Padded batches of unequal lengths; sentence pairs with token types; RoBERTa-style models
    also with a literal pad id inside the text (it keeps position ``pad``). MPNet: up to 140 tokens,
    relative distances up to 139, past max_distance 128 (every bucket, both directions)."""
    roberta = family in ("roberta", "xlm-roberta", "mpnet")
    pad = 1 if roberta else 0
    T, lengths = {"mpnet": (140, [140, 61, 3]), "deberta": (40, [40, 23, 3, 9])}.get(
        family.split("-")[0], (11, [11, 7, 3, 9]))
    ids = rng.integers(3, 99, size=(len(lengths), T)).astype(np.int64)
    mask = np.zeros_like(ids)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
        ids[b, n:] = pad
    out = []
    if roberta or family.startswith("distilbert") or (family.startswith("deberta") and not types_on(family)):
        ids2 = ids.copy()
        ids2[0, 4] = pad  # a literal pad id inside the text keeps position `pad`
        out.append(dict(input_ids=ids, attention_mask=mask))
        out.append(dict(input_ids=ids2, attention_mask=mask))
    else:
        types = np.zeros_like(ids)
        for b, n in enumerate(lengths):
            types[b, n // 2:n] = 1  # second segment of a pair
        out.append(dict(input_ids=ids, attention_mask=mask))
        out.append(dict(input_ids=ids, attention_mask=mask, token_type_ids=types))
    full = rng.integers(3, 99, size=(2, 40)).astype(np.int64)
    out.append(dict(input_ids=full, attention_mask=np.ones_like(full)))
    if family.startswith("deberta"):  # the shortest sequences: 3 tokens, no padding
        short = rng.integers(3, 99, size=(2, 3)).astype(np.int64)
        out.append(dict(input_ids=short, attention_mask=np.ones_like(short)))
    return out


def randomize(model: torch.nn.Module, seed: int, keep: tuple = (),
              norm_weights: tuple = ("LayerNorm.weight", "layer_norm.weight")) -> None:
    """Weights far from the initialisation (the parameters named in ``keep`` untouched): LayerNorm
    weights (names containing one of ``norm_weights``) 1 + N(0, 0.1), embeddings and MPNet's bucket
    table N(0, 0.3), the rest N(0, 0.1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * 0.1
            if name in keep:
                continue
            if any(n in name for n in norm_weights):
                p.copy_(1.0 + noise)
            else:  # embeddings and MPNet's bucket table larger: a wrong bucket shows
                p.copy_(noise * (3.0 if "embeddings" in name or "relative_attention" in name else 1.0))


def site(layer: int, kind: int) -> int:
    return ((layer + 1) << 40) | (kind << 36)


class EngineMasks:
    """Replaces torch.nn.functional.dropout while active: each call gets the mask the C engine
    draws at the matching site (embeddings: site 1; per layer application: the
    ``before_attention`` sites, the attention probabilities, then ``after_attention`` sites, in
    order; after the first application's, the ``after_first`` sites)."""

    def __init__(self, seed: int, after_attention: tuple, before_attention: tuple = (), after_first: tuple = ()):
        self.seed, self.after, self.before, self.after_first = seed, after_attention, before_attention, after_first
        self.app, self.pos = -1, len(after_attention)
        self.emb_done, self.nbefore, self.nfirst = False, 0, 0

    def __call__(self, x, p=0.5, training=True, inplace=False):
        if not training or p == 0.0:
            return x
        p32 = np.float32(p)
        if x.dim() == 4:  # attention probabilities [B, NH, T, T]: site + b*NH + h, index r*T + j
            assert self.pos == len(self.after), "a layer's hidden dropouts were not all seen"
            assert self.nbefore == len(self.before), "a layer's dropouts before attention were not all seen"
            self.app, self.pos, self.nbefore = self.app + 1, 0, 0
            B, NH, T, _ = x.shape
            idx = np.arange(T * T)
            keep = np.stack([np.stack([me_uniform(self.seed, site(self.app, 1) + b * NH + h, idx) >= p32
                                       for h in range(NH)]) for b in range(B)]).reshape(x.shape)
        else:
            if not self.emb_done:
                s, self.emb_done = 1, True  # embeddings
            elif self.app == 0 and self.pos == len(self.after) and self.nfirst < len(self.after_first):
                s = site(0, self.after_first[self.nfirst])
                self.nfirst += 1
            elif self.pos == len(self.after) and self.nbefore < len(self.before):
                s = site(self.app + 1, self.before[self.nbefore])  # the next layer's, before attention
                self.nbefore += 1
            else:
                assert self.pos < len(self.after), "HF drops out where the engine does not"
                s = site(self.app, self.after[self.pos])
                self.pos += 1
            keep = (me_uniform(self.seed, s, np.arange(x.numel())) >= p32).reshape(x.shape)
        scale = np.float32(1.0) / (np.float32(1.0) - p32)
        return x * torch.from_numpy(np.where(keep, scale, np.float32(0.0)).astype(np.float32))

    def finish(self) -> None:
        assert self.pos == len(self.after), "the last layer's hidden dropouts were not all seen"
        assert self.nfirst == len(self.after_first), "the dropouts after the first layer were not all seen"


def record(model, inputs: dict, R: torch.Tensor, prefix: str, ref: dict) -> torch.Tensor:
    """Inputs, last hidden state, R and every parameter's gradient of sum(h * R) under ``prefix``.
    Returns the last hidden state."""
    tin = {k: torch.from_numpy(v) for k, v in inputs.items()}
    model.zero_grad(set_to_none=True)
    h = model(**tin).last_hidden_state
    (h * R).sum().backward()
    for k, v in inputs.items():
        ref[f"{prefix}/{k}"] = v
    ref[f"{prefix}/last_hidden_state"] = h.detach().numpy()
    ref[f"{prefix}/R"] = R.numpy()
    for name, p in model.named_parameters():
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        ref[f"{prefix}/grad/{name}"] = g.numpy().copy()
    return h.detach()


def record_case(model: torch.nn.Module, inputs: dict, rng: np.random.Generator, c: int, ref: dict) -> torch.Tensor:
    """Case ``c`` into ``ref`` (:func:`record` under ``case{c}``) with a random ``R`` drawn from
    ``rng``. Returns last_hidden_state."""
    with torch.no_grad():
        shape = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).last_hidden_state.shape
    R = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
    return record(model, inputs, R, f"case{c}", ref)


def check_mpnet_buckets() -> None:
    """The float32 formula that csrc/model/mpnet.c implements equals transformers' buckets
    at every relative position the fixtures (and a 512-token input) reach."""
    rel = torch.arange(-600, 601)
    hf = transformers.models.mpnet.modeling_mpnet.MPNetEncoder.relative_position_bucket(rel).numpy()
    n = np.abs(-rel.numpy()).astype(np.float32)
    with np.errstate(divide="ignore"):
        x = np.log(n / np.float32(8)) / np.float32(np.log(128 / 8)) * np.float32(8)
    large = np.minimum(8 + np.where(n >= 8, x, 0).astype(np.int64), 15)
    ours = np.where(-rel.numpy() < 0, 16, 0) + np.where(n < 8, n.astype(np.int64), large)
    assert np.array_equal(hf, ours), np.nonzero(hf != ours)


def main() -> None:
    only = set(sys.argv[1:])
    unknown = only - set(configs())
    if unknown:
        sys.exit(f"unknown fixture(s): {', '.join(sorted(unknown))}; known: {', '.join(configs())}")
    check_mpnet_buckets()
    torch.manual_seed(0)
    for i, (family, cfg) in enumerate(configs().items()):
        if only and family not in only:
            continue
        cfg._attn_implementation = "eager"
        model = make_model(family, cfg)
        frozen = ()
        if getattr(cfg, "sinusoidal_pos_embds", False):
            frozen = ("embeddings.position_embeddings.weight",)
            model.embeddings.position_embeddings.weight.requires_grad_(False)  # v4 semantics, see above
        randomize(model, 100 + i, keep=frozen)
        model.eval()
        folder = os.path.join(OUT, family)
        os.makedirs(folder, exist_ok=True)
        model.save_pretrained(folder, safe_serialization=True)
        rng = np.random.default_rng(1000 + i)
        ref = {}
        all_cases = cases(family, rng)
        for c, inputs in enumerate(all_cases):
            record_case(model, inputs, rng, c, ref)
        # DeBERTa also on the 3-token case: its distances reach only some of the relative embeddings'
        # rows, whose pos_dropout masks are those of the whole table
        train_cases = (("train", 0), ("train_short", 3)) if family in BEFORE_ATTENTION_SITES else (("train", 0),)
        for prefix, c in train_cases if family in TRAIN_CASE_SITES else ():
            masks = EngineMasks(TRAIN_SEED, TRAIN_CASE_SITES[family], BEFORE_ATTENTION_SITES.get(family, ()),
                                AFTER_FIRST_LAYER_SITES.get(family, ()))
            model.train()
            original = torch.nn.functional.dropout
            torch.nn.functional.dropout = masks
            try:
                record(model, all_cases[c], torch.from_numpy(ref[f"case{c}/R"]), prefix, ref)
            finally:
                torch.nn.functional.dropout = original
            masks.finish()
            model.eval()
            ref[f"{prefix}/seed"] = np.array(TRAIN_SEED)
        np.savez_compressed(os.path.join(folder, "reference.npz"), **ref)
        print(family, "->", folder, len(ref), "arrays",
              f"torch {torch.__version__} transformers {transformers.__version__}")


if __name__ == "__main__":
    main()
