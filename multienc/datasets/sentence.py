"""Sentence and SentenceDataset: the samples a Corpus holds."""
from __future__ import annotations

from typing import Iterator, List, Optional, Sequence, Tuple, Union, overload

Text = Union[str, Tuple[str, str]]
Label = Union[int, float, List[int], None]


class Sentence:
    """One sample: a text (or a pair of texts) and its gold label.

    ``text``: a str, or a 2-tuple ``(a, b)`` for sentence pairs (a 2-item list is
    turned into a tuple). ``label``: a class id (int), a score (float) or, for
    sequence labeling, one tag id per token in ``tokens`` (the words; ``text`` is
    then the words joined by single spaces). ``predicted_label`` is free for a
    model to fill in. ``true_label`` is the seed's name for ``label``.
    """

    __slots__ = ("text", "label", "tokens", "predicted_label")

    def __init__(self, text: Union[Text, List[str]], label: Label = None, tokens: Optional[Sequence[str]] = None):
        if isinstance(text, (list, tuple)):
            if len(text) != 2:
                raise ValueError(f"a sentence pair needs exactly 2 texts, got {len(text)}: {text!r}")
            text = (text[0], text[1])
        elif not isinstance(text, str):
            raise TypeError(f"text must be a str or a pair of str, got {type(text).__name__}")
        if tokens is not None:
            tokens = list(tokens)
            if label is not None and (not isinstance(label, list) or len(label) != len(tokens)):
                raise ValueError(f"a tagged sentence needs one tag per token: {len(tokens)} tokens, label {label!r}")
        self.text: Text = text
        self.label: Label = label
        self.tokens: Optional[List[str]] = tokens
        self.predicted_label: Label = None

    @property
    def true_label(self) -> Label:
        """The gold label (seed name)."""
        return self.label

    @property
    def sentence_type(self) -> str:
        """``"sentence-pair"`` or ``"single-sentence"``, as in the seed."""
        return "sentence-pair" if isinstance(self.text, tuple) else "single-sentence"

    @property
    def is_empty(self) -> bool:
        """True when the text (both texts, for a pair) is blank; the trainer skips these."""
        parts = self.text if isinstance(self.text, tuple) else (self.text,)
        return not any(p.strip() for p in parts)

    def remove_predicted_label(self) -> None:
        """Forget the prediction."""
        self.predicted_label = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sentence):
            return NotImplemented
        return (self.text, self.label, self.tokens) == (other.text, other.label, other.tokens)

    __hash__ = None  # mutable (predicted_label)

    def __repr__(self) -> str:
        return f"Sentence: {self.text} \nTrue label: {self.label} \nPredicted label: {self.predicted_label}"


class SentenceDataset(Sequence[Sentence]):
    """A split of a corpus: an indexable, iterable list of :class:`Sentence`.

    Empty-text sentences stay in the dataset (``num_empty`` counts them;
    :meth:`non_empty` drops them) so indices keep matching the source file.
    """

    def __init__(self, sentences: Sequence[Sentence] = ()):
        self.sentences: List[Sentence] = list(sentences)
        for i, s in enumerate(self.sentences):
            if not isinstance(s, Sentence):
                raise TypeError(f"item {i} is a {type(s).__name__}, not a Sentence")

    def __len__(self) -> int:
        return len(self.sentences)

    @overload
    def __getitem__(self, index: int) -> Sentence: ...

    @overload
    def __getitem__(self, index: slice) -> "SentenceDataset": ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return SentenceDataset(self.sentences[index])
        return self.sentences[index]

    def __iter__(self) -> Iterator[Sentence]:
        return iter(self.sentences)

    def __repr__(self) -> str:
        return f"SentenceDataset({len(self)} sentences)"

    @property
    def texts(self) -> List[Text]:
        """The texts, in order."""
        return [s.text for s in self.sentences]

    @property
    def labels(self) -> List[Label]:
        """The gold labels, in order."""
        return [s.label for s in self.sentences]

    @property
    def num_empty(self) -> int:
        """How many sentences have a blank text."""
        return sum(s.is_empty for s in self.sentences)

    def non_empty(self) -> "SentenceDataset":
        """The sentences whose text is not blank."""
        return SentenceDataset([s for s in self.sentences if not s.is_empty])

    def sentence_by_id(self, index: int) -> Sentence:
        """The sentence at ``index`` (seed name)."""
        return self.sentences[index]

    def get_subset(self, start: int, end: int) -> List[Sentence]:
        """Sentences ``start:end`` (seed name)."""
        return self.sentences[start:end]
