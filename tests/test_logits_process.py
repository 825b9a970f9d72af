"""Tests for valle_hf.logits_process against the reference fixtures and by property.

Reference values come from the fixture folder named by $VALLE_FIXTURES (default: ../shared/fixtures/tiny
relative to the repository root); fixture-based tests are skipped when it is absent.  Where the port
deliberately differs from the original (sign handling), the expected value is derived from the fixture's
output, not copied from it.
"""

from __future__ import annotations

import math
import random

import pytest
import torch
from conftest import dry_penalty_by_definition
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from valle_hf.logits_process import (
    MIN_P_MIN_TOKENS_TO_KEEP,
    DRYLogitsProcessor,
    DynamicTemperatureLogitsWarper,
    MirostatLogitsWarper,
    StopTokenLengthPenaltyLogitsProcessor,
    VallERepetitionPenaltyLogitsProcessor,
    build_sampler_processors,
    response_mask,
)

# ----------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def cases(fixtures) -> dict:
    return fixtures.cases


@pytest.fixture(scope="module")
def tensors(fixtures) -> dict:
    return fixtures.tensors


def _ids(response: torch.Tensor, vocab: int, prefix: int = 5) -> torch.LongTensor:
    """One row of input_ids: ``prefix`` ids >= vocab (text/prompt placeholders), then the response."""
    head = vocab + torch.arange(prefix, dtype=torch.long)
    return torch.cat([head, response.to(torch.long)])[None]


