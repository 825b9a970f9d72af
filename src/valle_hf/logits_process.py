"""Sampling processors for VALL-E, written as ``transformers`` logits processors.

The original (e-c-k-e-r/vall-e ``samplers.py`` / ``Base.sample``) samples by hand with Python loops and
shared mutable state.  Here every sampler is a :class:`transformers.LogitsProcessor`, so that the stock
``generate`` loop (greedy or multinomial) drives decoding, and every processor is vectorised over the
batch: no Python loops over rows or vocabulary, per-row state kept as tensors, and no host syncs but DRY's one
per step.

Convention shared by all processors (set by how the model lays out ``input_ids``):

* ``input_ids`` ``[B, L]`` hold the whole sequence.  The prefix (text, separators, prompt placeholders,
  left padding) uses ids ``>= V`` where ``V = scores.shape[-1]``; the response tokens are the contiguous
  tail of ids ``< V``.  History-based samplers (repetition penalty, stop-token length penalty, DRY) look
  only at that tail, as the original does (it never penalises text or prompt tokens).
* ``scores`` ``[B, V]`` are the next-token logits: ``V = 1025`` for TTS (codes 0..1023, stop 1024),
  ``V = 256`` for STT (stop 2).

Where the original is buggy these processors do the intended thing instead; each deviation is documented on
the class.  The filters (top-k, top-p, min-p) and static
temperature reuse the ``transformers`` warpers, whose semantics match the original's (checked against the
reference fixtures), but for one tie: where the more likely tokens hold exactly ``top_p`` of the mass, top-p stops
there, while the original kept one token more.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from transformers import LogitsProcessor, LogitsProcessorList
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from .configuration import check_settings
from .entropix import EntropixLogitsWarper
from .errors import VallEValueError, get_logger

logger = get_logger(__name__)

__all__ = [
    "MIN_P_MIN_TOKENS_TO_KEEP",
    "DRYLogitsProcessor",
    "DynamicTemperatureLogitsWarper",
    "MirostatLogitsWarper",
    "StopTokenLengthPenaltyLogitsProcessor",
    "VallERepetitionPenaltyLogitsProcessor",
    "build_sampler_processors",
    "response_mask",
    "sampler_processors",
    "temperature_processor",
]

# The original's min-p never keeps fewer than 32 tokens (``min_p_filtering(min_tokens_to_keep=32)``); available
# as ``min_p_keep=MIN_P_MIN_TOKENS_TO_KEEP``.
MIN_P_MIN_TOKENS_TO_KEEP = 32
# Below this gap the original treats dynamic temperature as off (``abs(T - T_min) >= 0.001``).
_DYNAMIC_TEMPERATURE_EPS = 0.001


def response_mask(input_ids: torch.LongTensor, vocab_size: int) -> torch.BoolTensor:
    """True on the response part of each row: the contiguous tail of ids in ``[0, vocab_size)``.

    A position belongs to the response iff no prefix id (``>= vocab_size`` or negative) occurs at or
    after it, so a stray in-range id inside the prefix never counts as history.
    """
    is_prefix = ((input_ids >= vocab_size) | (input_ids < 0)).to(torch.int32)
    return is_prefix.flip(-1).cumsum(-1).flip(-1) == 0


def _penalise(scores: torch.Tensor, divisor: torch.Tensor) -> torch.Tensor:
    """Sign-aware penalty: divide positive logits, multiply negative ones (divisor >= 1 lowers both)."""
    return torch.where(scores > 0, scores / divisor, scores * divisor)


class VallERepetitionPenaltyLogitsProcessor(LogitsProcessor):
    """The original's repetition penalty, over the last ``window`` response tokens (distance ``d`` = 1 for the last).

    Per occurrence (the default, ``one_time=False``): every occurrence of a token among the last ``window``
    response tokens penalises it again, so the factors compound (ten occurrences at 1.5 divide by 57.7). This is the
    original's rule (``vall_e/samplers.py:reptition_penalize``), and the released model's tuned 1.5 was chosen with
    it. ``one_time=True`` penalises each token once, by its most recent occurrence: transformers' semantics (through
    `generate`'s ``repetition_penalty_mode="per_token"``). Text and prompt positions are never counted.

    The factor of an occurrence at distance ``d`` is ``1 + (penalty - 1) / d**decay``: ``penalty`` for the last
    token, fading towards 1 (no penalty) with distance, so nearer occurrences are always penalised at least as much
    as older ones. ``original_decay=True`` uses the original's ``penalty * d**decay`` instead, which penalises
    *older* occurrences more (its documentation promises the opposite); it is kept for parity checks only.

    Deviations from the original, which only ever divides: sign-aware (a negative logit is multiplied, so the
    penalty always lowers the token's logit; the original raises negative logits), and never a boost (the
    original's ``decay < 0`` gives factors below 1; here such factors are clamped to 1).

    Raises ValueError for ``penalty`` < 1 or not finite (1 = off), a decay that is not finite (or negative without
    ``original_decay``), and a window < 1.
    """

    def __init__(self, penalty: float, decay: float = 0.0, window: int = 75, one_time: bool = False,
                 original_decay: bool = False):
        penalty, decay = float(penalty), float(decay)
        if not (penalty >= 1 and math.isfinite(penalty)):
            raise VallEValueError(f"repetition_penalty must be a finite number >= 1 (1 = off), got {penalty}")
        if not math.isfinite(decay) or (decay < 0 and not original_decay):
            raise VallEValueError(f"repetition_penalty_decay must be a finite number >= 0 (0 = off), got {decay}")
        if not isinstance(window, int) or window < 1:
            raise VallEValueError(f"repetition penalty window must be a positive int, got {window!r}")
        self.penalty, self.decay, self.window, self.one_time = penalty, decay, window, one_time
        self.original_decay = original_decay

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        recent = input_ids[:, -self.window :]
        in_response = response_mask(recent, scores.shape[-1])
        tokens = torch.where(in_response, recent, 0)
        # distance 1 = the last column, as in the original's reversed walk over the history
        distance = torch.arange(recent.shape[1], 0, -1, device=scores.device, dtype=scores.dtype)
        distance = distance.expand_as(recent)
        if self.one_time:
            divisor = self._one_time_divisor(tokens, in_response, distance, scores)
        else:
            divisor = self._compound_divisor(tokens, in_response, distance, scores)
        return _penalise(scores, divisor)

    def _factor(self, distance: torch.Tensor) -> torch.Tensor:
        if self.original_decay:
            return (self.penalty * distance.pow(self.decay)).clamp_min(1.0)
        return 1.0 + (self.penalty - 1.0) * distance.pow(-self.decay)

    def _compound_divisor(self, tokens, in_response, distance, scores) -> torch.Tensor:
        """Product over occurrences of the factor of each, per row and token."""
        factor = torch.where(in_response, self._factor(distance), 1.0)
        return torch.ones_like(scores).scatter_reduce(1, tokens, factor, reduce="prod")

    def _one_time_divisor(self, tokens, in_response, distance, scores) -> torch.Tensor:
        """One factor per token, from its most recent occurrence (smallest distance)."""
        distance = torch.where(in_response, distance, math.inf)
        nearest = torch.full_like(scores, math.inf).scatter_reduce(1, tokens, distance, reduce="amin")
        seen = torch.isfinite(nearest)
        return torch.where(seen, self._factor(torch.where(seen, nearest, 1.0)), 1.0)


# The most `StopTokenLengthPenaltyLogitsProcessor` scales the stop logit by, either way.
_MAX_STOP_SCALE = 1e6


class StopTokenLengthPenaltyLogitsProcessor(LogitsProcessor):
    """The original's ``length_penalty``: scale the stop-token logit by ``(L + 1) ** factor`` (at most by 1e6 either
    way, where the stop token is already certain or impossible).

    ``L`` is the response length so far (all response tokens, including any prompt or silence prefix that
    seeded the response, as in the original).  Unlike ``transformers``' beam ``length_penalty`` this acts on
    the stop logit at every step.

    Deviation: sign-aware.  The original always divides, so with ``factor > 0`` a *negative* stop logit
    moves up and stopping becomes *more* likely.  Here ``factor > 0`` always makes stopping less likely
    (longer output) and ``factor < 0`` always more likely.
    """

    def __init__(self, factor: float, stop_token_id: int):
        factor = float(factor)
        if not math.isfinite(factor):
            raise VallEValueError(f"stop length penalty factor must be finite, got {factor}")
        if not isinstance(stop_token_id, int) or stop_token_id < 0:
            raise VallEValueError(f"stop_token_id must be a non-negative int, got {stop_token_id!r}")
        self.factor, self.stop_token_id = factor, stop_token_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        vocab = scores.shape[-1]
        if self.stop_token_id >= vocab:
            raise VallEValueError(f"stop_token_id {self.stop_token_id} is outside the scores width {vocab}")
        length = response_mask(input_ids, vocab).sum(-1).to(scores.dtype)
        # Bounded: a strongly negative factor underflows to 0 (a division to inf, NaN probabilities); a logit scaled
        # by 1e6 makes the stop token already certain (or impossible), so the bound changes no outcome.
        divisor = (length + 1.0).pow(self.factor).clamp(1.0 / _MAX_STOP_SCALE, _MAX_STOP_SCALE)
        stop = self.stop_token_id
        scores = scores.clone()
        scores[:, stop] = _penalise(scores[:, stop], divisor)
        return scores


class DynamicTemperatureLogitsWarper(LogitsProcessor):
    """Temperature that depends on the row's confidence (the original's ``--min-ar-temp``).

    ``T_dyn = T - (T - T_min) * sigmoid(k * (p_max - center))`` where ``p_max`` is the top softmax
    probability of the incoming row: a confident row is sampled near ``T_min``, an uncertain one near ``T``.
    Replaces (does not stack with) the static temperature.  Vectorised; the original loops over every
    vocabulary entry in Python.  ``T_dyn`` is floored at a tiny positive value so ``T_min = 0`` cannot
    divide by zero.
    """

    def __init__(self, temperature: float, min_temperature: float, k: float = 10.0, center: float = 0.5):
        temperature, min_temperature = float(temperature), float(min_temperature)
        if not temperature > 0:
            raise VallEValueError(f"temperature must be > 0 for dynamic temperature, got {temperature}")
        if not 0 <= min_temperature <= temperature:
            raise VallEValueError(f"min_temperature must be in [0, temperature={temperature}], got {min_temperature}")
        self.temperature, self.min_temperature = temperature, min_temperature
        self.k, self.center = float(k), float(center)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        p_max = scores.softmax(-1).amax(-1, keepdim=True)
        spread = self.temperature - self.min_temperature
        temperature = self.temperature - spread * torch.sigmoid(self.k * (p_max - self.center))
        return scores / temperature.clamp_min(1e-6)


class DRYLogitsProcessor(LogitsProcessor):
    """DRY ("don't repeat yourself"): penalise the tokens that would extend a verbatim repeat.

    Over the response tokens ``p[0..N-1]``: for each earlier position ``i``, let ``n(i)`` be the length of
    the longest common suffix of ``p[..i-1]`` and ``p[..N-1]`` (capped at ``max_match_length``).  Emitting
    ``p[i]`` next would make that repeat one token longer, so ``p[i]`` gets
    ``multiplier * base ** (n - allowed_length)`` subtracted when ``n >= allowed_length`` (the largest
    penalty over its occurrences).  Sequence breakers end a match and are never penalised.

    This is the algorithm the original intended; its own version never runs (IndexError on the AR's 1-D
    history) and would be wrong if it did (it compares against the context *before* the last token, so the
    last token always self-matches; it stops at the first short match with ``break``).

    ``window`` optionally bounds how many trailing positions are searched (the history is the last
    ``window`` tokens, and matches cannot reach before it).

    Cost: ``O(B * L)`` element ops per decoding step (plus ``O(B * V)`` for the penalty scatter), with no
    Python loops over rows or positions.  The processor keeps the previous call's (windowed) history and
    match lengths.  When a call continues the previous one -- same batch size, vocabulary size, device and
    dtype, and the new history without its last token ``t`` equals the previous history (after dropping
    the ``d >= 0`` leading columns that the window pushed out) -- the lengths follow from the old ones by
    the recurrence, in the new history's coordinates (``i >= 1``; ``n(0) = 0``)::

        n'(i) = min(n(i - 1 + d) + 1, max_match_length, i)  if usable(i - 1) and usable(last) and p[i - 1] == t
        n'(i) = 0                                            otherwise

    This is exact, not an approximation: the ``k = 1`` term of the common-suffix comparison is the test on
    ``p[i - 1]`` and ``t``, and the terms ``k >= 2`` are, shifted by one, exactly the terms that defined the
    old ``n(i - 1 + d)``; ``min(., i)`` re-applies the left edge of the history after ``d`` columns were
    dropped (a no-op when ``d = 0``).  Old "usable" flags stay valid: appending an in-range token leaves
    the response mask of earlier positions unchanged, and appending a prefix id (e.g. the padding of a
    finished row) makes ``usable(last)`` false, so every ``n'`` is 0, as a recompute would give.  Anything
    else (first call, a new ``generate``, beam search reordering rows, a different batch) falls back to the
    full recompute in ``_match_lengths``, a vectorised gather of the last ``max_match_length`` shifted
    copies of the history costing ``O(B * L * max_match_length)``.  The continuation check is one
    ``torch.equal`` over ``[B, L]`` (one host sync per step on an accelerator).  Call :meth:`reset` to
    drop the state explicitly.
    """

    def __init__(
        self,
        multiplier: float,
        base: float = 1.75,
        allowed_length: int = 2,
        max_match_length: int | None = None,
        sequence_breakers: Iterable[int] = (),
        window: int | None = None,
    ):
        multiplier, base = float(multiplier), float(base)
        if not multiplier >= 0:
            raise VallEValueError(f"DRY multiplier must be >= 0, got {multiplier}")
        if not base >= 1:
            raise VallEValueError(f"DRY base must be >= 1, got {base}")
        if not isinstance(allowed_length, int) or allowed_length < 1:
            raise VallEValueError(f"DRY allowed_length must be a positive int, got {allowed_length!r}")
        if max_match_length is None:  # the original's cap (`vall_e/samplers.py:dry_sampling`)
            max_match_length = max(allowed_length, 50)
        if not isinstance(max_match_length, int) or max_match_length < allowed_length:
            raise VallEValueError(f"DRY max_match_length must be an int >= allowed_length, got {max_match_length!r}")
        if window is not None and (not isinstance(window, int) or window < 2):
            raise VallEValueError(f"DRY window must be None or an int >= 2, got {window!r}")
        self.multiplier, self.base = multiplier, base
        self.allowed_length, self.max_match_length, self.window = allowed_length, max_match_length, window
        self.sequence_breakers = torch.tensor(sorted({int(t) for t in sequence_breakers}), dtype=torch.long)
        self.reset()

    def reset(self) -> None:
        """Forget the previous call; the next call recomputes every match length from scratch."""
        self._history: torch.LongTensor | None = None  # previous call's (windowed) history, a private copy
        self._lengths: torch.LongTensor | None = None  # its match lengths n(i)
        self._vocab: int | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        history = input_ids if self.window is None else input_ids[:, -self.window :]
        vocab = scores.shape[-1]
        in_response = response_mask(history, vocab)
        if self.sequence_breakers.device != history.device:  # move once, not on every step
            self.sequence_breakers = self.sequence_breakers.to(history.device)
        usable = in_response
        if self.sequence_breakers.numel():  # isin costs as much as the whole update: skip it when there are none
            usable = usable & ~torch.isin(history, self.sequence_breakers)
        dropped = self._dropped_columns(history, vocab)
        if dropped is None:
            lengths = self._match_lengths(history, usable)
        else:
            lengths = self._extend_match_lengths(history, usable, self._lengths[:, dropped:])
        self._history, self._lengths, self._vocab = history.clone(), lengths, vocab
        penalised = usable & (lengths >= self.allowed_length)
        exponent = (lengths - self.allowed_length).to(scores.dtype)
        penalty = torch.where(penalised, self.multiplier * torch.pow(self.base, exponent), 0.0)
        tokens = torch.where(in_response, history, 0)
        per_token = torch.zeros_like(scores).scatter_reduce(1, tokens, penalty, reduce="amax")
        return scores - per_token

    def _dropped_columns(self, history: torch.LongTensor, vocab: int) -> int | None:
        """``d`` if ``history[:, :-1]`` equals the previous history without its first ``d`` columns, else None.

        ``d`` is 0 while the history grows and 1 once a window slides; the match lengths are a function of the
        (windowed) history alone, so this is all the incremental update needs.
        """
        previous = self._history
        if (
            previous is None
            or self._vocab != vocab
            or previous.shape[0] != history.shape[0]
            or previous.device != history.device
            or previous.dtype != history.dtype
            or history.shape[1] < 1
        ):
            return None
        dropped = previous.shape[1] - (history.shape[1] - 1)
        if dropped < 0 or not torch.equal(history[:, :-1], previous[:, dropped:]):
            return None
        return dropped

    def _extend_match_lengths(
        self, history: torch.LongTensor, usable: torch.BoolTensor, previous: torch.LongTensor
    ) -> torch.LongTensor:
        """``n`` for ``history`` from ``previous``, the old lengths of ``history[:, :-1]`` (see the class doc).

        ``previous[:, j]`` is the old ``n`` of the position that is now ``j``; it may exceed ``j`` when columns
        were dropped on the left, which ``min(., i)`` corrects.
        """
        length = history.shape[1]
        last = history[:, -1:]
        extends = usable[:, :-1] & usable[:, -1:] & (history[:, :-1] == last)  # k = 1 term, for i = 1..N
        longer = (previous + 1).clamp_max(self.max_match_length)
        edge = torch.arange(1, length, device=history.device)  # at most i: matches end at the history start
        grown = torch.where(extends, torch.minimum(longer, edge), 0)
        return torch.cat([grown.new_zeros(history.shape[0], 1), grown], dim=1)  # n(0) = 0: nothing before it

    def _match_lengths(self, history: torch.LongTensor, usable: torch.BoolTensor) -> torch.LongTensor:
        """``n(i)`` for every position ``i``: common-suffix length of ``p[..i-1]`` and the whole history.

        The full recompute (first call, or a call that does not continue the previous one), and the reference
        for the incremental ``_extend_match_lengths``.
        """
        length = history.shape[1]
        device = history.device
        shift = torch.arange(1, self.max_match_length + 1, device=device)  # k = 1..M
        before = torch.arange(length, device=device)[:, None] - shift  # [R, M]: index i - k
        valid = before >= 0
        before = before.clamp_min(0)
        tail = (length - shift).clamp_min(0)  # [M]: index N - k (k-th token from the end)
        same = history[:, before] == history[:, tail][:, None, :]
        same &= usable[:, before] & usable[:, tail][:, None, :] & valid
        # the match length is the number of leading matches along k
        return same.to(torch.int32).cumprod(-1).sum(-1)


class MirostatLogitsWarper(LogitsProcessor):
    """Mirostat (v1): truncate to a Zipf-derived top-k so that the average surprise tracks ``tau``.

    On each call, first update the per-row target ``mu`` from the token that was sampled after the
    previous call (``input_ids[:, -1]``): ``mu -= eta * (log2(1/p) - tau)`` where ``p`` is that token's
    probability under the previous call's full, untruncated distribution.  Then estimate the Zipf exponent
    ``s`` from the top ``zipf_terms + 1`` probabilities, set
    ``k = round((eps * 2**mu / (1 - n**-eps)) ** (1/s)) + 1`` with ``eps = s - 1``, and mask everything
    outside the top k; the caller's multinomial sampling then samples, as the original does.

    State (``mu``, the stored log-probabilities) is per row and is reset whenever a call does not continue
    the previous one (different batch size, or ``input_ids`` not exactly one token longer).

    Deviations from the original: ``mu`` starts at ``2 * tau`` (the original starts at ``2 * eta`` by
    accident; pass ``initial_mu`` to reproduce it); one state per row instead of one dict shared by the
    batch; ``n`` defaults to the scores width instead of a fixed 1024; zero probabilities (after other
    filters), vocabularies smaller than ``zipf_terms + 1`` and ``eps = 0`` are handled instead of raising
    (a row without a usable estimate keeps all tokens); a row whose last token was impossible under the
    previous distribution (e.g. padding of a finished row) keeps its ``mu``.
    """

    def __init__(
        self,
        tau: float,
        eta: float,
        initial_mu: float | None = None,
        zipf_n: int | None = None,
        zipf_terms: int = 100,
        filter_value: float = -math.inf,
    ):
        tau, eta = float(tau), float(eta)
        if not tau > 0:
            raise VallEValueError(f"mirostat tau must be > 0, got {tau}")
        if not eta >= 0:
            raise VallEValueError(f"mirostat eta must be >= 0, got {eta}")
        if zipf_n is not None and (not isinstance(zipf_n, int) or zipf_n < 2):
            raise VallEValueError(f"mirostat zipf_n must be None or an int >= 2, got {zipf_n!r}")
        if not isinstance(zipf_terms, int) or zipf_terms < 1:
            raise VallEValueError(f"mirostat zipf_terms must be a positive int, got {zipf_terms!r}")
        self.tau, self.eta = tau, eta
        self.initial_mu = 2.0 * tau if initial_mu is None else float(initial_mu)
        self.zipf_n, self.zipf_terms, self.filter_value = zipf_n, zipf_terms, filter_value
        self.reset()

    def reset(self) -> None:
        """Forget the per-row state; the next call starts a new sequence."""
        self.mu: torch.Tensor | None = None
        self.last_surprise: torch.Tensor | None = None
        self._log_probs: torch.Tensor | None = None
        self._seen_length: int | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        log_probs = scores.float().log_softmax(-1)
        if self._continues(input_ids, scores):
            self._update_mu(input_ids[:, -1])
        else:
            self.mu = torch.full((scores.shape[0],), self.initial_mu, device=scores.device)
            self.last_surprise = None
        self._log_probs, self._seen_length = log_probs, input_ids.shape[1]
        sorted_log_probs = log_probs.sort(-1, descending=True).values
        k = self._top_k(sorted_log_probs)
        threshold = sorted_log_probs.gather(1, (k - 1)[:, None])
        return scores.masked_fill(log_probs < threshold, self.filter_value)

    def _continues(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> bool:
        previous = self._log_probs
        return (
            previous is not None
            and previous.shape == scores.shape
            and input_ids.shape[1] == self._seen_length + 1
        )

    def _update_mu(self, token: torch.LongTensor) -> None:
        vocab = self._log_probs.shape[-1]
        log_p = self._log_probs.gather(1, token.clamp(0, vocab - 1)[:, None])[:, 0]
        surprise = -log_p / math.log(2.0)
        possible = torch.isfinite(surprise) & (token >= 0) & (token < vocab)
        self.mu = torch.where(possible, self.mu - self.eta * (surprise - self.tau), self.mu)
        self.last_surprise = surprise

    def _top_k(self, sorted_log_probs: torch.Tensor) -> torch.LongTensor:
        """Mirostat's k per row from the Zipf fit of the top probabilities, clamped to ``[1, V]``."""
        vocab = sorted_log_probs.shape[-1]
        s = self._zipf_exponent(sorted_log_probs[:, : self.zipf_terms + 1])
        eps = s - 1.0
        log_n = math.log(self.zipf_n or vocab)
        # eps / (1 - n**-eps), with its eps -> 0 limit 1 / ln(n)
        ratio = torch.where(eps.abs() > 1e-6, eps / -torch.expm1(-eps * log_n), 1.0 / log_n)
        k = (ratio * torch.pow(2.0, self.mu)).pow(1.0 / s).round() + 1.0
        usable = (s > 0) & torch.isfinite(k)
        return torch.where(usable, k, float(vocab)).clamp(1, vocab).long()

    @staticmethod
    def _zipf_exponent(top_log_probs: torch.Tensor) -> torch.Tensor:
        """Least-squares Zipf exponent over consecutive ratios, skipping zero probabilities."""
        steps = top_log_probs.shape[-1] - 1
        rank = torch.arange(1, steps + 1, device=top_log_probs.device, dtype=top_log_probs.dtype)
        log_rank_ratio = torch.log1p(1.0 / rank)  # ln((i + 2) / (i + 1)) for i = 0..steps-1
        next_log_p = top_log_probs[:, 1:]
        valid = torch.isfinite(next_log_p)
        log_p_ratio = torch.where(valid, top_log_probs[:, :-1] - next_log_p, 0.0)
        numerator = (log_p_ratio * log_rank_ratio).sum(-1)
        denominator = torch.where(valid, log_rank_ratio.square(), 0.0).sum(-1)
        return numerator / denominator  # NaN when no valid term; handled by the caller


