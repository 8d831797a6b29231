"""The whole training step on the CUDA backend against the CPU engine: the C task model (LMs,
pooling, combiner, dropout, decoder, loss, clipping, AdamW) step by step for every combine method
and task (classification, regression, CRF tagging), and the product path (LanguageModel, heads,
ModelTrainer, predict, checkpoints) trained on each device. fp32 on both sides: losses, gradient
norms, DME weights and every weight after the steps agree within float32 rounding grown over the
steps; the GPU repeats its own steps bit for bit."""
import os

import numpy as np
import pytest

from multienc.engine import _C, Encoder, hidden_dropout_key
from multienc.encoders import LanguageModel, MultiEncoder
from multienc.task_heads import SequenceTagger, TextClassifier
from multienc.trainer import ModelTrainer

from _toy_tasks import classification_corpus, ner_corpus

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(HERE, "fixtures", "models")
HUB = os.path.join(HERE, "fixtures", "tiny_hub")
ELECTRA = os.path.join(HUB, "google--electra-base-discriminator", "main")
ROBERTA = os.path.join(HUB, "roberta-base", "main")
COMBINE = {"none": 0, "concat": 1, "mean": 2, "dme": 3}
TASK = {"classify": 0, "regress": 1, "crf": 2}
TOL = 1e-4


def rel(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)


def flat(c, grads=False):
    out = np.empty(c.num_floats, np.float32)
    (c.read_grads if grads else c.read_params)(out)
    return out


def batch(rng, enc, T, lengths, K, pooling):
    """ids, mask, token types and pool weights [B, K, T] of sentences of `lengths` tokens padded to T:
    K rows per sentence (K > 1: a tagger's words, one per real token after the first)."""
    pad = enc.config.get("pad_token_id", 0)
    B = len(lengths)
    ids = rng.integers(3, 99, (B, T)).astype(np.int32)
    mask = np.ones((B, T), np.int32)
    pool = np.zeros((B, K, T), np.float32)
    for b, n in enumerate(lengths):
        ids[b, n:] = pad
        mask[b, n:] = 0
        if K > 1:
            for k in range(min(K, n - 1)):
                pool[b, k, k + 1] = 1.0
        elif pooling == "cls":
            pool[b, 0, 0] = 1.0
        else:
            pool[b, 0, :n] = 1.0 / n
    return ids, mask, None, pool


def with_dropout(name, device):
    model_type = Encoder(os.path.join(FIX, name), device="cpu").config["model_type"]
    rates = {hidden_dropout_key(model_type): 0.1,
             "attention_dropout" if model_type == "distilbert" else "attention_probs_dropout_prob": 0.1}
    return Encoder(os.path.join(FIX, name), rates, device=device)


def run(device, names, combine, task, pooling, steps=3):
    """steps train steps of a fresh task model on device, then an eval forward: ((loss, gradient norm)
    per step, outputs, DME weights, Viterbi tags, every weight buffer: the head's, then each LM's)."""
    rng = np.random.default_rng(31)
    encs = [with_dropout(n, device) for n in names]
    C, K = (5, 4) if task == "crf" else (1 if task == "regress" else 3, 1)
    model = _C.Model([e._c for e in encs], dict(combine=COMBINE[combine], task=TASK[task], num_classes=C,
                                                combine_dropout=0.2))
    w = np.zeros(model.num_floats, np.float32)
    for name, shape, off in model.param_info():
        n = int(np.prod(shape))
        w[off:off + n] = rng.standard_normal(n) * 0.3 + (1.0 if "layer_norm.weight" in name else 0.0)
    model.write_params(w)
    sentence_lengths = np.array([6, 3, 5])
    inputs = [batch(rng, e, 6 + i, sentence_lengths, K, pooling) for i, e in enumerate(encs)]
    lengths = np.minimum(sentence_lengths - 1, K).astype(np.int32) if task == "crf" else None
    if task == "crf":
        targets = rng.integers(0, C, 3 * K).astype(np.int32)
    elif task == "regress":
        targets = rng.standard_normal(3).astype(np.float32)
    else:
        targets = np.array([0, 2, 1], np.int32)
    n = len(encs)
    steps_out = [model.train_step(inputs, targets, lr=[1e-3] * (n + 2), weight_decay=[0.01] * (n + 2),
                                  trainable=[True] * n, seed=s, max_grad_norm=0.5, lengths=lengths)
                 for s in range(steps)]
    out, alpha, *_ = model.forward(inputs, lengths=lengths)
    tags = model.forward(inputs, lengths=lengths, decode=True)[-1] if task == "crf" else None
    return steps_out, out, alpha, tags, [flat(model)] + [flat(e._c) for e in encs]


