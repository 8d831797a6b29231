"""What tests/test_distributed.py runs under ``mpirun -n N`` (and as one plain process): a two-LM
DME classifier on the tiny fixture models, trained for 20 steps on the demo corpus' first 64
sentences (global batch 7: shards of 3 and 4 sentences, and a last batch of one sentence, where
rank 0's shard is empty), with dropout in the LMs and the combiner and alternate freezing on.

    python tests/_dp_script.py train OUT [--distributed] [--epochs N] [--pid-file PATH] [--fail-rank R]
    python tests/_dp_script.py stall SECONDS     # rank 1 sleeps before a collective (the timeout)

``train`` writes OUT/final.npz (every weight) and OUT/history.json on rank 0; ``--pid-file`` makes
each rank write its pid to PATH.<rank> once it has trained a step; ``--fail-rank R`` makes rank R
raise in its 3rd optimizer update.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HUB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "tiny_hub")
TINY = [os.path.join(HUB, "roberta-base", "main"), os.path.join(HUB, "google--electra-base-discriminator", "main")]


def corpus():
    from multienc.data import demo_corpus
    from multienc.datasets import Corpus
    demo = demo_corpus()
    return Corpus("dp fixture", demo.task_type, list(demo.train)[:64], list(demo.dev)[:20], list(demo.test)[:21],
                  demo.label_map, demo.evaluation_metric)


def train(args):
    from multienc.models import LanguageModel, MultiEncoder, TextClassifier
    from multienc.parallel import launched_ranks
    from multienc.training import ModelTrainer

    lms = [LanguageModel(folder) for folder in TINY]
    model = TextClassifier(MultiEncoder(lms, combine_method="dme", combine_dropout=0.1, alternate_freezing_prob=0.3),
                           num_classes=4)
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
    if args.pid_file or args.fail_rank is not None:
        update, calls = model.task_model.update, []

        def watched(*a, **k):
            calls.append(1)
            if args.pid_file and len(calls) == 1:
                with open(f"{args.pid_file}.{rank}", "w") as f:
                    f.write(str(os.getpid()))
            if rank == args.fail_rank and len(calls) == 3:
                raise MemoryError("out of memory (a failure of this rank alone)")
            return update(*a, **k)

        model.task_model.update = watched
    trainer = ModelTrainer(model, corpus())
    history = trainer.train(learning_rate=1e-3, decoder_learning_rate=5e-3, batch_size=7, epochs=args.epochs,
                            shuffle_data=True, base_path=args.out, seed=11, progress=False,
                            distributed=args.distributed)
    if rank == 0:
        np.savez(os.path.join(args.out, "final.npz"), **model.state_dict())
        with open(os.path.join(args.out, "history.json"), "w") as f:
            json.dump({"history": history, "ranks": launched_ranks()}, f)


def stall(seconds):
    from multienc.parallel import ProcessGroup
    group = ProcessGroup.world()
    if group.rank == 1:
        time.sleep(seconds)
    group.allreduce_sum(1.0, "the test's sum")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what")
    t = sub.add_parser("train")
    t.add_argument("out")
    t.add_argument("--distributed", action="store_true")
    t.add_argument("--epochs", type=int, default=2)
    t.add_argument("--pid-file")
    t.add_argument("--fail-rank", type=int)
    s = sub.add_parser("stall")
    s.add_argument("seconds", type=float)
    a = parser.parse_args()
    if a.what == "train":
        train(a)
    else:
        stall(a.seconds)
    sys.exit(0)
