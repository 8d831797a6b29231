"""TaskModel: the C task model (``multienc.engine._C.Model``) over some engine encoders.

One object computes every language model's forward, the pooling (as weights over positions),
the combination (none / concat / mean / DME), the decoder, the loss (cross-entropy, MSE or a
CRF), and in :meth:`TaskModel.train_step` the whole backward, gradient clipping and AdamW per
parameter group, in one call with the GIL released. The head's own weights (``combiner.*``,
``decoder.*``, ``crf.*``) live in its flat buffer; the encoders keep theirs.

Inputs per language model: ``(input_ids, attention_mask, token_type_ids or None, pool weights)``
int32 / int32 / int32 / float32 arrays of shapes (B, T), (B, T), (B, T), (B, K, T).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from multienc.engine import _C
from multienc.engine.encoder import Encoder

#: combine method name -> the C model's code
COMBINE_METHODS = {"none": 0, "concat": 1, "mean": 2, "dme": 3}
#: loss of a task model: cross-entropy, mean squared error, linear-chain CRF
TASK_CLASSIFY, TASK_REGRESS, TASK_CRF = 0, 1, 2

Inputs = List[Tuple[np.ndarray, np.ndarray, Optional[np.ndarray], np.ndarray]]


class TaskModel:
    """Encoders + pooling + combiner + head + loss + optimizer, computed by the C engine.

    Args:
        encoders: the engine encoders of the language models (borrowed: they keep their weights;
            they must all live on one device and outlive this model).
        combine: a :data:`COMBINE_METHODS` name (``"none"`` for exactly one encoder).
        task: :data:`TASK_CLASSIFY`, :data:`TASK_REGRESS` or :data:`TASK_CRF`.
        num_classes: outputs per row (0: no decoder, the combined vectors only).
        use_layer_norm, ln_eps, combine_dropout: the combiner's LayerNorm and dropout.
        pool_rows: pooled vectors per row put side by side (2 for first_last word pooling).
        state: initial head weights by name (missing ones start at zero).
    """

    def __init__(self, encoders: Sequence[Encoder], combine: str, task: int, num_classes: int,
                 use_layer_norm: bool = False, ln_eps: float = 1e-3, combine_dropout: float = 0.0,
                 pool_rows: int = 1, state: Optional[Mapping[str, np.ndarray]] = None):
        config = dict(combine=COMBINE_METHODS[combine], task=int(task), num_classes=int(num_classes),
                      use_layer_norm=int(bool(use_layer_norm)), ln_eps=float(ln_eps),
                      combine_dropout=float(combine_dropout), pool_rows=int(pool_rows))
        self._c = _C.Model([e._c for e in encoders], config)
        self._lm_floats = [e._c.num_floats for e in encoders]
        if state:
            self.load_state(state)

    @property
    def embedding_length(self) -> int:
        """Width of the combined vector the decoder reads."""
        return self._c.embedding_length

    def param_info(self) -> List[Tuple[str, Tuple[int, ...], int]]:
        """(name, shape, offset) of the head's parameters in its flat buffer."""
        return [(name, tuple(shape), off) for name, shape, off in self._c.param_info()]

    # ------------------------------------------------------------ weights
    def state(self) -> Dict[str, np.ndarray]:
        """Copies of the head's weights by name."""
        flat = np.empty(self._c.num_floats, np.float32)
        self._c.read_params(flat)
        return {name: flat[off:off + int(np.prod(shape))].reshape(shape).copy()
                for name, shape, off in self.param_info()}

    def load_state(self, state: Mapping[str, np.ndarray], source: str = "state") -> None:
        """Set head weights from a name -> array mapping (names not given keep their value).

        ValueError naming ``source`` and the tensor when a shape disagrees."""
        flat = np.empty(self._c.num_floats, np.float32)
        self._c.read_params(flat)
        for name, shape, off in self.param_info():
            if name in state:
                arr = np.asarray(state[name], np.float32)
                if arr.shape != shape:
                    raise ValueError(f"{source}: {name} has shape {arr.shape}, expected {shape}")
                flat[off:off + arr.size] = arr.reshape(-1)
        self._c.write_params(flat)

    # ------------------------------------------------------------ optimizer state
    def adamw_state(self) -> List[Tuple[int, np.ndarray, np.ndarray]]:
        """(update count, first moments, second moments) of every AdamW owner: the head's buffer,
        then each language model in order (zeros and count 0 for one never updated). With the
        weights, this is everything a training step depends on besides its inputs and seed."""
        out = []
        for which, n in [(-1, self._c.num_floats)] + list(enumerate(self._lm_floats)):
            first, second = np.empty(n, np.float32), np.empty(n, np.float32)
            step = self._c.read_adamw(which, first, second)
            out.append((step, first, second))
        return out

    def load_adamw_state(self, state: Sequence[Tuple[int, Optional[np.ndarray], Optional[np.ndarray]]],
                         source: str = "state") -> None:
        """Restore what :meth:`adamw_state` returned (moments given as None are zeros; ValueError
        naming ``source`` on a size mismatch)."""
        sizes = [self._c.num_floats] + self._lm_floats
        if len(state) != len(sizes):
            raise ValueError(f"{source}: optimizer state for {len(state)} owners, the model has {len(sizes)}")
        for which, ((step, first, second), n) in enumerate(zip(state, sizes), start=-1):
            first = np.zeros(n, np.float32) if first is None else np.ascontiguousarray(first, np.float32).reshape(-1)
            second = np.zeros(n, np.float32) if second is None else np.ascontiguousarray(second, np.float32).reshape(-1)
            if first.size != n or second.size != n:
                raise ValueError(f"{source}: optimizer moments of owner {which} have {first.size} / {second.size} "
                                 f"floats, the model's buffer {n}")
            self._c.write_adamw(which, first, second, int(step))

    # ------------------------------------------------------------ compute
    def forward(self, inputs: Inputs, targets: Optional[np.ndarray] = None, train: bool = False, seed: int = 0,
                embedding: bool = False, lengths: Optional[np.ndarray] = None, decode: bool = False) -> tuple:
        """(outputs [R, C], weights [n, R], loss or None, embedding [R, E] or None), plus the CRF's
        Viterbi tags int32 [B, K] (-1 past each length) when ``decode``. ``lengths`` [B]: the rows
        (words) of each sentence that a CRF reads."""
        return self._c.forward(inputs, targets, train=train, seed=seed, embedding=embedding, lengths=lengths,
                               decode=decode)

    def lm_schedule(self) -> str:
        """How the language models run: side by side on shares of the threads or one after another
        on all of them (the model times both on its first batches and keeps the faster; the
        environment variable ``MULTIENC_LM_SCHEDULE=sequential`` / ``side-by-side`` at creation fixes
        one), as a sentence."""
        return self._c.lm_schedule()

    @property
    def precision(self) -> str:
        """Precision of the linear layers of this model and its encoders: ``"fp32"`` or ``"bf16"``."""
        return self._c.precision

    def set_precision(self, precision: str) -> None:
        """Run the linear layers of this model and of its encoders in ``"bf16"`` (inputs rounded to
        bfloat16, products accumulated in float32; CPUs with AVX512-BF16 only) or ``"fp32"``.
        Weights, gradients, optimizer state and every other op (LayerNorm, softmax, attention
        products, losses) stay float32. The encoders are shared: another model over them sees it too."""
        self._c.set_precision(precision)

    def prepare_training(self, trainable: Sequence[bool]) -> None:
        """Allocate the AdamW state of the language models flagged ``trainable`` now (zero-filled,
        its memory already mapped) instead of inside the first training step."""
        self._c.prepare_training(list(trainable))

    def train_step(self, inputs: Inputs, targets: np.ndarray, learning_rates: Sequence[float],
                   weight_decay: Sequence[float], trainable: Sequence[bool], seed: int = 0,
                   max_grad_norm: float = 5.0, lengths: Optional[np.ndarray] = None) -> Tuple[float, float]:
        """One training step: forward (dropout seeded by ``seed``), loss, backward, clipping to
        ``max_grad_norm`` and AdamW with one rate and decay per group (each language model, the
        combiner, the decoder); language models not ``trainable`` are not updated. Returns
        (loss, gradient norm before clipping)."""
        kwargs: Dict[str, Any] = {"seed": seed, "max_grad_norm": max_grad_norm}
        if lengths is not None:
            kwargs["lengths"] = lengths
        return self._c.train_step(inputs, targets, list(learning_rates), list(weight_decay), list(trainable),
                                  **kwargs)

    # ------------------------------------------------------------ the step in stages (data parallelism)
    def forward_backward(self, inputs: Inputs, targets: np.ndarray, trainable: Sequence[bool], seed: int = 0,
                         row0: int = 0, grad_scale: float = 1.0, lengths: Optional[np.ndarray] = None) -> float:
        """The first stage of a data-parallel step: forward (train mode) of a shard that is rows
        ``row0 ..`` of the whole batch, padded to the whole batch's length (and rows per sentence), so
        that every dropout keeps the units the whole batch's forward keeps there; then the head's
        backward with the loss's gradient times ``grad_scale`` (this shard's counted rows over the
        whole batch's, so that the gradients summed over the shards are the whole batch's mean-loss
        gradients). Returns this shard's mean loss. Then :meth:`backward_lm` for each LM and
        :meth:`update`."""
        kwargs: Dict[str, Any] = {"seed": seed, "row0": row0, "grad_scale": grad_scale}
        if lengths is not None:
            kwargs["lengths"] = lengths
        return self._c.forward_backward(inputs, targets, list(trainable), **kwargs)

    def backward_lm(self, i: int) -> None:
        """LM ``i``'s gradients (after :meth:`forward_backward`; nothing when it is not trainable)."""
        self._c.backward_lm(i)

    def zero_grads(self, trainable: Sequence[bool]) -> None:
        """Zero gradients in place of a backward, for a process whose shard of a batch is empty."""
        self._c.zero_grads(list(trainable))

    def update(self, learning_rates: Sequence[float], weight_decay: Sequence[float], trainable: Sequence[bool],
               max_grad_norm: float = 5.0) -> float:
        """The optimizer half of :meth:`train_step` on the gradients in the buffers (after a staged
        backward and their sum across processes): clipping and AdamW. Returns the gradient norm
        before clipping; ValueError ("... no update was made") when it is not finite."""
        return self._c.update(list(learning_rates), list(weight_decay), list(trainable), max_grad_norm=max_grad_norm)

    def buffers(self, which: str = "grads") -> List[Tuple[str, np.ndarray]]:
        """``[(name, float32 view)]`` of the live flat buffers (``which``: ``"params"`` or ``"grads"``):
        the head's (``"head"``), then each LM's (``"lm.<i>"``). CPU only; for collective operations
        between steps or between the stages of a step (a view keeps this model alive)."""
        return _C.buffer_views(self._c, which)

    def buffer_addresses(self, which: str = "grads") -> List[Tuple[str, int, int]]:
        """``[(name, device address, floats)]`` of the same buffers on any device (for NCCL)."""
        return _C.buffer_addresses(self._c, which)