def temperature_processor(temperature: float, min_temperature: float) -> LogitsProcessor | None:
    """Static or dynamic temperature (`DynamicTemperatureLogitsWarper` when ``min_temperature >= 0`` differs from
    ``temperature``), or None when greedy (``temperature <= 0``) or a no-op (T = 1, no dynamic). Each row of the
    scores it is applied to gets its own dynamic temperature: the AR's rows, or the NAR's frames."""
    if temperature <= 0:
        return None
    if min_temperature >= 0 and abs(temperature - min_temperature) >= _DYNAMIC_TEMPERATURE_EPS:
        return DynamicTemperatureLogitsWarper(temperature, min_temperature)
    if temperature == 1.0:
        return None
    return TemperatureLogitsWarper(float(temperature))


def build_sampler_processors(
    *,
    temperature: float = 1.0,
    min_temperature: float = -1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    min_p_keep: int = 1,
    repetition_penalty: float = 1.0,
    repetition_penalty_decay: float = 0.0,
    repetition_penalty_mode: str = "per_occurrence",
    repetition_penalty_decay_mode: str = "nearer",
    stop_length_penalty: float = 0.0,
    stop_token_id: int | None = None,
    dry_multiplier: float = 0.0,
    dry_base: float = 1.75,
    dry_allowed_length: int = 2,
    dry_sequence_breakers: Iterable[int] = (),
    mirostat_tau: float = 0.0,
    mirostat_eta: float = 0.1,
    entropix: bool = False,
    order: str = "original",
) -> LogitsProcessorList:
    """Build the VALL-E sampler chain as a ``LogitsProcessorList`` (pass it as ``logits_processor=``).

    ``order="original"`` (default) follows the original's ``Base.sample``, except that DRY joins the other
    penalties: repetition penalty -> stop length penalty -> DRY -> min-p -> top-k -> top-p -> temperature or
    dynamic temperature -> mirostat, so the filters see the un-tempered distribution and no penalty is scaled by
    ``1 / T``. (The original applies DRY after temperature, where a high temperature shrinks its penalty.)
    ``order="transformers"`` follows ``generate``'s own order: penalties (repetition, stop length, DRY) ->
    temperature -> top-k -> top-p -> min-p -> mirostat.

    Disabled samplers are omitted (penalty 1, factor 0, top_k 0, top_p 1, min_p 0, multiplier 0, tau 0).
    ``min_temperature < 0`` means "same as temperature" (dynamic temperature off), as in the original.
    ``temperature <= 0`` means greedy: the caller decodes with ``do_sample=False``, so the temperature and
    mirostat are omitted while the penalties and filters stay (the original also penalises before its argmax).
    The original lets mirostat override greedy; here greedy wins. ``min_p_keep``: tokens min-p always keeps (1, as
    min-p's own definition; the original's 32 on request). The repetition-penalty options are those of
    `VallERepetitionPenaltyLogitsProcessor` (``repetition_penalty_mode="per_token"`` is its ``one_time``;
    ``repetition_penalty_decay_mode="original"`` its ``original_decay``). ``entropix=True`` (when sampling) puts
    `EntropixLogitsWarper` after the penalties in place of the filters and the temperature, whose settings it adapts
    at each step; it reads the attention that `generate` records with it. ``generate``'s own warpers must be
    disabled or they apply twice (`VallEGenerationConfig.for_transformers` does that).

    Raises `SettingError` for a setting outside its range (see `check_settings`).
    """
    check_settings(dict(
        temperature=temperature, min_temperature=min_temperature, top_k=top_k, top_p=top_p, min_p=min_p,
        min_p_keep=min_p_keep, repetition_penalty=repetition_penalty, repetition_penalty_decay=repetition_penalty_decay,
        repetition_penalty_mode=repetition_penalty_mode, repetition_penalty_decay_mode=repetition_penalty_decay_mode,
        stop_length_penalty=stop_length_penalty,
        dry_multiplier=dry_multiplier, dry_base=dry_base, dry_allowed_length=dry_allowed_length,
        mirostat_tau=mirostat_tau, mirostat_eta=mirostat_eta, entropix=entropix, sampler_order=order,
    ))
    original_decay = repetition_penalty_decay_mode == "original"
    if stop_length_penalty != 0 and stop_token_id is None:
        raise VallEValueError("stop_length_penalty needs stop_token_id")
    penalties = []
    if repetition_penalty != 1.0:
        penalties.append(VallERepetitionPenaltyLogitsProcessor(
            repetition_penalty, repetition_penalty_decay, one_time=repetition_penalty_mode == "per_token",
            original_decay=original_decay,
        ))
    if stop_length_penalty != 0.0:
        penalties.append(StopTokenLengthPenaltyLogitsProcessor(stop_length_penalty, stop_token_id))
    if dry_multiplier > 0:
        penalties.append(DRYLogitsProcessor(dry_multiplier, dry_base, int(dry_allowed_length),
                                            sequence_breakers=dry_sequence_breakers))
    min_p_ = [MinPLogitsWarper(float(min_p), min_tokens_to_keep=min_p_keep)] if min_p > 0 else []
    top_k_ = [TopKLogitsWarper(top_k)] if top_k > 0 else []
    top_p_ = [TopPLogitsWarper(float(top_p))] if top_p < 1.0 else []
    temp = [p for p in [temperature_processor(temperature, min_temperature)] if p is not None]
    sampling = temperature > 0
    if entropix and sampling:
        return LogitsProcessorList([*penalties, EntropixLogitsWarper(temperature, top_k, top_p, min_p)])
    mirostat = [MirostatLogitsWarper(mirostat_tau, mirostat_eta)] if sampling and mirostat_tau > 0 else []
    if order == "original":
        chain = penalties + min_p_ + top_k_ + top_p_ + temp + mirostat
    else:
        chain = penalties + temp + top_k_ + top_p_ + min_p_ + mirostat
    return LogitsProcessorList(chain)