def _sign_aware(inputs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """The port's expected output, from the original's divide-only output: negatives get multiplied."""
    divisor = inputs / reference
    expected = torch.where(inputs > 0, reference, inputs * divisor)
    return torch.where(inputs == reference, inputs, expected)


def _same_filter(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert torch.equal(torch.isinf(actual), torch.isinf(expected))
    keep = torch.isfinite(expected)
    torch.testing.assert_close(actual[keep], expected[keep], rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------------------------
# response mask


def test_response_mask_is_contiguous_tail():
    # a negative id is prefix too: nothing before it is history
    ids = torch.tensor([[9, 1, 9, 2, 3], [9, 9, 9, 9, 9], [0, 1, 2, 3, 4], [2, 1, -1, 3, 4]])
    expected = torch.tensor([[0, 0, 0, 1, 1], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(response_mask(ids, 5), expected)


# ----------------------------------------------------------------------------------------------------
# repetition penalty


@pytest.mark.parametrize("name", ["rep_pen", "rep_pen_decay", "rep_pen_one_time", "rep_pen_multirow"])
def test_repetition_penalty_matches_reference(name, cases, tensors):
    case = cases[name]
    params = case["params"]
    logits = tensors[case["tensors"]["inputs"][0]]
    vocab = logits.shape[-1]
    history = tensors[params["previous"]]
    history = history[history < vocab]  # the multirow case drops the stop id that its heads lack
    ids = _ids(history, vocab).expand(logits.shape[0], -1)
    processor = VallERepetitionPenaltyLogitsProcessor(  # the original's decay direction, explicitly
        params["factor"], params["decay"], window=params["limit"], one_time=params["one_time"], original_decay=True
    )
    out = processor(ids, logits.clone())
    reference = tensors[case["tensors"]["output"]]
    positive = logits > 0
    torch.testing.assert_close(out[positive], reference[positive], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, _sign_aware(logits, reference), rtol=1e-5, atol=1e-6)


def test_repetition_penalty_lowers_never_boosts():
    gen = torch.Generator().manual_seed(0)
    vocab = 20
    scores = torch.randn(1, vocab, generator=gen) * 3
    history = torch.randint(0, vocab, (30,), generator=gen)
    # the original's decay < 0 gives boosting factors (< 1) at larger distances: they must be clamped
    out = VallERepetitionPenaltyLogitsProcessor(2.0, decay=-1.0, original_decay=True)(_ids(history, vocab),
                                                                                       scores.clone())
    seen = torch.zeros(vocab, dtype=torch.bool)
    seen[history] = True
    assert torch.all(out <= scores)
    assert torch.equal(out[0, ~seen], scores[0, ~seen])
    last = history[-1]  # distance 1: factor exactly 2, on a positive or a negative logit
    assert out[0, last] <= scores[0, last] / 2 if scores[0, last] > 0 else out[0, last] <= scores[0, last] * 2


def test_repetition_penalty_only_sees_recent_response():
    vocab, window = 10, 4
    scores = torch.full((1, vocab), 2.0)
    # prefix holds an in-range id (3) that must not count; 1 is older than the window
    ids = torch.tensor([[vocab + 1, 3, vocab + 2, 1, 5, 6, 5, 7]])
    out = VallERepetitionPenaltyLogitsProcessor(2.0, window=window)(ids, scores.clone())
    expected = scores.clone()
    expected[0, 5] = 2.0 / 4  # two occurrences compound
    expected[0, 6] = 2.0 / 2
    expected[0, 7] = 2.0 / 2
    torch.testing.assert_close(out, expected)


def test_repetition_penalty_rows_independent():
    gen = torch.Generator().manual_seed(1)
    vocab = 16
    scores = torch.randn(2, vocab, generator=gen)
    a = torch.randint(0, vocab, (12,), generator=gen)
    b = torch.randint(0, vocab, (7,), generator=gen)
    rows = torch.cat([_ids(a, vocab, prefix=3), _ids(b, vocab, prefix=8)])  # left padding differs
    processor = VallERepetitionPenaltyLogitsProcessor(1.5, decay=0.5, window=10)
    batched = processor(rows, scores.clone())
    torch.testing.assert_close(batched[:1], processor(_ids(a, vocab, 3), scores[:1].clone()))
    torch.testing.assert_close(batched[1:], processor(_ids(b, vocab, 8), scores[1:].clone()))


@pytest.mark.parametrize("penalty, decay", [(0.0, 0.0), (-1.5, 0.0), (0.5, 0.0), (math.nan, 0.0), (math.inf, 0.0),
                                            (1.5, -1.0), (1.5, math.nan)])
def test_repetition_penalty_validation(penalty, decay):
    with pytest.raises(ValueError, match=">= 1|>= 0"):
        VallERepetitionPenaltyLogitsProcessor(penalty, decay)


def test_repetition_penalty_decay_fades_with_distance():
    """rho = 2, delta = 1: the token seen 1 step ago is divided by 2, the one seen 2 steps ago by 1 + 1/2 (nearer is
    penalised more); the original's rho * d**delta divides them by 2 and 4 (older more), on request only."""
    vocab, near, far = 8, 3, 5
    scores = torch.full((1, vocab), 6.0)
    ids = _ids(torch.tensor([far, near]), vocab)
    out = VallERepetitionPenaltyLogitsProcessor(2.0, decay=1.0)(ids, scores.clone())
    assert out[0, near].item() == pytest.approx(6.0 / 2.0) and out[0, far].item() == pytest.approx(6.0 / 1.5)
    assert out[0, near] <= out[0, far]
    original = VallERepetitionPenaltyLogitsProcessor(2.0, decay=1.0, original_decay=True)(ids, scores.clone())
    assert original[0, near].item() == pytest.approx(6.0 / 2.0) and original[0, far].item() == pytest.approx(6.0 / 4.0)
    # nearer at least as penalised as older, for any distances and decays
    history = torch.arange(1, 7)  # six tokens, distances 6..1
    for decay in (0.0, 0.3, 1.0, 2.5):
        out = VallERepetitionPenaltyLogitsProcessor(1.8, decay=decay)(_ids(history, vocab), scores.clone())[0]
        assert torch.all(out[1:7].diff() <= 1e-6)  # token 6 (distance 1) lowest


def test_repetition_penalty_compounds_per_occurrence_unless_per_token():
    vocab, token = 8, 2
    scores = torch.full((1, vocab), 10.0)
    ids = _ids(torch.full((10,), token), vocab)  # ten occurrences
    compound = VallERepetitionPenaltyLogitsProcessor(1.5)(ids, scores.clone())[0, token]
    assert compound.item() == pytest.approx(10.0 / 1.5**10)  # 1.5**10 = 57.7
    once = VallERepetitionPenaltyLogitsProcessor(1.5, one_time=True)(ids, scores.clone())[0, token]
    assert once.item() == pytest.approx(10.0 / 1.5)
    chain = build_sampler_processors(repetition_penalty=1.5, repetition_penalty_mode="per_token")
    assert chain(ids, scores.clone())[0, token].item() == pytest.approx(10.0 / 1.5)


def test_min_p_keeps_what_its_threshold_keeps_unless_asked_for_the_original_floor():
    row = torch.zeros(1, 100)
    row[0, 0] = 10.0
    ids = _ids(torch.arange(0), 100)
    kept = lambda chain: int(torch.isfinite(chain(ids, row.clone())).sum())  # noqa: E731
    assert kept(build_sampler_processors(min_p=0.5)) == 1
    assert kept(build_sampler_processors(min_p=0.5, min_p_keep=MIN_P_MIN_TOKENS_TO_KEEP)) == 32


# ----------------------------------------------------------------------------------------------------
# stop-token length penalty


def test_stop_length_penalty_matches_reference(cases, tensors):
    case = cases["len_pen"]
    params = case["params"]
    logits = tensors[case["tensors"]["inputs"][0]]
    vocab = logits.shape[-1]
    # the original divides by length**factor with length = response length + 1
    response = torch.zeros(params["length"] - 1, dtype=torch.long)
    processor = StopTokenLengthPenaltyLogitsProcessor(params["factor"], params["token"])
    out = processor(_ids(response, vocab), logits.clone())
    torch.testing.assert_close(out, _sign_aware(logits, tensors[case["tensors"]["output"]]), rtol=1e-6, atol=0)


def test_stop_length_penalty_sign_aware_and_per_row():
    vocab, stop = 256, 2  # STT shape
    scores = torch.zeros(3, vocab)
    scores[:, stop] = torch.tensor([1.5, -1.5, -1.5])
    ids = torch.cat([_ids(torch.arange(8), vocab, prefix=2), _ids(torch.arange(3), vocab, prefix=7),
                     _ids(torch.arange(0), vocab, prefix=10)])
    out = StopTokenLengthPenaltyLogitsProcessor(0.5, stop)(ids, scores.clone())
    expected = torch.tensor([1.5 / 3.0, -1.5 * 2.0, -1.5])  # lengths 8, 3, 0
    torch.testing.assert_close(out[:, stop], expected)
    assert torch.equal(out[:, 3:], scores[:, 3:])
    longer = StopTokenLengthPenaltyLogitsProcessor(-0.5, stop)(ids, scores.clone())
    assert torch.all(longer[:2, stop] > scores[:2, stop])  # factor < 0 makes stopping likelier
    with pytest.raises(ValueError):
        StopTokenLengthPenaltyLogitsProcessor(0.5, 1024)(ids, scores)
    with pytest.raises(ValueError, match="outside the scores width"):  # one past the last column
        StopTokenLengthPenaltyLogitsProcessor(0.5, vocab)(ids, scores)
    # a strongly negative factor: (L + 1) ** factor underflows to 0; the stop logit stays finite (1e6 times larger)
    extreme = StopTokenLengthPenaltyLogitsProcessor(-1000.0, stop)(ids, scores.clone())
    assert torch.isfinite(extreme).all() and torch.isfinite(torch.softmax(extreme, dim=-1)).all()
    torch.testing.assert_close(extreme[:2, stop], torch.tensor([1.5e6, -1.5e-6]))
    torch.testing.assert_close(StopTokenLengthPenaltyLogitsProcessor(1000.0, stop)(ids, scores.clone())[:2, stop],
                               torch.tensor([1.5e-6, -1.5e6]))


# ----------------------------------------------------------------------------------------------------
# filters (transformers warpers) and temperature


@pytest.mark.parametrize(
    "name", ["top_k", "top_p", "top_k_top_p", "top_k_top_p_multirow", "min_p", "min_p_multirow"]
)
def test_filters_match_reference(name, cases, tensors):
    case = cases[name]
    params = case["params"]
    logits = tensors[case["tensors"]["inputs"][0]]
    chain = build_sampler_processors(  # the original's min-p floor, explicitly
        top_k=params.get("top_k", 0), top_p=params.get("top_p", 1.0), min_p=params.get("min_p", 0.0),
        min_p_keep=params.get("min_tokens_to_keep", 1),
    )
    if "min_tokens_to_keep" in params:
        assert chain[0].min_tokens_to_keep == params["min_tokens_to_keep"]
    ids = _ids(torch.arange(0), logits.shape[-1]).expand(logits.shape[0], -1)
    _same_filter(chain(ids, logits.clone()), tensors[case["tensors"]["output"]])


@pytest.mark.parametrize("name", ["dyn_temp", "dyn_temp_multirow"])
def test_dynamic_temperature_matches_reference(name, cases, tensors):
    case = cases[name]
    params = case["params"]
    logits = tensors[case["tensors"]["inputs"][0]]
    warper = DynamicTemperatureLogitsWarper(
        params["temperature"], params["min_temperature"], k=params["k"], center=params["sigmoidCenterPoint"]
    )
    out = warper(_ids(torch.arange(0), logits.shape[-1]), logits.clone())
    torch.testing.assert_close(out, tensors[case["tensors"]["output"]], rtol=1e-5, atol=1e-6)


def test_dynamic_temperature_bounds_and_validation():
    scores = torch.zeros(2, 64)
    scores[:, 0] = torch.tensor([12.0, 1.0])  # a confident row and a nearly flat one
    out = DynamicTemperatureLogitsWarper(2.0, 0.5)(torch.zeros(2, 1, dtype=torch.long), scores)
    applied = scores[:, 0] / out[:, 0]
    assert 0.5 < applied[0] < 0.6 and 1.9 < applied[1] < 2.0  # near T_min and near T respectively
    with pytest.raises(ValueError):
        DynamicTemperatureLogitsWarper(0.5, 1.0)
    with pytest.raises(ValueError):
        DynamicTemperatureLogitsWarper(1.0, -0.5)
    # T_min = 0 with a steep sigmoid: a confident row's T_dyn reaches 0 in float32, and is floored, not divided by
    steep = DynamicTemperatureLogitsWarper(1.0, 0.0, k=100.0)(torch.zeros(2, 1, dtype=torch.long), scores.clone())
    assert torch.isfinite(steep).all()
    assert torch.equal(steep.argmax(-1), scores.argmax(-1))


def test_a_minimum_temperature_of_zero_is_dynamic_temperature():
    """``min_temperature`` 0 is a minimum like any other (dynamic temperature down to 0); only a negative one is off."""
    from valle_hf.logits_process import temperature_processor

    zero = temperature_processor(0.8, 0.0)
    assert isinstance(zero, DynamicTemperatureLogitsWarper) and zero.min_temperature == 0.0
    assert _kinds(build_sampler_processors(temperature=0.8, min_temperature=0.0)) == [DynamicTemperatureLogitsWarper]
    assert isinstance(temperature_processor(0.8, -1.0), TemperatureLogitsWarper)


# ----------------------------------------------------------------------------------------------------
# DRY


@pytest.mark.parametrize("breakers", [(), (0,)])
def test_dry_penalises_exactly_repeat_extensions(breakers):
    rng = random.Random(7)
    vocab, multiplier, base, allowed, max_match = 5, 0.8, 1.75, 2, 6
    for _ in range(15):
        alphabet = 2 + len(breakers)
        histories = [[rng.randrange(alphabet) for _ in range(rng.randrange(1, 28))] for _ in range(3)]
        width = max(len(h) for h in histories) + 2
        rows = [[vocab + 3] * (width - len(h)) + h for h in histories]  # left padding ids >= vocab
        processor = DRYLogitsProcessor(multiplier, base, allowed, max_match, sequence_breakers=breakers)
        out = processor(torch.tensor(rows), torch.zeros(3, vocab))
        expected = [dry_penalty_by_definition(h, vocab, multiplier, base, allowed, max_match, breakers)
                    for h in histories]
        torch.testing.assert_close(-out, torch.tensor(expected), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("settings", [
    dict(multiplier=-0.1), dict(multiplier=1.0, base=0.9), dict(multiplier=1.0, allowed_length=0),
    dict(multiplier=1.0, allowed_length=3, max_match_length=2), dict(multiplier=1.0, window=1),
])
def test_dry_settings_out_of_range_are_refused(settings):
    with pytest.raises(ValueError, match="^DRY "):
        DRYLogitsProcessor(**settings)


def test_dry_known_repeat_and_no_self_match():
    vocab = 5
    processor = DRYLogitsProcessor(1.0, base=2.0, allowed_length=2)
    out = processor(torch.tensor([[1, 2, 3, 1, 2, 3, 1, 2]]), torch.zeros(1, vocab))
    assert torch.equal(out, torch.tensor([[0.0, 0.0, 0.0, -8.0, 0.0]]))  # match length 5 -> 2**3
    windowed = DRYLogitsProcessor(1.0, base=2.0, allowed_length=2, window=5)
    out = windowed(torch.tensor([[1, 2, 3, 1, 2, 3, 1, 2]]), torch.zeros(1, vocab))
    assert torch.equal(out, torch.tensor([[0.0, 0.0, 0.0, -1.0, 0.0]]))  # only [1, 2, 3, 1, 2] searched
    # a fresh last token (never seen before) leaves everything alone: the original penalises itself
    out = processor(torch.tensor([[1, 2, 3, 1, 2, 4]]), torch.zeros(1, vocab))
    assert torch.equal(out, torch.zeros(1, vocab))


def test_dry_fixture_history(cases, tensors):
    case = cases["dry"]
    params = case["params"]
    logits, history = (tensors[name] for name in case["tensors"]["inputs"])
    vocab = logits.shape[-1]
    processor = DRYLogitsProcessor(params["factor"], params["base"], params["allowed_length"])
    out = processor(_ids(history, vocab), logits.clone())
    expected = dry_penalty_by_definition(history.tolist(), vocab, params["factor"], params["base"],
                                params["allowed_length"], 50)
    torch.testing.assert_close(logits - out, torch.tensor([expected]), rtol=1e-5, atol=1e-6)


def test_dry_runs_before_temperature_in_the_original_order_and_takes_long_allowed_lengths():
    """The penalty is not scaled by 1/T: (logits - penalty) / T, with the original order's other penalties."""
    vocab, temperature = 5, 0.5
    history = torch.tensor([1, 2, 3, 1, 2, 3, 1, 2])
    logits = torch.linspace(-1.0, 2.0, vocab)[None]
    penalty = -DRYLogitsProcessor(1.0, base=2.0, allowed_length=2)(_ids(history, vocab), torch.zeros(1, vocab))
    chain = build_sampler_processors(temperature=temperature, dry_multiplier=1.0, dry_base=2.0, dry_allowed_length=2)
    torch.testing.assert_close(chain(_ids(history, vocab), logits.clone()), (logits - penalty) / temperature)
    # an allowed length past the original's cap of 50 is its own cap (max(allowed, 50)): matches up to it count
    repeat = torch.tensor([1, 2] * 40)
    long = DRYLogitsProcessor(1.0, base=1.0, allowed_length=60)
    assert long.max_match_length == 60
    assert long(_ids(repeat, vocab), torch.zeros(1, vocab))[0, 1] == -1.0
    breakers = build_sampler_processors(dry_multiplier=1.0, dry_base=2.0, dry_sequence_breakers=[3])
    assert torch.equal(breakers(_ids(history, vocab), torch.zeros(1, vocab)), torch.zeros(1, vocab))


def _dry_rows_step(rng, rows, vocab, breakers, finished):
    """Append one token per row: mostly a copy from ``period`` back (long verbatim repeats), sometimes a random
    token or a breaker; a finished row gets padding (an id >= vocab), as ``generate`` appends to it."""
    for row, (tokens, period) in enumerate(rows):
        if finished[row]:
            tokens.append(vocab + 1)
        elif len(tokens) >= period and tokens[-period] < vocab and rng.random() < 0.8:
            tokens.append(tokens[-period])
        elif breakers and rng.random() < 0.1:
            tokens.append(rng.choice(breakers))
        else:
            tokens.append(rng.randrange(3))


def _count_full_recomputes(processor):
    calls = []
    full = processor._match_lengths
    processor._match_lengths = lambda *args: calls.append(1) or full(*args)
    return calls


@pytest.mark.parametrize("window, max_match", [(None, 4), (None, 50), (7, 4), (5, 6)])
@pytest.mark.parametrize("breakers", [(), (3,)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dry_incremental_steps_equal_full_recompute(window, max_match, breakers, seed):
    rng = random.Random(seed)
    vocab, batch, steps, allowed = 6, 4, 45, 1 + seed % 2
    params = dict(multiplier=0.8, base=1.75, allowed_length=allowed, max_match_length=max_match,
                  sequence_breakers=breakers, window=window)
    # real layout: left padding and text/prompt ids >= vocab (different lengths per row), then the response;
    # a stray in-range id inside the prefix (row 1) must never count as history
    rows = [([vocab + 2] * rng.randrange(3) + [vocab + 5 + rng.randrange(4) for _ in range(rng.randrange(1, 6))]
             + [1, vocab + 3] * (row == 1) + [rng.randrange(3) for _ in range(rng.randrange(4))], rng.randrange(1, 5))
            for row in range(batch)]
    width = max(len(tokens) for tokens, _ in rows)
    rows = [([vocab] * (width - len(tokens)) + tokens, period) for tokens, period in rows]
    finished = [False] * batch
    processor = DRYLogitsProcessor(**params)
    full_recomputes = _count_full_recomputes(processor)
    longest, penalised = 0, 0
    for step in range(steps):
        ids = torch.tensor([tokens for tokens, _ in rows])
        scores = torch.randn(batch, vocab, generator=torch.Generator().manual_seed(seed * 1000 + step))
        out = processor(ids, scores.clone())
        fresh = DRYLogitsProcessor(**params)
        expected = fresh(ids, scores.clone())
        assert torch.equal(processor._lengths, fresh._lengths), f"step {step}"
        assert torch.equal(out, expected), f"step {step}"
        longest = max(longest, int(processor._lengths.max()))
        penalised += int((out != scores).sum())
        if step == steps - 10:
            finished[0] = True  # row 0 stops: padding follows
        _dry_rows_step(rng, rows, vocab, breakers, finished)
    assert len(full_recomputes) == 1, "every call after the first must take the incremental path"
    assert penalised > 0 and longest >= allowed
    cap = max_match if window is None else min(max_match, window - 1)  # n(i) <= i inside a window
    if cap < steps // 2:
        assert longest == cap, "setup: repeats should run past max_match_length (or the window)"


@pytest.mark.parametrize("window", [None, 6])
def test_dry_non_continuing_calls_recompute(window):
    vocab, allowed = 5, 2
    params = dict(multiplier=1.0, base=2.0, allowed_length=allowed, max_match_length=4, window=window)
    gen = torch.Generator().manual_seed(11)
    pattern = torch.tensor([[0, 1, 2, 0, 1], [1, 1, 2, 0, 2], [2, 0, 0, 1, 0]])
    ids = torch.cat([torch.full((3, 2), vocab + 1), pattern.repeat(1, 3)], dim=1)  # prefix, then repeats
    processor = DRYLogitsProcessor(**params)
    full_recomputes = _count_full_recomputes(processor)

    def check(batch_ids, recomputed):
        scores = torch.randn(batch_ids.shape[0], vocab, generator=gen)
        before = len(full_recomputes)
        out = processor(batch_ids, scores.clone())
        fresh = DRYLogitsProcessor(**params)
        assert torch.equal(out, fresh(batch_ids, scores.clone()))
        assert torch.equal(processor._lengths, fresh._lengths)
        assert len(full_recomputes) - before == int(recomputed)
        return out

    for step in range(4):  # a few continuing steps first
        check(ids[:, : ids.shape[1] - 3 + step], recomputed=step == 0)
    order = torch.tensor([2, 0, 1])
    grown = torch.cat([ids[order], torch.tensor([[1], [2], [0]])], dim=1)
    check(grown, recomputed=True)  # beam search reordered the rows
    check(torch.cat([grown, grown[:, -4:-3]], dim=1), recomputed=False)  # ... and continues from there
    check(grown[:2], recomputed=True)  # a different batch
    check(grown, recomputed=True)
    altered = grown.clone()
    altered[:, -2] = (altered[:, -2] + 1) % 3  # same length as a continuation, but an earlier token changed
    check(torch.cat([altered, altered[:, -5:-4]], dim=1), recomputed=True)
    check(ids[:, :9], recomputed=True)  # a new, shorter sequence (a new generate call)
    check(ids[:, :9], recomputed=True)  # the same ids again: not one token longer
    processor.reset()
    check(ids[:, :10], recomputed=True)
    check(ids[:, :11], recomputed=False)


def test_dry_recomputes_a_history_read_with_another_vocabulary():
    """A larger vocabulary makes a prefix id a response token, so the same history holds a longer response: the next
    call recomputes the match lengths rather than extend those of the call that read only the tail after that id."""
    params = dict(multiplier=1.0, base=2.0, allowed_length=1)
    ids = torch.tensor([[1, 2, 1, 2, 5, 1, 2, 1]])
    processor = DRYLogitsProcessor(**params)
    processor(ids, torch.zeros(1, 5))  # 5 is a prefix id: the response is [1, 2, 1]
    grown = torch.cat([ids, torch.tensor([[2]])], dim=1)
    expected = DRYLogitsProcessor(**params)(grown, torch.zeros(1, 6))  # the whole row is the response
    assert expected[0, 5] == -8.0  # [1, 2, 1, 2] then 5: a match of 4
    assert torch.equal(processor(grown, torch.zeros(1, 6)), expected)


# ----------------------------------------------------------------------------------------------------
# mirostat


def test_mirostat_reproduces_reference_mu_updates(cases, tensors):
    case = cases["mirostat"]
    state = case["params"]["initial_state"]
    logits = tensors[case["tensors"]["inputs"][0]]
    vocab = logits.shape[-1]
    warper = MirostatLogitsWarper(state["tau"], state["eta"], initial_mu=state["max_surprise"], zipf_n=state["n"])
    ids = _ids(torch.arange(0), vocab)
    warper(ids, logits.clone())
    torch.testing.assert_close(warper.mu, torch.tensor([state["max_surprise"]]))
    for after in case["states_after_each_step"]:
        ids = torch.cat([ids, torch.tensor([[after["token"]]])], dim=1)
        out = warper(ids, logits.clone())
        torch.testing.assert_close(warper.last_surprise, torch.tensor([after["index_surprise"]]), rtol=1e-5, atol=0)
        torch.testing.assert_close(warper.mu, torch.tensor([after["max_surprise"]]), rtol=1e-5, atol=0)
        assert torch.isfinite(out[0, after["token"]])


def _zipf_logits(rows: int, vocab: int, exponent: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    ranked = -exponent * torch.log(torch.arange(1, vocab + 1, dtype=torch.float32))
    return torch.stack([ranked[torch.randperm(vocab, generator=gen)] for _ in range(rows)])


def test_mirostat_average_surprise_tracks_tau():
    rows, vocab, tau, steps = 3, 1025, 3.0, 250
    logits = _zipf_logits(rows, vocab, 1.1, seed=3)
    true_surprise = -logits.log_softmax(-1) / math.log(2)
    warper = MirostatLogitsWarper(tau, eta=0.2)
    gen = torch.Generator().manual_seed(4)
    ids = vocab + torch.zeros(rows, 3, dtype=torch.long)
    total = torch.zeros(rows)
    for _ in range(steps):
        out = warper(ids, logits.clone())
        token = torch.multinomial(out.softmax(-1), 1, generator=gen)
        total += true_surprise.gather(1, token)[:, 0]
        ids = torch.cat([ids, token], dim=1)
    assert torch.all((total / steps - tau).abs() < 0.15), total / steps
    untruncated = (true_surprise * logits.softmax(-1)).sum(-1)  # expected surprise without mirostat
    assert torch.all((untruncated - tau).abs() > 1.0)


def test_mirostat_surprise_of_the_last_vocabulary_token_is_its_own():
    vocab = 8
    logits = torch.arange(vocab, dtype=torch.float32)[None]  # every token its own probability
    warper = MirostatLogitsWarper(2.0, 0.1)
    ids = _ids(torch.arange(0), vocab)
    warper(ids, logits.clone())
    warper(torch.cat([ids, torch.tensor([[vocab - 1]])], dim=1), logits.clone())
    expected = -logits.log_softmax(-1)[0, vocab - 1] / math.log(2.0)
    torch.testing.assert_close(warper.last_surprise, expected[None])


def test_mirostat_keeps_every_token_when_the_top_is_flat():
    """A flat top (Zipf exponent 0) gives no estimate of k: the row keeps all its tokens."""
    vocab, terms = 200, 100
    logits = torch.zeros(1, vocab)
    logits[0, terms + 20 :] = -1.0  # the top 120 tokens tie, the rest are less likely but possible
    out = MirostatLogitsWarper(1.0, 0.1, zipf_terms=terms)(_ids(torch.arange(0), vocab), logits.clone())
    assert torch.equal(out, logits)


def _mirostat_k_by_definition(log_probs: list[float], tau: float, terms: int, n: int | None = None) -> int:
    """Mirostat's k from its definition, in float64: the least-squares Zipf exponent of the top ``terms + 1``
    probabilities, then ``round((eps * 2**mu / (1 - n**-eps)) ** (1/s)) + 1`` with ``mu = 2 tau``, ``n = V`` (the
    ``eps -> 0`` limit ``1 / ln n`` at ``s = 1``)."""
    top = sorted(log_probs, reverse=True)[: terms + 1]
    pairs = [(top[i] - top[i + 1], math.log((i + 2) / (i + 1))) for i in range(len(top) - 1)]
    s = sum(a * b for a, b in pairs) / sum(b * b for _, b in pairs)
    eps, n = s - 1.0, n or len(log_probs)
    ratio = 1.0 / math.log(n) if abs(eps) < 1e-6 else eps / (1.0 - n**-eps)
    raw = (ratio * 2.0 ** (2.0 * tau)) ** (1.0 / s)
    assert abs(raw - math.floor(raw) - 0.5) > 0.1  # far from a rounding tie, so float32 rounds alike
    return min(max(round(raw) + 1, 1), n)


@pytest.mark.parametrize("exponent, tau", [(1.0, 2.0), (1.5, 2.5), (2.0, 3.0)])
def test_mirostat_keeps_the_top_k_its_zipf_estimate_gives(exponent, tau):
    """The first step keeps exactly the k of mirostat's formula (s = 1 takes the formula's limit)."""
    vocab, terms = 40, 100
    logits = _zipf_logits(1, vocab, exponent, seed=7)
    log_probs = logits.double().log_softmax(-1)[0].tolist()
    expected = _mirostat_k_by_definition(log_probs, tau, terms)
    assert 1 < expected < vocab
    out = MirostatLogitsWarper(tau, 0.1, zipf_terms=terms)(_ids(torch.arange(0), vocab), logits.clone())
    kept = torch.isfinite(out[0])
    assert int(kept.sum()) == expected
    assert torch.equal(kept, logits[0] >= logits[0].topk(expected).values[-1])  # the most likely ones


def test_mirostat_fits_its_zipf_exponent_to_the_possible_tokens_only():
    """Tokens an earlier filter made impossible (top-k before mirostat) are no terms of the Zipf fit, in its
    numerator or its denominator: k is that of the possible tokens alone, with n still the scores' width."""
    vocab, terms, tau, possible = 60, 100, 1.0, 6  # few possible tokens: the impossible ones would weigh most
    logits = _zipf_logits(1, vocab, 1.5, seed=7)
    logits[0, logits[0].argsort()[: vocab - possible]] = -math.inf
    log_probs = logits.double().log_softmax(-1)[0]
    expected = _mirostat_k_by_definition(log_probs[torch.isfinite(log_probs)].tolist(), tau, terms, n=vocab)
    assert 1 < expected < possible
    out = MirostatLogitsWarper(tau, 0.1, zipf_terms=terms)(_ids(torch.arange(0), vocab), logits.clone())
    assert int(torch.isfinite(out[0]).sum()) == expected


def test_mirostat_continues_only_when_the_history_grew_by_one_token():
    vocab, tau = 30, 2.0
    logits = _zipf_logits(1, vocab, 1.3, seed=8)
    unlikely = int(logits[0].argmin())  # surprise far above tau: mu moves down
    warper = MirostatLogitsWarper(tau, 0.5)
    ids = _ids(torch.arange(0), vocab)
    warper(ids, logits.clone())
    ids = torch.cat([ids, torch.tensor([[unlikely]])], dim=1)
    warper(ids, logits.clone())
    assert warper.mu.item() < 2 * tau
    warper(ids, logits.clone())  # the same history again: a new sequence, not a step
    assert warper.mu.item() == 2 * tau
    warper(torch.cat([ids, torch.tensor([[unlikely, unlikely]])], dim=1), logits.clone())  # two tokens on
    assert warper.mu.item() == 2 * tau


def test_mirostat_keeps_mu_after_a_token_its_distribution_called_impossible():
    vocab, tau = 30, 2.0
    logits = _zipf_logits(2, vocab, 1.3, seed=9)
    logits[:, 0] = -math.inf  # token 0 filtered away before mirostat (e.g. the padding of a finished row)
    warper = MirostatLogitsWarper(tau, 0.5)
    ids = vocab + torch.zeros(2, 3, dtype=torch.long)
    warper(ids, logits.clone())
    likely = int(logits[1].argmax())
    out = warper(torch.cat([ids, torch.tensor([[0], [likely]])], dim=1), logits.clone())
    assert warper.mu[0].item() == 2 * tau  # kept: no surprise to learn from
    assert math.isfinite(warper.mu[1].item()) and warper.mu[1].item() != 2 * tau
    assert int(torch.isfinite(out[0]).sum()) > 1


def test_mirostat_rows_independent_and_robust():
    vocab = 60  # below the 101 probabilities the estimate normally uses
    logits = _zipf_logits(2, vocab, 1.3, seed=5)
    logits[1, logits[1].argsort()[:30]] = -math.inf  # zeros after an earlier filter
    forced = torch.tensor([[int(logits[0].argmax())], [int(logits[1].argmax())]])
    batched, single = MirostatLogitsWarper(2.0, 0.3), [MirostatLogitsWarper(2.0, 0.3) for _ in range(2)]
    ids = vocab + torch.zeros(2, 2, dtype=torch.long)
    for _ in range(4):
        out = batched(ids, logits.clone())
        for row in range(2):
            alone = single[row](ids[row : row + 1], logits[row : row + 1].clone())
            assert torch.equal(out[row : row + 1], alone)
            assert torch.equal(batched.mu[row : row + 1], single[row].mu)
        ids = torch.cat([ids, forced], dim=1)
    assert not torch.equal(batched.mu, torch.full((2,), 4.0))  # mu moved
    batched(ids[:, :3], logits.clone())  # not a continuation: state resets to 2 * tau
    assert torch.equal(batched.mu, torch.full((2,), 4.0))


# ----------------------------------------------------------------------------------------------------
# builder


def test_builder_greedy_penalties_match_reference(cases, tensors):
    case = cases["sample_ar_greedy_penalties"]
    params = case["params"]
    seq_logits, history = (tensors[name] for name in case["tensors"]["inputs"])
    vocab = seq_logits.shape[-1]
    chain = build_sampler_processors(
        temperature=params["temperature"],
        top_k=params["top_k"],
        top_p=params["top_p"],
        min_p=params["min_p"],
        repetition_penalty=params["repetition_penalty"],
        repetition_penalty_decay=params["repetition_penalty_decay"],
        repetition_penalty_decay_mode="original",
        min_p_keep=MIN_P_MIN_TOKENS_TO_KEEP,
        stop_length_penalty=params["length_penalty"],
        stop_token_id=cases["len_pen"]["params"]["token"],
    )
    scores = chain(_ids(history, vocab), seq_logits[-1:].clone())
    assert torch.equal(scores.argmax(-1), tensors[case["tensors"]["tokens"]])


def _kinds(chain):
    return [type(p) for p in chain]


def test_builder_order_and_omission():
    settings = {
        "temperature": 0.8, "min_temperature": 0.2, "top_k": 40, "top_p": 0.9, "min_p": 0.05,
        "repetition_penalty": 1.3, "stop_length_penalty": 0.5, "stop_token_id": 1024,
        "dry_multiplier": 0.8, "mirostat_tau": 3.0,
    }
    penalties = [VallERepetitionPenaltyLogitsProcessor, StopTokenLengthPenaltyLogitsProcessor, DRYLogitsProcessor]
    assert _kinds(build_sampler_processors(**settings)) == penalties + [
        MinPLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, DynamicTemperatureLogitsWarper, MirostatLogitsWarper,
    ]
    assert _kinds(build_sampler_processors(**settings, order="transformers")) == penalties + [
        DynamicTemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, MinPLogitsWarper, MirostatLogitsWarper,
    ]
    static = build_sampler_processors(temperature=0.7, min_temperature=-1.0, top_k=5)
    assert _kinds(static) == [TopKLogitsWarper, TemperatureLogitsWarper]
    greedy = build_sampler_processors(**{**settings, "temperature": 0.0, "min_temperature": -1.0})
    assert _kinds(greedy) == penalties + [MinPLogitsWarper, TopKLogitsWarper, TopPLogitsWarper]
    assert len(build_sampler_processors()) == 0
    # entropix samples: greedy decoding leaves it out as it does the temperature (it would draw the token instead)
    assert _kinds(build_sampler_processors(temperature=0.0, entropix=True, top_k=5)) == [TopKLogitsWarper]
    # when sampling, it adapts the settings it is given, each as itself
    entropix = build_sampler_processors(temperature=0.8, entropix=True, top_k=40, top_p=0.9, min_p=0.05)
    assert [(p.temperature, p.top_k, p.top_p, p.min_p) for p in entropix] == [(0.8, 40, 0.9, 0.05)]


@pytest.mark.parametrize(
    "bad",
    [
        {"top_k": -1}, {"top_p": 0.0}, {"top_p": 1.5}, {"min_p": -0.1}, {"repetition_penalty": 0.0},
        {"temperature": 0.5, "min_temperature": 0.9}, {"stop_length_penalty": 0.5},
        {"dry_multiplier": -1.0}, {"mirostat_tau": -1.0}, {"order": "hf"},
    ],
)
def test_builder_validation(bad):
    with pytest.raises(ValueError):
        build_sampler_processors(**bad)


def test_sampling_without_a_temperature_samples_at_temperature_1():
    from valle_hf.configuration import VallEGenerationConfig
    from valle_hf.logits_process import sampler_processors

    scores = torch.randn(2, 40, generator=torch.Generator().manual_seed(0))
    ids = torch.zeros(2, 1, dtype=torch.long)
    unset = VallEGenerationConfig(do_sample=True, temperature=None)
    one = VallEGenerationConfig(do_sample=True, temperature=1.0)
    def warped(config):
        return sampler_processors(config)(ids, scores.clone())

    torch.testing.assert_close(warped(unset), warped(one))
    assert not torch.allclose(warped(VallEGenerationConfig(do_sample=True, temperature=0.5)), warped(one))



def test_build_sampler_processors_defaults_are_the_generation_config_defaults():
    """Called directly (without a config), the sampler chain computes what the `VallEGenerationConfig` defaults ask
    for: the same scores with the config's values given explicitly, and with the defaults left out."""
    import inspect

    from valle_hf.configuration import VallEGenerationConfig

    config = VallEGenerationConfig()
    explicit = {name: getattr(config, name) for name in inspect.signature(build_sampler_processors).parameters
                if getattr(config, name, None) is not None}
    assert {"dry_allowed_length", "repetition_penalty_decay", "dry_base", "mirostat_eta"} <= set(explicit)
    active = dict(temperature=0.8, repetition_penalty=1.5, dry_multiplier=1.0, stop_length_penalty=0.5,
                  stop_token_id=31)
    vocab = 32
    history = torch.tensor([[3, 5, 7, 3, 5, 7, 3, 5, 9, 3, 5]])  # repeats, for the penalties and DRY
    scores = torch.randn(1, vocab, generator=torch.Generator().manual_seed(0))
    left_out = build_sampler_processors(**active)(history, scores.clone())
    given = build_sampler_processors(**{**explicit, **active})(history, scores.clone())
    torch.testing.assert_close(left_out, given)


@pytest.mark.parametrize("setting", [dict(temperature=-0.5), dict(temperature=math.nan), dict(top_p=1.5),
                                     dict(min_p=-0.1), dict(repetition_penalty=0.0)])
def test_build_sampler_processors_refuses_settings_out_of_range(setting):
    name = next(iter(setting))
    with pytest.raises(ValueError, match=name):
        build_sampler_processors(**setting)
