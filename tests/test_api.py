"""The documented API end to end on tiny fixture models: learning, DME scores,
frozen LMs, learning-rate groups and schedule, checkpoints, bad input."""
import os

import numpy as np
import pytest

import multienc
from multienc.datasets import Corpus, Sentence
from multienc.encoders import LanguageModel, MultiEncoder
from multienc.training.optim import linear_schedule_factor
from multienc.task_heads import TextClassifier, TextRegressor
from multienc.trainer import ModelTrainer, TrainingError

from _toy_tasks import BAD, GOOD, assert_reloads_offline, classification_corpus

HUB = os.path.join(os.path.dirname(__file__), "fixtures", "tiny_hub")
ELECTRA = os.path.join(HUB, "google--electra-base-discriminator", "main")
ROBERTA = os.path.join(HUB, "roberta-base", "main")
SPANBERT = os.path.join(HUB, "SpanBERT--spanbert-base-cased", "main")
OPTIM_REF = np.load(os.path.join(os.path.dirname(__file__), "fixtures", "optim", "reference.npz"))

def regression_corpus():
    train = [Sentence(t, 1.0 + 0.1 * i) for i, t in enumerate(GOOD)] + [Sentence(t, -1.0 - 0.1 * i) for i, t in enumerate(BAD)]
    return Corpus("TOY score", "Sentence regression", train, train[:6])


def lms(*folders, **kw):
    return [LanguageModel(f, **kw) for f in folders]


def test_single_lm_classifier_reaches_full_train_accuracy(tmp_path):
    corpus = classification_corpus()
    clf = TextClassifier(encoder=LanguageModel(ELECTRA), num_classes=corpus.num_classes)
    hist = ModelTrainer(clf, corpus).train(learning_rate=1e-3, batch_size=4, epochs=12, shuffle_data=True,
                                           base_path=str(tmp_path), seed=1, progress=False)
    texts = [s.text for s in corpus.train]
    assert (clf.predict(texts) == np.array([s.label for s in corpus.train])).all()
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    for f in ("training.log", "loss.tsv", "best-model.pt"):
        assert os.path.isfile(tmp_path / f)
    rows = (tmp_path / "loss.tsv").read_text().splitlines()
    assert rows[0].split("\t")[:5] == ["EPOCH", "TIMESTAMP", "LEARNING_RATE", "TRAIN_LOSS", "DEV_LOSS"]
    assert len(rows) == 13
    log = (tmp_path / "training.log").read_text()
    assert "EPOCH 12 done" in log and "DONE TRAINING." in log and "TEST set performance" in log


def test_regressor_reaches_low_mse(tmp_path):
    corpus = regression_corpus()
    reg = TextRegressor(encoder=MultiEncoder(lms(ELECTRA, ROBERTA), combine_method="mean"))
    ModelTrainer(reg, corpus).train(learning_rate=1e-3, batch_size=4, epochs=15, base_path=str(tmp_path), seed=2,
                                    progress=False)
    pred = reg.predict([s.text for s in corpus.train])
    gold = np.array([s.label for s in corpus.train])
    assert np.mean((pred - gold) ** 2) < 0.05 * np.var(gold)


def test_dme_scores_sum_to_one_and_move(tmp_path):
    corpus = classification_corpus()
    enc = MultiEncoder(lms(ELECTRA, ROBERTA), combine_method="dme")
    clf = TextClassifier(enc, corpus.num_classes)
    before = clf.predict_tags(GOOD[:3], corpus.label_map)
    scores = np.array(before["DME scores"])
    assert scores.shape == (3, 2)
    np.testing.assert_allclose(scores.sum(1), 1.0, rtol=1e-6)
    ModelTrainer(clf, corpus).train(learning_rate=1e-3, batch_size=4, epochs=5, base_path=str(tmp_path), seed=3,
                                    progress=False)
    after = clf.predict_tags(GOOD[:3], corpus.label_map)
    assert list(after) == ["Sentences", "DME scores", "Predictions"]
    assert np.abs(np.array(after["DME scores"]) - scores).max() > 1e-3
    assert set(after["Predictions"]) <= {"good", "bad"}
    emb, att = enc.embed_with_attention(GOOD[:3])
    np.testing.assert_allclose(att, after["DME scores"], rtol=1e-5)
    assert emb.shape == (3, enc.embedding_length)