def sampler_processors(config) -> LogitsProcessorList:
    """The sampler chain a `VallEGenerationConfig` asks for (see `build_sampler_processors`).

    Greedy decoding (`config.is_sampling` False) keeps the penalties and drops what only shapes a distribution that
    is sampled from (temperature, filters, mirostat), as the original does before its argmax.
    """
    sampling = config.is_sampling
    eos = config.eos_token_id
    return build_sampler_processors(
        temperature=(config.temperature or 1.0) if sampling else 0.0,
        min_temperature=config.min_temperature,
        top_k=(config.top_k or 0) if sampling else 0,
        top_p=config.top_p if sampling and config.top_p is not None else 1.0,
        min_p=(config.min_p or 0.0) if sampling else 0.0,
        min_p_keep=config.min_p_keep,
        repetition_penalty=config.repetition_penalty or 1.0,
        repetition_penalty_decay=config.repetition_penalty_decay,
        repetition_penalty_mode=config.repetition_penalty_mode,
        repetition_penalty_decay_mode=config.repetition_penalty_decay_mode,
        stop_length_penalty=config.stop_length_penalty,
        stop_token_id=eos[0] if isinstance(eos, (list, tuple)) else eos,
        dry_multiplier=config.dry_multiplier,
        dry_base=config.dry_base,
        dry_allowed_length=config.dry_allowed_length,
        dry_sequence_breakers=config.dry_sequence_breakers,
        mirostat_tau=config.mirostat_tau if sampling else 0.0,
        mirostat_eta=config.mirostat_eta,
        entropix=config.entropix,
        order=config.sampler_order,
    )
