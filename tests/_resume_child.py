"""A training run for tests/test_training_resume.py, in its own process so that it can be killed.

    python tests/_resume_child.py {classifier|tagger} BASE_PATH [--resume] [--checkpoint-every N]

Builds the same model every time (two tiny fixture LMs, a DME classifier or a tagger with a CRF,
seeded), trains or resumes it in BASE_PATH, prints ``step N`` after every optimizer step and
waits for a line on stdin before it goes on (the parent answers at once, and kills the process
at a step it chose: so the kill lands before the next step is announced, never after the run
ended), and at the end writes BASE_PATH/final.npz with every weight of the model.
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from test_api import ELECTRA, ROBERTA, classification_corpus  # noqa: E402
from test_tagger import ner_corpus  # noqa: E402

from multienc.models import LanguageModel, MultiEncoder, SequenceTagger, TaskHead, TextClassifier  # noqa: E402
from multienc.trainer import ModelTrainer  # noqa: E402


def build(kind: str, base: str):
    lms = [LanguageModel(ELECTRA), LanguageModel(ROBERTA)]
    if kind == "classifier":
        corpus = classification_corpus()
        model = TextClassifier(MultiEncoder(lms, combine_method="dme", alternate_freezing_prob=0.3), 2)
    else:
        data = os.path.join(base, "data")
        os.makedirs(data, exist_ok=True)
        from pathlib import Path
        corpus = ner_corpus(Path(data))
        model = SequenceTagger(MultiEncoder(lms, combine_method="concat"), corpus.num_classes, use_crf=True)
    return model, corpus


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=("classifier", "tagger"))
    parser.add_argument("base")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--checkpoint-every", type=int, default=1)
    args = parser.parse_args()
    model, corpus = build(args.kind, args.base)
    step = TaskHead.train_step

    def announced(self, *a, **kw):
        out = step(self, *a, **kw)
        print(f"step {self.steps_trained}", flush=True)
        sys.stdin.readline()
        return out

    TaskHead.train_step = announced
    trainer = ModelTrainer(model, corpus)
    if args.resume:
        trainer.resume(args.base)
    else:
        trainer.train(learning_rate=1e-3, decoder_learning_rate=3e-3, batch_size=3, epochs=3, shuffle_data=True,
                      group_by_length=args.kind == "tagger", use_linear_scheduler=True, base_path=args.base, seed=7,
                      progress=False, checkpoint_every=args.checkpoint_every)
    np.savez(os.path.join(args.base, "final.npz"), **model.state_dict())
    print("done", flush=True)


if __name__ == "__main__":
    main()