def test_multi_encoder_embeds_a_long_list_batch_by_batch(monkeypatch):
    """embed and embed_with_attention give each sentence what it gets alone, in the order given,
    running at most batch_size sentences per forward."""
    enc = MultiEncoder(lms(ELECTRA, ROBERTA), combine_method="dme")
    items = GOOD[:4] + BAD[:3] + [("a pair", "of short texts")]
    alone = [enc.embed_with_attention([s]) for s in items]
    runtime = enc._runtime()
    seen = []
    forward = runtime.forward
    monkeypatch.setattr(runtime, "forward", lambda inputs, **k: seen.append(len(inputs[0][0])) or forward(inputs, **k))
    emb, scores = enc.embed_with_attention(items, batch_size=3)
    np.testing.assert_allclose(emb, np.concatenate([e for e, _ in alone]), rtol=0, atol=1e-5)
    np.testing.assert_allclose(scores, np.concatenate([a for _, a in alone]), rtol=1e-5)
    assert sum(seen) == len(items) and max(seen) == 3
    np.testing.assert_allclose(enc.embed(items, batch_size=5), emb, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="sentences is empty"):
        enc.embed([])
    with pytest.raises(TypeError, match=r"sentences\[1\] must be a str"):
        enc.embed(["ok", 3])


def test_frozen_lm_stays_bit_identical(tmp_path):
    corpus = classification_corpus()
    frozen = LanguageModel(ROBERTA, fine_tune=False)
    before = frozen.encoder.state_dict()
    clf = TextClassifier(MultiEncoder([LanguageModel(ELECTRA), frozen], combine_method="concat"), 2)
    ModelTrainer(clf, corpus).train(learning_rate=1e-3, batch_size=4, epochs=2, base_path=str(tmp_path),
                                    progress=False)
    after = frozen.encoder.state_dict()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])


def test_per_lm_learning_rates_and_decoder_rate(tmp_path):
    corpus = classification_corpus()
    a, b = lms(ELECTRA, ROBERTA)
    sa, sb = a.encoder.state_dict(), b.encoder.state_dict()
    clf = TextClassifier(MultiEncoder([a, b], combine_method="dme"), 2)
    ModelTrainer(clf, corpus).train(learning_rate=[1e-3, 0.0], decoder_learning_rate=1e-2, batch_size=4, epochs=1,
                                    base_path=str(tmp_path), progress=False)
    assert any(not np.array_equal(sa[k], v) for k, v in a.encoder.state_dict().items())
    for k, v in b.encoder.state_dict().items():  # rate 0: no step (and no weight decay)
        np.testing.assert_array_equal(sb[k], v)
    with pytest.raises(ValueError, match="learning_rate has 3 values but the model has 2"):
        ModelTrainer(clf, corpus).train(learning_rate=[1e-3, 1e-3, 1e-3], base_path=str(tmp_path), progress=False)


