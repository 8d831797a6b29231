"""SequenceTagger end to end: word alignment against HF ``word_ids``, word pooling and the
CRF inside the C model against float64 references, learning a small CoNLL-format NER set
with one LM and with two LMs of different tokenizers, entity F1 against seqeval, test.tsv,
truncation, checkpoints and bad input."""
import os

import numpy as np
import pytest
import seqeval.metrics

import _tok_corpora as TC
from _alignment import MODES, check_word_alignment
from _toy_tasks import LABELS, names, ner_corpus
from _crf_reference import brute_force
from _numeric import numeric_grad
from multienc.engine import _C
from multienc.models.inputs import word_inputs, word_pool_weights
from multienc.datasets import Corpus, CorpusFormatError, Sentence, read_column_file
from multienc.encoders import LanguageModel, MultiEncoder
from multienc.engine import Encoder
from multienc.task_heads import SequenceTagger, TextClassifier
from multienc.trainer import ModelTrainer

HERE = os.path.dirname(os.path.abspath(__file__))
HUB = os.path.join(HERE, "fixtures", "tiny_hub")
ELECTRA = os.path.join(HUB, "google--electra-base-discriminator", "main")
ROBERTA = os.path.join(HUB, "roberta-base", "main")
SPANBERT = os.path.join(HUB, "SpanBERT--spanbert-base-cased", "main")
DISTILBERT = os.path.join(HUB, "distilbert-base-uncased", "main")
BERTWEET = os.path.join(HUB, "vinai--bertweet-base", "main")  # fastBPE: HF word ids from its Python tokenizer
MODELS = os.path.join(HERE, "fixtures", "models")


# ------------------------------------------------------------------ word alignment

def alignment_folders():
    real = [TC.vocab_dir(v) for v in TC.VOCABS] if TC.present() else []
    return [ELECTRA, ROBERTA, SPANBERT, DISTILBERT, BERTWEET, TC.minilm_dir()] + real


@pytest.mark.parametrize("folder", alignment_folders(),
                         ids=lambda f: os.path.basename(os.path.dirname(f) if f.startswith(HUB) else f))
def test_word_alignment_matches_hf_word_ids(folder):
    """Each LM's sub-word -> word map (through the pooling weights of every mode) is HF's word_ids."""
    check_word_alignment(folder)


def test_truncated_words_are_warned_tagged_o_and_not_trained():
    lm = LanguageModel(ELECTRA)
    tagger = SequenceTagger(lm, len(LABELS))
    long = ["Pneumonoultramicroscopicsilicovolcanoconiosis"] * 3 + ["a"] * 70
    enc = lm.word_tokenizer.encode_batch([long], truncation=False, is_split_into_words=True)
    word_of = enc["word_ids"][0]
    n_sub = int(enc["attention_mask"].sum())
    assert n_sub > lm.max_length
    # words whose every sub-word lies before the final [SEP] slot are kept
    seen = int(word_of[lm.max_length - 2]) + (1 if word_of[lm.max_length - 2] != word_of[lm.max_length - 1] else 0)
    with pytest.warns(UserWarning, match=r"past the model's maximum length of 64 sub-words; they are tagged 'O'"):
        inputs, lengths = word_inputs([lm], [long, ["b", "c"]])
    assert lengths.tolist() == [seen, 2]
    with pytest.warns(UserWarning):
        result = tagger.predict_tags([long], LABELS)
    tags = [t for _, t in result["Predictions"][0]]
    assert len(tags) == len(long) and set(tags[seen:]) == {"O"}
    # a word cut in the middle counts as cut
    lm.max_length = 8
    piece = lm.word_tokenizer.encode(["Pneumonoultramicroscopicsilicovolcanoconiosis"], add_special_tokens=False,
                                     is_split_into_words=True)
    assert len(piece.ids) > 6
    with pytest.warns(UserWarning):
        assert word_inputs([lm], [["a", "Pneumonoultramicroscopicsilicovolcanoconiosis", "b"]])[1].tolist() == [1]


# ------------------------------------------------------------------ C model vs float64

