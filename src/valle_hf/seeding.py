"""Per-row random generators: with `generate(..., seeds=[...])` every random draw a row needs comes from generators of
its own, so a row gives the same result whichever rows share its batch (and however long the others run), exactly
where the model and the NAR run in float32: in bfloat16 or float16 (`nar_dtype="auto"` on CPUs with fast bfloat16)
the rounding of the matrix products depends on the batch's shape, and a few codes may differ.

The scheme, defined here once:

* row ``i`` of a `generate` call has the seed ``seeds[i]`` (an integer >= 0);
* each of its stages draws from its own `torch.Generator`: stage 0 is the AR (sampling, beam sampling; mirostat
  truncates and then samples the same way), stage ``l`` the NAR's level ``l``. Each stream is seeded from
  ``(seed, stage)`` through NumPy's `SeedSequence`, so streams never overlap, neighbouring seeds give unrelated
  streams, and how many AR steps a batch took never shifts the NAR's draws;
* a text split into sentences with seed ``S`` gives its sentences the seeds ``S, S+1, ...`` (`sentence_seeds`): the
  CLI's ``--seed``, the web demo's seed and each row of a synthesis manifest follow it, so one sentence's audio is
  the same whichever of them made it (with the float32 caveat above).

The generators of the running call are found through a context variable (`seeded`), set by `generate` for its
duration: transformers' decoding loop calls the hooks that draw (`_get_top_k_continuations`, the logits processors)
with fixed arguments, and a context variable keeps concurrent calls in other threads apart.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from transformers import LogitsProcessor

from .errors import VallEValueError

__all__ = ["AR_STAGE", "RowGenerators", "SeededRowSampler", "active_generators", "draw", "multinomial_per_row",
           "seeded", "sentence_seeds"]

AR_STAGE = 0  # stage l >= 1 is the NAR's level l

_ACTIVE: contextvars.ContextVar[RowGenerators | None] = contextvars.ContextVar("valle_hf_row_generators",
                                                                               default=None)


def sentence_seeds(seed: int, count: int) -> list[int]:
    """The seeds of a text's `count` sentences (rows of one `generate` call) when the text has seed `seed`."""
    return [seed + index for index in range(count)]


def _stream_seed(seed: int, stage: int) -> int:
    """The 64-bit seed of one row's stream at `stage`: independent of every other (seed, stage) pair."""
    high, low = np.random.SeedSequence(seed, spawn_key=(stage,)).generate_state(2, np.uint32)
    return int(high) << 32 | int(low)