def test_trainer_applies_the_linear_schedule_step_by_step(tmp_path):
    """The trainer's run equals explicit train_step calls with HF's schedule (torch reference)."""
    corpus = classification_corpus()
    total, warmup = 20, 2  # 5 epochs x 4 batches, warmup_fraction 0.1
    ref = OPTIM_REF[f"schedule/{total}_{warmup}"]
    np.testing.assert_allclose([linear_schedule_factor(s, total, warmup) for s in range(total)], ref)

    def fresh():
        multienc.set_seed(11)
        return TextClassifier(LanguageModel(ELECTRA), 2)
    clf = fresh()
    ModelTrainer(clf, corpus).train(learning_rate=1e-3, batch_size=4, epochs=5, use_linear_scheduler=True,
                                    warmup_fraction=0.1, seed=5, base_path=str(tmp_path), progress=False)
    manual = fresh()
    manual.reset_head(np.random.default_rng([5, 1]))
    from multienc.models.inputs import build_inputs
    train = list(corpus.train)
    step = 0
    for epoch in range(5):
        for i in range(0, len(train), 4):
            batch = train[i:i + 4]
            lr = 1e-3 * ref[step]
            manual.task_model.train_step(build_inputs(manual.language_models, [s.text for s in batch]),
                                         np.array([s.label for s in batch], np.int32), [lr] * 3, [0.01] * 3,
                                         [True], seed=(5 << 32) + step)
            step += 1
    got, want = clf.state_dict(), manual.state_dict()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_first_warmup_step_changes_nothing(tmp_path):
    corpus = classification_corpus()
    clf = TextClassifier(LanguageModel(ELECTRA), 2)
    trainer = ModelTrainer(clf, Corpus("TOY", "Sentence classification", list(corpus.train)[:4], corpus.dev))
    clf.reset_head(np.random.default_rng([7, 1]))
    before = clf.state_dict()
    trainer.train(learning_rate=1e-3, batch_size=4, epochs=1, use_linear_scheduler=True, warmup_fraction=1.0,
                  seed=7, base_path=str(tmp_path), progress=False)
    after = clf.state_dict()
    for k in before:  # lr factor 0 at step 0: no change, not even weight decay
        np.testing.assert_array_equal(before[k], after[k])


def test_same_seed_same_run(tmp_path):
    corpus = classification_corpus()
    runs = []
    for i in range(2):
        clf = TextClassifier(MultiEncoder(lms(ELECTRA, ROBERTA, hidden_dropout_prob=0.3), combine_method="dme",
                                          combine_dropout=0.2, alternate_freezing_prob=0.3), 2)
        hist = ModelTrainer(clf, corpus).train(learning_rate=1e-3, batch_size=4, epochs=2, shuffle_data=True,
                                               seed=42, base_path=str(tmp_path / str(i)), progress=False)
        runs.append((hist["train_loss"], clf.state_dict()))
    assert runs[0][0] == runs[1][0]
    for k in runs[0][1]:
        np.testing.assert_array_equal(runs[0][1][k], runs[1][1][k])


def test_checkpoint_round_trip_in_a_new_offline_process(tmp_path):
    corpus = classification_corpus()
    clf = TextClassifier(MultiEncoder(lms(ELECTRA, ROBERTA), combine_method="dme"), 2)
    trainer = ModelTrainer(clf, corpus)
    trainer.train(learning_rate=1e-3, batch_size=4, epochs=2, base_path=str(tmp_path), progress=False)
    assert_reloads_offline(trainer, tmp_path, GOOD[:2] + BAD[:2] + [""])


def test_save_pretrained_round_trip(tmp_path):
    lm = LanguageModel(SPANBERT)
    lm.save_pretrained(str(tmp_path / "export"))
    again = LanguageModel(str(tmp_path / "export"))
    np.testing.assert_array_equal(again.embed(["a b c"]), lm.embed(["a b c"]))


def test_empty_sentences_are_skipped_with_a_count_and_still_predictable(tmp_path):
    corpus = classification_corpus()
    train = list(corpus.train) + [Sentence("", 1), Sentence("   ", 0)]
    c2 = Corpus("TOY", "Sentence classification", train, corpus.dev)
    clf = TextClassifier(LanguageModel(ELECTRA), 2)
    with pytest.warns(UserWarning, match="skipping 2 empty sentence"):
        ModelTrainer(clf, c2).train(learning_rate=1e-3, batch_size=8, epochs=1, base_path=str(tmp_path),
                                    progress=False)
    assert len(clf.predict_tags([""])["Predictions"]) == 1