def synthetic_word_ids(rng, B, T):
    """Random pre-split segmentations: [CLS] w0 w0 w1 ... [SEP] padding (word ids, -1 elsewhere)."""
    ids = np.full((B, T), -1)
    lengths, n_tokens = [], []
    for b in range(B):
        n = T if b == 0 else int(rng.integers(4, T + 1))
        w, t = 0, 1
        while t < n - 1:
            span = int(rng.integers(1, 4))
            ids[b, t:min(t + span, n - 1)] = w
            t += span
            w += 1
        lengths.append(w)
        n_tokens.append(n)
    return ids, np.array(lengths), np.array(n_tokens)


def pool_reference(h, word_ids, lengths, K, mode):
    """Word vectors [B, K, H * rows] from hidden states by explicit loops, float64."""
    B, T, H = h.shape
    rows = 2 if mode == "first_last" else 1
    out = np.zeros((B, K, H * rows))
    for b in range(B):
        for w in range(lengths[b]):
            pos = [t for t in range(T) if word_ids[b, t] == w]
            vec = {"first": h[b, pos[0]], "last": h[b, pos[-1]], "mean": h[b, pos].mean(0),
                   "first_last": np.concatenate([h[b, pos[0]], h[b, pos[-1]]])}[mode]
            out[b, w] = vec
    return out


def head64(pooled, W, combine, targets):
    """CE loss of a concat / dme head over word rows (targets -1 ignored), float64."""
    if combine == "concat":
        comb = np.concatenate(pooled, 1)
    else:
        xs = np.stack([p @ W[f"combiner.projections.{i}.weight"].T + W[f"combiner.projections.{i}.bias"]
                       for i, p in enumerate(pooled)])
        s = (xs @ W["combiner.attention.weight"].T)[..., 0] + W["combiner.attention.bias"][0]
        a = np.exp(s - s.max(0))
        comb = ((a / a.sum(0))[..., None] * xs).sum(0)
    logits = comb @ W["decoder.weight"].T + W["decoder.bias"]
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    keep = targets >= 0
    return -logp[np.nonzero(keep)[0], targets[keep]].mean(), logits, comb




def word_batch(rng, enc, B, T, mode):
    word_ids, lengths, n_tokens = synthetic_word_ids(rng, B, T)
    ids = rng.integers(3, 99, (B, T)).astype(np.int32)
    mask = (np.arange(T)[None] < n_tokens[:, None]).astype(np.int32)
    ids[mask == 0] = enc.config.get("pad_token_id", 0)
    K = int(lengths.max())
    return (ids, mask, None, word_pool_weights(word_ids, lengths, K, mode)), word_ids, lengths, K


def init_params(model, rng):
    flat = (rng.standard_normal(model.num_floats) * 0.3).astype(np.float32)
    model.write_params(flat)
    return {n: flat[o:o + int(np.prod(s))].reshape(s).astype(np.float64) for n, s, o in model.param_info()}


@pytest.mark.parametrize("mode,combine", [("first", "concat"), ("last", "dme"), ("mean", "concat"),
                                          ("first_last", "dme"), ("first_last", "concat")])
def test_word_pooling_gradients_match_float64(mode, combine):
    """Loss, head gradients and each encoder's gradients (through dL/dhidden of the explicit
    pooling) of the C model's word-level step equal a float64 reference."""
    rng = np.random.default_rng(MODES.index(mode))
    encs = [Encoder(os.path.join(MODELS, n)) for n in ("bert", "roberta")]
    rows = 2 if mode == "first_last" else 1
    model = _C.Model([e._c for e in encs], dict(combine={"concat": 1, "dme": 3}[combine], task=0, num_classes=3,
                                                pool_rows=rows))
    assert model.embedding_length == (64 * rows if combine == "concat" else 32 * rows)
    W = init_params(model, rng)
    B, T = 3, 9
    batches = [word_batch(np.random.default_rng(7), e, B, T, mode) for e in encs]  # same words for both LMs
    _, word_ids, lengths, K = batches[0]
    targets = np.full((B, K), -1, np.int32)
    for b, n in enumerate(lengths):
        targets[b, :n] = rng.integers(0, 3, n)
    targets = targets.reshape(-1)
    inputs = [x[0] for x in batches]
    out, alpha, loss, _ = model.forward(inputs, targets)
    hs = [e.forward(x[0], x[1]).astype(np.float64) for e, x in zip(encs, inputs)]
    pooled = [pool_reference(h, word_ids, lengths, K, mode).reshape(B * K, -1) for h in hs]
    ref_loss, ref_logits, _ = head64(pooled, W, combine, targets)
    assert abs(loss - ref_loss) < 1e-5 * max(1.0, abs(ref_loss))
    np.testing.assert_allclose(out, ref_logits, rtol=1e-4, atol=1e-5)
    model.backward([True, True])
    flat = np.empty(model.num_floats, np.float32)
    model.read_grads(flat)
    for name, shape, off in model.param_info():
        got = flat[off:off + int(np.prod(shape))].reshape(shape)
        ref = numeric_grad(lambda: head64(pooled, W, combine, targets)[0], W[name])
        assert np.linalg.norm(got - ref) <= 1e-4 * max(np.linalg.norm(ref), 1e-3), name
    for i, e in enumerate(encs):
        h = hs[i]
        def loss_of_h():
            p = [pool_reference(h, word_ids, lengths, K, mode).reshape(B * K, -1) if j == i else pooled[j]
                 for j in range(2)]
            return head64(p, W, combine, targets)[0]
        dh = numeric_grad(loss_of_h, h, eps=1e-5).astype(np.float32)
        in_model = e.gradients()
        e.zero_grad()
        e.forward(inputs[i][0], inputs[i][1])
        ref = e.backward(dh)
        for name in ref:
            if np.linalg.norm(ref[name]) > 1e-6:
                assert np.linalg.norm(in_model[name] - ref[name]) < 1e-3 * np.linalg.norm(ref[name]), (i, name)