class RowGenerators:
    """The generators of one `generate` call: one stream per row and stage (see the module docstring).

    `seeds`: one integer >= 0 per input row. Raises `VallEValueError` for anything else. Streams are made on first
    use, on `device`. `drawn_from` collects the scores each seeded AR draw was made from, when the call asked for
    its scores (`SeededRowSampler` hands transformers a one-token distribution to pick from).
    """

    def __init__(self, seeds: Sequence[int] | torch.Tensor, device: torch.device | str):
        seeds = seeds.tolist() if isinstance(seeds, (torch.Tensor, np.ndarray)) else seeds
        if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds:
            raise VallEValueError(f"seeds must be a list with one integer >= 0 per row, got {seeds!r:.80}")
        bad = [seed for seed in seeds if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0]
        if bad:
            raise VallEValueError(f"seeds must be integers >= 0, one per row; got {bad[0]!r}")
        self.seeds = [int(seed) for seed in seeds]
        self.device = torch.device(device)
        self.drawn_from: list[torch.Tensor] | None = None
        self._streams: dict[int, list[torch.Generator]] = {}

    def check_rows(self, rows: int) -> None:
        """Refuse a call whose number of input rows is not the number of seeds."""
        if rows != len(self.seeds):
            raise VallEValueError(f"seeds: got {len(self.seeds)} seeds for {rows} rows; give one seed per row")

    def for_stage(self, stage: int, rows: int) -> list[torch.Generator]:
        """The generator of each of `rows` rows at `stage`. With `num_return_sequences` (or beams) a row's copies
        follow it (`rows` is a multiple of the input rows) and draw from its stream in turn."""
        if rows % len(self.seeds):
            raise VallEValueError(f"seeds: {rows} rows are no copies of the {len(self.seeds)} seeded rows")
        if stage not in self._streams:
            self._streams[stage] = [torch.Generator(self.device).manual_seed(_stream_seed(seed, stage))
                                    for seed in self.seeds]
        copies = rows // len(self.seeds)
        return [self._streams[stage][row // copies] for row in range(rows)]


@contextlib.contextmanager
def seeded(generators: RowGenerators | None) -> Iterator[None]:
    """Make `generators` the running call's generators (None: draw from torch's global generator, as without seeds)."""
    token = _ACTIVE.set(generators)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active_generators() -> RowGenerators | None:
    """The generators of the running `generate` call, or None when it has no seeds."""
    return _ACTIVE.get()


def draw(probs: torch.Tensor, stage: int, sizes: Sequence[int] | torch.Tensor | None = None, num_samples: int = 1,
         replacement: bool = False) -> torch.LongTensor:
    """`torch.multinomial` of `probs` `[N, V]` for `stage`: from each block's own stream (`sizes`: rows per block,
    default one row each; see `multinomial_per_row`) when the running call is seeded (`active_generators`; only then
    is a tensor of sizes read on the host), else from torch's global generator. Returns `[N, num_samples]` indices."""
    generators = active_generators()
    if generators is None:
        return torch.multinomial(probs, num_samples, replacement)
    sizes = [1] * len(probs) if sizes is None else sizes.tolist() if torch.is_tensor(sizes) else list(sizes)
    return multinomial_per_row(probs, generators.for_stage(stage, len(sizes)), sizes, num_samples, replacement)


def multinomial_per_row(probs: torch.Tensor, generators: Sequence[torch.Generator], sizes: Sequence[int] | None = None,
                        num_samples: int = 1, replacement: bool = False) -> torch.LongTensor:
    """`torch.multinomial` over consecutive blocks of `probs` `[N, V]`, each block with its own generator.

    `sizes`: rows per block (default one row each; a block may be empty); returns `[N, num_samples]` indices, drawn
    with or without `replacement`. A block's draws depend on that block and its generator only, whatever the other
    blocks are.
    """
    sizes = [1] * len(probs) if sizes is None else list(sizes)
    if len(sizes) != len(generators) or sum(sizes) != len(probs):
        raise VallEValueError(f"{len(generators)} generators for blocks {sizes} of {len(probs)} rows")
    blocks = [torch.multinomial(block, num_samples, replacement, generator=generator)
              for block, generator in zip(probs.split(sizes), generators, strict=True) if len(block)]
    return torch.cat(blocks) if blocks else probs.new_zeros(0, num_samples, dtype=torch.long)


class SeededRowSampler(LogitsProcessor):
    """The last processor of a seeded, sampled AR step: draws each row's token from its own stream and leaves only
    that token possible (every other score -inf), so transformers' own selection, `torch.multinomial` of a one-hot
    distribution, picks exactly it.

    The draw is `torch.multinomial(softmax(scores))`, the distribution transformers samples from. The scores drawn
    from are kept in `generators.drawn_from` when it is a list, to be returned as the step's `scores`.
    """

    def __init__(self, generators: RowGenerators):
        self.generators = generators

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        streams = self.generators.for_stage(AR_STAGE, scores.shape[0])
        tokens = multinomial_per_row(torch.softmax(scores, dim=-1), streams)
        if self.generators.drawn_from is not None:
            self.generators.drawn_from.append(scores)
        return torch.full_like(scores, -float("inf")).scatter(1, tokens, scores.gather(1, tokens))