def test_bad_arguments_are_clear(tmp_path):
    corpus = classification_corpus()
    clf = TextClassifier(LanguageModel(ELECTRA), 3)
    with pytest.raises(ValueError, match="num_classes=3 but TOY good or bad has 2 classes"):
        ModelTrainer(clf, corpus)
    with pytest.raises(ValueError, match="combine_method must be"):
        MultiEncoder(lms(ELECTRA, ROBERTA), combine_method="sum")
    with pytest.raises(ValueError, match="pooling must be one of"):
        LanguageModel(ELECTRA, pooling="max")
    bad = Corpus("TOY", "Sentence classification", [Sentence("x y", 0), Sentence("y z", 1)], [Sentence("x", 0)])
    bad.train[1].label = 5
    with pytest.raises(ValueError, match=r"train\[1\]: label 5 is outside the 2 classes"):
        ModelTrainer(TextClassifier(LanguageModel(ELECTRA), 2), bad).train(base_path=str(tmp_path), progress=False)
    with pytest.raises(ValueError, match="use a TextRegressor"):
        ModelTrainer(TextClassifier(LanguageModel(ELECTRA), 2), regression_corpus())
    with pytest.raises(TypeError, match=r"sentences\[1\] must be a str"):
        TextClassifier(LanguageModel(ELECTRA), 2).predict(["ok", 3])
    trainer = ModelTrainer(TextClassifier(LanguageModel(ELECTRA), 2), corpus)
    for kwargs, message in (({"num_workers": 2}, "num_workers=2: multienc has no data-loader workers"),
                            ({"max_grad_norm": float("nan")}, "max_grad_norm must be a number > 0"),
                            ({"batch_size": 0}, "batch_size must be an integer >= 1"),
                            ({"seed": -1}, "seed must be a non-negative integer")):
        with pytest.raises(ValueError, match=message):
            trainer.train(base_path=str(tmp_path), progress=False, **kwargs)
    assert not os.path.exists(tmp_path / "training.log"), "a rejected call started a run"


def test_infinite_loss_stops_training_and_keeps_the_best_checkpoint(tmp_path):
    corpus = regression_corpus()
    reg = TextRegressor(LanguageModel(ELECTRA))
    trainer = ModelTrainer(reg, corpus)
    trainer.train(learning_rate=1e-3, batch_size=4, epochs=1, base_path=str(tmp_path), progress=False)
    saved = (tmp_path / "best-model.pt").read_bytes()
    texts = [s.text for s in corpus.train]
    best_predictions = reg.predict(texts)  # one epoch: the best model is the model as trained
    corpus.train[5].label = 1e30  # finite, but its squared error overflows float32
    with pytest.raises(TrainingError, match=r"epoch 1, batch 2/4: .*loss is infinite"):
        trainer.train(learning_rate=1e-3, batch_size=4, epochs=3, base_path=str(tmp_path), progress=False)
    assert (tmp_path / "best-model.pt").read_bytes() == saved
    assert not np.array_equal(reg.predict(texts), best_predictions)  # the failed run did change the model
    reloaded = TextRegressor.from_checkpoint(str(tmp_path / "best-model.pt"))
    np.testing.assert_array_equal(reloaded.predict(texts), best_predictions)