def test_crf_head_in_the_c_model_matches_enumeration():
    """The CRF task: loss, Viterbi tags, CRF and decoder gradients of the one-call model equal
    brute-force float64 values computed from the model's own emissions and word vectors."""
    rng = np.random.default_rng(3)
    encs = [Encoder(os.path.join(MODELS, n)) for n in ("electra", "roberta")]
    C = 3
    model = _C.Model([e._c for e in encs], dict(combine=3, task=2, num_classes=C))
    assert [n for n, _, _ in model.param_info()][-3:] == ["crf.transitions", "crf.start_transitions",
                                                          "crf.end_transitions"]
    W = init_params(model, rng)
    batches = [word_batch(np.random.default_rng(4), e, 3, 8, "first") for e in encs]
    _, _, lengths, K = batches[0]
    lengths = np.minimum(lengths, 4).astype(np.int32)  # keep the enumeration small (3**4 paths)
    tags = rng.integers(0, C, (3, K)).astype(np.int32)
    inputs = [x[0] for x in batches]
    out, _, loss, emb, path = model.forward(inputs, tags.reshape(-1), lengths=lengths, embedding=True, decode=True)
    em = out.reshape(3, K, C)
    ref = brute_force(em, tags, lengths, W["crf.transitions"], W["crf.start_transitions"], W["crf.end_transitions"])
    assert abs(loss - ref[0]) < 1e-5 * max(1.0, abs(ref[0]))
    np.testing.assert_array_equal(path, ref[5])
    model.backward([True, True])
    flat = np.empty(model.num_floats, np.float32)
    model.read_grads(flat)
    grads = {n: flat[o:o + int(np.prod(s))].reshape(s) for n, s, o in model.param_info()}
    np.testing.assert_allclose(grads["crf.transitions"], ref[2], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads["crf.start_transitions"], ref[3], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads["crf.end_transitions"], ref[4], rtol=1e-4, atol=1e-6)
    dem = ref[1].reshape(-1, C)
    np.testing.assert_allclose(grads["decoder.weight"], dem.T @ emb.astype(np.float64), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads["decoder.bias"], dem.sum(0), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="sentence 0, word 1: tag -1 is outside the 3 tags"):
        bad = tags.copy()
        bad[0, 1] = -1
        model.forward(inputs, bad.reshape(-1), lengths=lengths)
    with pytest.raises(ValueError, match="sentence 1: length 99 is outside"):
        model.forward(inputs, tags.reshape(-1), lengths=np.array([1, 99, 1], np.int32))
    with pytest.raises(ValueError, match="Viterbi tags come from a CRF head"):
        _C.Model([encs[0]._c], dict(combine=0, task=0, num_classes=3)).forward([inputs[0]], decode=True)
    with pytest.raises(ValueError, match="not a multiple of the model's 2 pooled rows"):
        _C.Model([encs[0]._c], dict(combine=0, task=2, num_classes=3, pool_rows=2)).forward(
            [(inputs[0][0], inputs[0][1], None, inputs[0][3][:, :3])])