CASES = [(("bert", "electra", "roberta"), "dme", "classify", "cls"),
         (("electra", "xlm-roberta"), "concat", "regress", "mean"),
         (("albert", "distilbert"), "mean", "classify", "mean"),
         (("electra",), "none", "crf", "first"),
         (("bert", "roberta"), "dme", "crf", "first")]


@pytest.mark.parametrize("names,combine,task,pooling", CASES)
def test_task_model_steps_match_the_cpu_engine(names, combine, task, pooling):
    cpu = run("cpu", names, combine, task, pooling)
    gpu = run("cuda", names, combine, task, pooling)
    for (lc, nc), (lg, ng) in zip(cpu[0], gpu[0]):  # the loss, the gradient norm before clipping
        assert abs(lg - lc) <= TOL * max(abs(lc), 1e-6), (lg, lc)
        assert abs(ng - nc) <= TOL * nc, (ng, nc)
        assert nc > 0.5  # clipping took part
    assert rel(gpu[1], cpu[1]) <= TOL
    if cpu[2] is not None:
        assert rel(gpu[2], cpu[2]) <= TOL
    if task == "crf":
        np.testing.assert_array_equal(gpu[3], cpu[3])
    for i, (g, c) in enumerate(zip(gpu[4], cpu[4])):
        assert rel(g, c) <= TOL, (i, rel(g, c))
    again = run("cuda", names, combine, task, pooling)
    assert again[0] == gpu[0]
    for g, a in zip(gpu[4], again[4]):
        np.testing.assert_array_equal(g, a)


def train(device, head, tmp_path, monkeypatch):
    """A small run through the product on device: (history, the trained model's predictions, the
    saved best model's predictions reloaded on the CPU and on the GPU)."""
    monkeypatch.setenv("MULTIENC_DEVICE", device)
    if head == "classifier":
        corpus = classification_corpus()
        model = TextClassifier(MultiEncoder([LanguageModel(ELECTRA), LanguageModel(ROBERTA)], combine_method="dme"),
                               corpus.num_classes)
        texts = [s.text for s in corpus.dev]
    else:
        corpus = ner_corpus(tmp_path)
        model = SequenceTagger(LanguageModel(ELECTRA), corpus.num_classes, use_crf=True)
        texts = [s.tokens for s in corpus.train]
    assert model.device in (device, device + ":0")
    out = tmp_path / device
    hist = ModelTrainer(model, corpus).train(learning_rate=2e-3, batch_size=2, epochs=3, shuffle_data=True,
                                             base_path=str(out), seed=5, progress=False)
    reloaded = []
    for where in ("cpu", "cuda"):
        monkeypatch.setenv("MULTIENC_DEVICE", where)
        best = type(model).from_checkpoint(str(out / "best-model.pt"))
        assert best.device in (where, where + ":0")
        reloaded.append(best.predict(texts))
    return hist, model.predict(texts), reloaded


def same(a, b):
    return [np.asarray(x).tolist() for x in a] == [np.asarray(x).tolist() for x in b]


@pytest.mark.parametrize("head", ["classifier", "crf-tagger"])
def test_training_through_the_product_matches_the_cpu(head, tmp_path, monkeypatch):
    cpu = train("cpu", head, tmp_path, monkeypatch)
    gpu = train("cuda", head, tmp_path, monkeypatch)
    for key in ("train_loss", "val_loss"):
        assert rel(gpu[0][key], cpu[0][key]) <= 1e-3, (key, gpu[0][key], cpu[0][key])
    assert gpu[0]["dev_score_history"] == pytest.approx(cpu[0]["dev_score_history"], abs=1e-9)
    assert same(gpu[1], cpu[1])
    # a checkpoint loads on either device and predicts the same there
    assert same(gpu[2][0], gpu[2][1]) and same(cpu[2][0], cpu[2][1])