def test_each_new_best_model_is_copied_into_the_same_buffers(tmp_path):
    """The trainer copies each new best model's LM weights into arrays it allocated once (a fresh
    copy each epoch cost seconds at base size): the best model stays the weights of its epoch, a
    best model taken out earlier keeps its own, and best-model.pt holds the same weights."""
    corpus = classification_corpus()
    clf = TextClassifier(MultiEncoder(lms(ELECTRA, ROBERTA)), 2)
    trainer = ModelTrainer(clf, corpus)
    texts = [s.text for s in corpus.dev]
    trainer.train(learning_rate=1e-3, batch_size=4, epochs=1, base_path=str(tmp_path / "a"), progress=False, seed=1)
    buffers = trainer._best_lm_buffers
    first_best = trainer.best_model
    first_probs = first_best.predict_proba(texts)
    np.testing.assert_array_equal(first_probs, clf.predict_proba(texts))
    trainer.train(learning_rate=1e-3, batch_size=4, epochs=1, base_path=str(tmp_path / "b"), progress=False, seed=2)
    assert trainer._best_lm_buffers is buffers
    for i, lm in enumerate(clf.language_models):
        for name, w in lm.encoder.state_dict().items():
            best = trainer._best[1][f"lm.{i}.{name}"]
            assert np.shares_memory(best, buffers[i])
            np.testing.assert_array_equal(best, w)
    now = clf.predict_proba(texts)
    assert not np.array_equal(now, first_probs)
    np.testing.assert_array_equal(trainer.best_model.predict_proba(texts), now)
    np.testing.assert_array_equal(first_best.predict_proba(texts), first_probs)
    saved = TextClassifier.from_checkpoint(str(tmp_path / "b" / "best-model.pt"))
    np.testing.assert_array_equal(saved.predict_proba(texts), now)


def test_a_best_model_copy_that_fails_midway_leaves_no_best_model(tmp_path, monkeypatch):
    """The copy of a new best overwrites the last best's buffers: when it fails halfway (epoch 2's
    read of the second LM raises; the dev score rises every epoch, so each is a new best), the
    trainer holds no best model rather than one made of half of each epoch's weights."""
    clf = TextClassifier(MultiEncoder(lms(ELECTRA, ROBERTA)), 2)
    trainer = ModelTrainer(clf, classification_corpus())
    rising = iter([0.1, 0.2, 0.3])
    monkeypatch.setattr(trainer, "evaluate", lambda dev, batch_size: (0.5, {trainer.main_metric: next(rising)}, None))
    second = clf.language_models[1].encoder
    calls = []
    real = second.state_dict

    def fails_the_second_time(out=None):
        calls.append(out is trainer._best_lm_buffers[1])
        if len(calls) == 2:
            raise RuntimeError("device lost")
        return real(out)

    monkeypatch.setattr(second, "state_dict", fails_the_second_time)
    with pytest.raises(RuntimeError, match="device lost"):
        trainer.train(learning_rate=1e-3, batch_size=4, epochs=2, base_path=str(tmp_path), progress=False,
                      seed=1, save_best_model=False)
    assert calls == [True, True]
    assert trainer._best is None and trainer.best_model is None


def test_sentence_pairs_use_each_models_pair_template(tmp_path):
    # the label is in the second text only
    pairs = [(("what did they say", g), 1) for g in GOOD] + [(("what did they say", b), 0) for b in BAD]
    corpus = Corpus("TOY pairs", "Sentence-pair classification", [Sentence(t, y) for t, y in pairs],
                    [Sentence(t, y) for t, y in pairs[:4]])
    enc = MultiEncoder(lms(ELECTRA, ROBERTA), combine_method="concat")
    from multienc.models.inputs import build_inputs
    electra_in, roberta_in = build_inputs(enc.language_models, [pairs[0][0]])
    electra_tok = enc.language_models[0].tokenizer.encode(*pairs[0][0])
    assert electra_in[0][0].tolist() == electra_tok.ids and electra_in[2][0].tolist() == electra_tok.type_ids
    assert 1 in electra_tok.type_ids  # BERT-style second segment
    assert roberta_in[0][0].tolist() == enc.language_models[1].tokenizer.encode(*pairs[0][0]).ids
    assert roberta_in[2] is None  # RoBERTa has one token type
    clf = TextClassifier(enc, 2)
    ModelTrainer(clf, corpus).train(learning_rate=1e-3, batch_size=4, epochs=12, shuffle_data=True,
                                    base_path=str(tmp_path), seed=4, progress=False)
    assert (clf.predict([t for t, _ in pairs]) == np.array([y for _, y in pairs])).all()