# ------------------------------------------------------------------ learning

def seqeval_f1(gold, pred):
    return seqeval.metrics.f1_score(gold, pred)


@pytest.mark.parametrize("folders,combine,crf,mode", [
    ((ELECTRA,), None, False, "first"),
    ((ELECTRA,), None, True, "mean"),
    ((ELECTRA, ROBERTA), "dme", False, "first"),
    ((ELECTRA, ROBERTA), "concat", True, "first_last"),
    ((DISTILBERT, ELECTRA), "dme", False, "first"),
])
def test_small_ner_set_reaches_entity_f1_one_on_train(tmp_path, folders, combine, crf, mode):
    corpus = ner_corpus(tmp_path)
    lms = [LanguageModel(f) for f in folders]
    enc = MultiEncoder(lms, combine_method=combine) if combine else lms[0]
    tagger = SequenceTagger(enc, corpus.num_classes, use_crf=crf, subtoken_pooling=mode)
    assert all(lm.pooling == "word-level" for lm in lms)
    out = tmp_path / "run"
    hist = ModelTrainer(tagger, corpus).train(learning_rate=2e-3, batch_size=2, epochs=20, shuffle_data=True,
                                              base_path=str(out), seed=5, progress=False)
    gold = [names(s.label) for s in corpus.train]
    pred = [names(p) for p in tagger.predict([s.tokens for s in corpus.train])]
    assert seqeval_f1(gold, pred) == 1.0
    assert hist["train_loss"][-1] < 0.2 * hist["train_loss"][0]
    # the trainer's test scores are seqeval's on the best model's predictions, which test.tsv holds
    rows = [line.split("\t") for line in (out / "test.tsv").read_text().split("\n") if line]
    test_gold, test_pred, k = [], [], 0
    for s in corpus.test:
        assert [r[0] for r in rows[k:k + len(s.tokens)]] == s.tokens
        test_gold.append([r[1] for r in rows[k:k + len(s.tokens)]])
        test_pred.append([r[2] for r in rows[k:k + len(s.tokens)]])
        k += len(s.tokens)
    assert k == len(rows) and test_gold == [names(s.label) for s in corpus.test]
    scores = hist["test_scores"]
    assert scores["f1_score"] == pytest.approx(seqeval.metrics.f1_score(test_gold, test_pred), abs=1e-12)
    assert scores["precision"] == pytest.approx(seqeval.metrics.precision_score(test_gold, test_pred), abs=1e-12)
    assert scores["recall"] == pytest.approx(seqeval.metrics.recall_score(test_gold, test_pred), abs=1e-12)
    assert scores["accuracy"] == pytest.approx(seqeval.metrics.accuracy_score(test_gold, test_pred), abs=1e-12)
    log = (out / "training.log").read_text()
    assert "entity-level precision, recall and F1 per type" in log and "PER" in log and "LOC" in log
    best = SequenceTagger.from_checkpoint(str(out / "best-model.pt"))
    assert (best.use_crf, best.subtoken_pooling) == (crf, mode)
    assert [names(p) for p in best.predict([s.tokens for s in corpus.test])] == test_pred


def test_predict_tags_gives_word_tag_pairs_and_per_word_dme_scores():
    tagger = SequenceTagger(MultiEncoder([LanguageModel(ELECTRA), LanguageModel(ROBERTA)], combine_method="dme"),
                            len(LABELS), use_crf=True)
    sents = ["Obama visited Paris 🙂", ["state-of-the-art", "co-operation"]]
    r = tagger.predict_tags(sents, LABELS)
    assert list(r) == ["Sentences", "DME scores", "Predictions"]
    assert r["Sentences"] == sents
    assert [[w for w, _ in p] for p in r["Predictions"]] == [sents[0].split(), sents[1]]
    assert all(t in LABELS for p in r["Predictions"] for _, t in p)
    scores = r["DME scores"]
    assert [len(s) for s in scores] == [4, 2]
    np.testing.assert_allclose(np.array(scores[0]).sum(1), 1.0, rtol=1e-6)
    # per word: the scores of a word do not depend on the other sentence in the batch
    alone = tagger.predict_tags([sents[1]], LABELS)["DME scores"][0]
    np.testing.assert_allclose(alone, scores[1], rtol=1e-5)
    ids = tagger.predict(sents)
    assert [names(i) for i in ids] == [[t for _, t in p] for p in r["Predictions"]]
    # batched longest first, answered in the order given: each sentence as it is tagged alone
    many = ["Paris", "Obama visited Paris and Berlin today", sents[1], "Merkel met Obama", "Rome"]
    got = tagger.predict_tags(many, LABELS, batch_size=2)
    for s, p, d in zip(many, got["Predictions"], got["DME scores"]):
        one = tagger.predict_tags([s], LABELS)
        assert one["Predictions"][0] == p
        np.testing.assert_allclose(one["DME scores"][0], d, rtol=1e-5)
    assert tagger.predict(many, batch_size=2) == [tagger.predict([s])[0] for s in many]