def test_group_by_length_batches_similar_lengths():
    texts = [("x " * n).strip() for n in (9, 1, 7, 2, 8, 3, 6, 4)]
    corpus = Corpus("TOY", "Sentence classification", [Sentence(t, i % 2) for i, t in enumerate(texts)],
                    [Sentence("x", 0)])
    trainer = ModelTrainer(TextClassifier(LanguageModel(ELECTRA), 2), corpus)
    batches = trainer._batches(list(corpus.train), 2, epoch=1, shuffle=False, group_by_length=True,
                               rng=np.random.default_rng(0))
    lengths = [[len(s.text) for s in b] for b in batches]
    assert sorted(sum(lengths, [])) == sorted(len(t) for t in texts)
    assert all(max(b) - min(b) <= 4 for b in lengths)  # neighbours in length share a batch
    plain = trainer._batches(list(corpus.train), 2, 1, False, False, np.random.default_rng(0))
    assert [s.text for b in plain for s in b] == texts  # without grouping: file order


def test_prediction_batches_by_length_and_answers_in_the_order_given():
    """predict groups similar lengths (longest first); each sentence's result is what it gets
    alone (padding is masked), in the order given, for texts and pairs alike."""
    clf = TextClassifier(MultiEncoder(lms(ELECTRA, ROBERTA), combine_method="dme"), 3)
    texts = ["ok", GOOD[0] + " " + BAD[1] + " " + GOOD[2], ("a pair", "of short texts"), BAD[3], "fine then",
             ("", GOOD[4] + " " + GOOD[5])]
    batched = clf.predict_proba(texts, batch_size=4)
    alone = np.concatenate([clf.predict_proba([t], batch_size=1) for t in texts])
    np.testing.assert_allclose(batched, alone, rtol=1e-5, atol=1e-6)
    assert (clf.predict(texts, batch_size=4) == alone.argmax(1)).all()
    dme = clf.predict_tags(texts, batch_size=4)["DME scores"]
    np.testing.assert_allclose(dme, [clf.predict_tags([t])["DME scores"][0] for t in texts], rtol=1e-5)


def test_prediction_batches_by_sub_words(monkeypatch):
    """predict's batches group sentences by their longest tokenization among the LMs (each
    counted alone by the tokenizers, special tokens included), not by characters: a short word
    the vocabulary lacks is many sub-words, a long common one few. Chunked the same way; the
    tagger's word lists (tokenized word by word) not by their number of words."""
    from multienc.models import inputs
    monkeypatch.setattr(inputs, "_LENGTH_CHUNK", 2)
    models = lms(ELECTRA, ROBERTA)
    texts = ["the cat sat on the mat", "zzzqqqxxx", "a b c", "Photosynthesisologists", ("a pair", "of short texts")]
    counts = [max(len(lm.tokenizer.encode(*(t if isinstance(t, tuple) else (t,))).ids) for lm in models)
              for t in texts]
    by_tokens = sorted(range(len(texts)), key=lambda i: -counts[i])
    by_chars = sorted(range(len(texts)), key=lambda i: -len("".join(texts[i])))
    assert by_tokens != by_chars
    assert inputs.subword_length_batches(models, texts, 2) == [by_tokens[:2], by_tokens[2:4], by_tokens[4:]]
    # the tagger's word lists, tokenized word by word
    sentences = [["a", "b", "c", "d"], ["zzzqqqxxx"], ["the", "Photosynthesisologists"], ["ok"]]
    counts = [max(len(lm.word_tokenizer.encode(w, is_split_into_words=True).ids) for lm in models)
              for w in sentences]
    by_tokens = sorted(range(len(sentences)), key=lambda i: -counts[i])
    assert by_tokens != sorted(range(len(sentences)), key=lambda i: -len(sentences[i]))
    assert inputs.subword_length_batches(models, sentences, 3, words=True) == [by_tokens[:3], by_tokens[3:]]


def test_length_batches_order():
    from multienc.models.inputs import length_batches
    assert length_batches([3, 9, 1, 9, 4], 2) == [[1, 3], [4, 0], [2]]
    assert length_batches([], 4) == []
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        length_batches([1], 0)