def test_seed_argument_order_and_first_last_width():
    lm = LanguageModel(ELECTRA)
    tagger = SequenceTagger(5, lm)  # the seed's SequenceTagger(num_classes, encoder)
    assert tagger.num_classes == 5 and tagger.encoder is lm and tagger.name.endswith("-sequence-tagger")
    wide = SequenceTagger(MultiEncoder([LanguageModel(ELECTRA), LanguageModel(ROBERTA)], combine_method="dme"), 5,
                          subtoken_pooling="first_last")
    assert wide.encoder.embedding_length == 64 == wide.task_model.embedding_length
    assert wide.encoder.combiner_state_dict()["combiner.projections.0.weight"].shape == (64, 64)


# ------------------------------------------------------------------ bad input

def test_bad_conll_files_name_file_and_line(tmp_path):
    bad_tag = tmp_path / "bad_tag.txt"
    bad_tag.write_text("John B-PER\nis O\nhere B-PLACE\n")
    with pytest.raises(CorpusFormatError, match=r"bad_tag.txt, line 3: unknown tag 'B-PLACE'"):
        read_column_file(bad_tag, LABELS, 0, 1)
    empty = tmp_path / "empty_token.tsv"
    empty.write_text("John\tB-PER\n\tO\n\nok\tO\n")
    with pytest.raises(CorpusFormatError, match=r"empty_token.tsv, line 2: empty token"):
        read_column_file(empty, LABELS, 0, 1, delimiter="\t")
    missing = tmp_path / "missing_tag.txt"
    missing.write_text("John B-PER\nSmith\n")
    with pytest.raises(CorpusFormatError, match=r"missing_tag.txt, line 2: expected at least 2 columns"):
        read_column_file(missing, LABELS, 0, 1)


def test_bad_sentences_are_clear_errors(tmp_path):
    good = Sentence("John lives", [1, 0], tokens=["John", "lives"])
    tagger = SequenceTagger(LanguageModel(ELECTRA), len(LABELS))

    def train_on(sentences):
        corpus = Corpus("toy", "Sequence labeling", [good], [good], label_map=LABELS)
        corpus.train.sentences += sentences
        ModelTrainer(tagger, corpus).train(epochs=1, base_path=str(tmp_path), progress=False)

    with pytest.raises(ValueError, match=r"toy train\[1\]: the sentence has no tokens"):
        train_on([Sentence("", [], tokens=[])])
    with pytest.raises(ValueError, match=r"toy train\[1\]: tag 7 is outside the 5 tags"):
        train_on([Sentence("a b", [0, 7], tokens=["a", "b"])])
    mismatched = Sentence("a b", [0, 1], tokens=["a", "b"])
    mismatched.label = [0]
    with pytest.raises(ValueError, match=r"toy train\[1\]: 2 tokens but tags 1"):
        train_on([mismatched])
    with pytest.raises(ValueError, match="one tag per token"):
        Sentence("a b", [0], tokens=["a", "b"])
    with pytest.raises(ValueError, match=r"sentences\[1\] has no tokens"):
        tagger.predict_tags(["fine", "   "])
    with pytest.raises(ValueError, match="use a SequenceTagger"):
        ModelTrainer(TextClassifier(LanguageModel(ELECTRA), 5), ner_corpus(tmp_path))
    with pytest.raises(ValueError, match="subtoken_pooling must be one of"):
        SequenceTagger(LanguageModel(ELECTRA), 5, subtoken_pooling="max")
    with pytest.raises(ValueError, match="word-level pooling is for the sequence tagger"):
        TextClassifier(LanguageModel(ELECTRA, pooling="word-level"), 2)
