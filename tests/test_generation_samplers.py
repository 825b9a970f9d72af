"""The samplers through model.generate(): an uncached step-by-step reference loop, seeds, beams, refine-on-stop.

The reference loop rebuilds the AR sequence with `layout.tts_sequence` at every step, runs the model over all of it
(no cache), applies `build_sampler_processors(...)` to the last position's logits and takes the argmax, so any
disagreement with `generate` points at the wiring (kwargs merge, processor list, cache, padding), not the samplers.
"""

from __future__ import annotations

import pytest
import torch
from conftest import PLAIN_SETTINGS

from valle_hf.layout import pad, tts_sequence
from valle_hf.logits_process import MIN_P_MIN_TOKENS_TO_KEEP, build_sampler_processors

MAX_NEW_TOKENS = 40
# Changes the fixture model's greedy output (the repetition penalty avoids its repeat of code 549 at step 13) and
# still stops early (the negative length penalty raises the stop logit as the response grows).
PENALTIES = dict(repetition_penalty=1.5, repetition_penalty_decay=0.5, stop_length_penalty=-0.06)


@pytest.fixture(scope="module")
def case(fixtures):
    if "tts_e2e_greedy" not in fixtures.cases:
        pytest.skip("fixture set has no tts_e2e_greedy case")
    case = fixtures.cases["tts_e2e_greedy"]
    return fixtures.case_tensor(case, "text"), fixtures.case_tensor(case, "prom")


def _generate(model, texts, prompts, **kwargs):
    """Level 0 only (no NAR, no audio) for a list of rows; returns the `VallEGenerateOutput`."""
    ids, mask = pad(texts, 0, side="right")
    codes, codes_mask = pad(prompts, 0, side="right")
    kwargs = {**PLAIN_SETTINGS, "max_new_tokens": MAX_NEW_TOKENS, "max_levels": 0, "output_audio": False,
              "return_dict_in_generate": True, **kwargs}
    return model.generate(input_ids=ids, attention_mask=mask, prompt_codes=codes, prompt_attention_mask=codes_mask,
                          **kwargs)


def _tokens(out, row=0) -> list[int]:
    return out.codes[row, : out.lengths[row], 0].tolist()


def _greedy_tokens(model, text, prompt, **kwargs) -> tuple[list[int], bool]:
    out = _generate(model, [text], [prompt], temperature=0.0, **kwargs)
    return _tokens(out), bool(out.stopped[0])


@torch.no_grad()
def stepwise_greedy(model, text, prompt, max_new_tokens=MAX_NEW_TOKENS, prompt_prefix=False, **sampler_kwargs):
    """Greedy AR decoding without a cache: full forward per step, the builder's processors, argmax, stop token."""
    config = model.config
    processors = build_sampler_processors(temperature=0.0, stop_token_id=config.stop_token_id, **sampler_kwargs)
    prefix = prompt[:, 0] if prompt_prefix else prompt.new_zeros(0)
    response = prefix
    for _ in range(max_new_tokens):
        ids = tts_sequence(config, text, 0, 0 if prompt_prefix else len(prompt), response)[None]
        logits = model(input_ids=ids, prompt_codes=prompt[None], task="tts", level=0).logits[:, -1]
        token = processors(ids, logits).argmax(dim=-1)
        if token.item() == config.stop_token_id:
            return response[len(prefix):].tolist(), True
        response = torch.cat([response, token])
    return response[len(prefix):].tolist(), False


@torch.no_grad()
def response_log_prob(model, text, prompt, tokens, stopped) -> float:
    """Total log-probability of a level-0 response (plus the stop token when it stopped), teacher-forced."""
    response = torch.tensor(tokens + ([model.config.stop_token_id] if stopped else []), dtype=torch.long)
    ids = tts_sequence(model.config, text, 0, len(prompt), response)[None]
    logits = model(input_ids=ids, prompt_codes=prompt[None], task="tts", level=0).logits[0]
    log_probs = logits[-len(response) - 1 : -1].float().log_softmax(-1)
    return log_probs.gather(1, response[:, None]).sum().item()


# ---------------------------------------------------------------------------------------------- greedy + penalties
def test_greedy_penalties_match_uncached_stepwise_loop(fixture_model, case):
    text, prompt = case
    plain = _greedy_tokens(fixture_model, text, prompt)
    expected = stepwise_greedy(fixture_model, text, prompt, **PENALTIES)
    assert expected != plain, "the penalties must change the greedy output, or this test proves nothing"
    assert expected[1], "the reference run should stop inside max_new_tokens"
    assert _greedy_tokens(fixture_model, text, prompt, **PENALTIES) == expected


def test_repetition_penalty_decay_and_length_penalty_each_matter(fixture_model, case):
    text, prompt = case
    base = dict(repetition_penalty=1.5)
    penalised = _greedy_tokens(fixture_model, text, prompt, **base)
    # decay < 0 lowers far occurrences' factor below 1 (clamped: no penalty), so code 549 repeats as in plain greedy
    decayed = _greedy_tokens(fixture_model, text, prompt, repetition_penalty_decay=-0.5, **base)
    assert decayed == _greedy_tokens(fixture_model, text, prompt) != penalised
    assert decayed == stepwise_greedy(fixture_model, text, prompt, repetition_penalty_decay=-0.5, **base)
    # a positive length penalty delays the stop token, a negative one brings it forward
    plain, stopped = _greedy_tokens(fixture_model, text, prompt)
    longer, longer_stopped = _greedy_tokens(fixture_model, text, prompt, stop_length_penalty=0.5)
    shorter, shorter_stopped = _greedy_tokens(fixture_model, text, prompt, stop_length_penalty=-0.5)
    assert stopped and shorter_stopped and len(shorter) < len(plain) < len(longer)
    assert longer[: len(plain)] == plain and shorter == plain[: len(shorter)]


def test_batch_with_penalties_equals_rows_alone(fixture_model, case):
    text, prompt = case
    texts, prompts = [text, text[3:15]], [prompt, prompt[10:50]]
    settings = dict(temperature=0.0, dry_multiplier=0.8, **PENALTIES)
    batch = _generate(fixture_model, texts, prompts, **settings)
    rows = [_tokens(_generate(fixture_model, [t], [p], **settings)) for t, p in zip(texts, prompts, strict=True)]
    assert rows[0] != rows[1]
    assert [_tokens(batch, 0), _tokens(batch, 1)] == rows


# ---------------------------------------------------------------------------------------------- DRY
def test_dry_breaks_a_verbatim_repeat_and_matches_the_loop(tiny_model):
    """The tiny random model continues its own chain of codes; a prompt prefix `a b c d a b` invites `c d ...`."""
    config = tiny_model.config
    generator = torch.Generator().manual_seed(0)
    text = torch.randint(3, config.text_vocab_size, (7,), generator=generator)
    frames = torch.randint(0, config.audio_vocab_size, (6, config.num_rvq_levels), generator=generator)
    chain = _greedy_tokens(tiny_model, text, frames, max_new_tokens=4)[0]
    assert len(chain) == 4
    prompt = frames.clone()
    prompt[:, 0] = torch.tensor(chain + chain[:2])
    kwargs = dict(input_prompt_prefix=True, max_new_tokens=8)
    plain = _greedy_tokens(tiny_model, text, prompt, **kwargs)[0]
    assert plain[:2] == chain[2:4], "setup: without DRY the model should extend the verbatim repeat"
    dry = dict(dry_multiplier=2.0, dry_base=1.75, dry_allowed_length=2)
    with_dry = _greedy_tokens(tiny_model, text, prompt, **kwargs, **dry)[0]
    assert with_dry[0] != chain[2]
    assert with_dry == stepwise_greedy(tiny_model, text, prompt, max_new_tokens=8, prompt_prefix=True, **dry)[0]
    # allowed_length 3: the repeat may grow to 3 tokens (`a b c`), then the next token `d` is penalised
    allowed_3 = _greedy_tokens(tiny_model, text, prompt, **kwargs, dry_multiplier=2.0, dry_allowed_length=3)[0]
    assert allowed_3[0] == plain[0] and allowed_3[1] != plain[1]


# ---------------------------------------------------------------------------------------------- sampling
ALL_SAMPLERS = dict(
    do_sample=True, temperature=0.9, min_temperature=0.3, top_k=200, top_p=0.95, min_p=0.02, mirostat_tau=4.0,
    mirostat_eta=0.2, dry_multiplier=0.5, dry_base=1.5, dry_allowed_length=2, **PENALTIES,
)


def test_sampling_with_every_sampler_is_reproducible_with_a_seed(fixture_model, case):
    text, prompt = case
    texts, prompts = [text, text[:12]], [prompt, prompt[:30]]
    runs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        out = _generate(fixture_model, texts, prompts, max_new_tokens=20, **ALL_SAMPLERS)
        runs.append([_tokens(out, 0), _tokens(out, 1)])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def _first_scores(model, text, prompt, **kwargs) -> torch.Tensor:
    """The processed scores of the first step (the same input for every setting; no sampling before it)."""
    torch.manual_seed(0)
    out = _generate(model, [text], [prompt], max_new_tokens=1, output_scores=True, **kwargs)
    return out.scores[0][0]


def test_each_sampler_kwarg_reaches_the_processors(fixture_model, case):
    text, prompt = case
    scores = lambda **kwargs: _first_scores(fixture_model, text, prompt, do_sample=True, **kwargs)  # noqa: E731
    plain = scores(temperature=1.0)
    kept = lambda s: int(torch.isfinite(s).sum())  # noqa: E731
    vocab = plain.shape[-1]
    assert kept(plain) == vocab
    assert torch.allclose(scores(temperature=0.5), plain / 0.5)
    # dynamic temperature replaces the static one
    dynamic = scores(temperature=1.0, min_temperature=0.2)
    assert not torch.allclose(dynamic, plain) and kept(dynamic) == vocab
    assert torch.equal(scores(temperature=1.0, min_temperature=1.0), plain)  # T_min == T: off
    assert kept(scores(top_k=10)) == 10
    assert MIN_P_MIN_TOKENS_TO_KEEP <= kept(scores(min_p=0.5)) < vocab
    assert 1 <= kept(scores(top_p=0.5)) < vocab
    assert 1 <= kept(scores(mirostat_tau=2.0)) < vocab
    # sampler_order: "original" filters the untempered distribution, "transformers" the tempered one
    original = scores(temperature=2.0, top_p=0.5, sampler_order="original")
    hf_order = scores(temperature=2.0, top_p=0.5, sampler_order="transformers")
    assert kept(hf_order) > kept(original)
    assert torch.equal(scores(temperature=1.0, top_p=0.5, sampler_order="transformers"), scores(top_p=0.5))
    with pytest.raises(ValueError, match="order"):
        scores(sampler_order="sideways")


def test_mirostat_sampling_is_reproducible_and_truncates(fixture_model, case):
    text, prompt = case
    runs = []
    for tau in (3.0, 3.0, 0.0):
        torch.manual_seed(11)
        out = _generate(fixture_model, [text], [prompt], max_new_tokens=15, do_sample=True, mirostat_tau=tau,
                        output_scores=True)
        runs.append(_tokens(out))
        if tau:
            assert all(int(torch.isfinite(s).sum()) < s.shape[-1] for s in out.scores)
    assert runs[0] == runs[1] != runs[2]


def test_greedy_ignores_the_sampling_only_settings(fixture_model, case):
    text, prompt = case
    expected = _greedy_tokens(fixture_model, text, prompt, **PENALTIES)
    noisy = dict(top_k=3, top_p=0.3, min_p=0.2, min_temperature=0.1, mirostat_tau=2.0, sampler_order="transformers")
    assert _greedy_tokens(fixture_model, text, prompt, **PENALTIES, **noisy) == expected
    out = _generate(fixture_model, [text], [prompt], do_sample=False, temperature=0.7, **PENALTIES)
    assert _tokens(out) == expected[0]


# ---------------------------------------------------------------------------------------------- beam search
def test_beam_search_returns_the_best_beam(fixture_model, case):
    """Fixed length (stop suppressed), so the beam objective is the total log-probability we compare."""
    text, prompt = case
    texts, prompts = [text, text[3:15]], [prompt, prompt[10:50]]
    length = 12
    fixed = dict(max_new_tokens=length, min_new_tokens=length, temperature=0.0)
    greedy = _generate(fixture_model, texts, prompts, **fixed)
    beam = _generate(fixture_model, texts, prompts, num_beams=3, length_penalty=0.0, early_stopping=True,
                     output_scores=True, **fixed)
    assert beam.sequences.shape[0] == beam.codes.shape[0] == 2
    assert beam.lengths.tolist() == [length, length]
    for row, (t, p) in enumerate(zip(texts, prompts, strict=True)):
        beam_log_prob = response_log_prob(fixture_model, t, p, _tokens(beam, row), stopped=False)
        greedy_log_prob = response_log_prob(fixture_model, t, p, _tokens(greedy, row), stopped=False)
        assert beam_log_prob >= greedy_log_prob - 1e-4
        # the beam's own score (no length normalisation) is that log-probability: cache and prompt_codes were
        # reordered / expanded consistently
        assert beam.sequences_scores[row].item() == pytest.approx(beam_log_prob, abs=1e-3)


def test_beam_search_with_stops_penalties_and_several_returned_sequences(fixture_model, case):
    text, prompt = case
    texts, prompts = [text, text[3:15]], [prompt, prompt[10:50]]
    settings = dict(temperature=0.0, num_beams=3, length_penalty=0.0, max_new_tokens=30, output_scores=True,
                    **PENALTIES)
    best = _generate(fixture_model, texts, prompts, **settings)
    assert best.codes.shape[0] == 2
    both = _generate(fixture_model, texts, prompts, num_return_sequences=2, **settings)
    assert both.sequences.shape[0] == both.codes.shape[0] == both.lengths.shape[0] == 4
    # row r's n-th sequence is at r * 2 + n; the first one is the best beam
    assert [_tokens(both, 0), _tokens(both, 2)] == [_tokens(best, 0), _tokens(best, 1)]
    assert _tokens(both, 0) != _tokens(both, 1)
    assert both.sequences_scores[0] >= both.sequences_scores[1]
    stop = fixture_model.config.stop_token_id
    assert all(stop not in _tokens(both, row) for row in range(4))


# ---------------------------------------------------------------------------------------------- refine-on-stop
def test_refine_on_stop_reproduces_a_plain_greedy_run(fixture_model, case):
    text, prompt = case
    plain = _greedy_tokens(fixture_model, text, prompt)
    assert plain[1]
    assert _greedy_tokens(fixture_model, text, prompt, refine_on_stop=True) == plain


@torch.no_grad()
def _teacher_forced_argmax(model, text, prompt, tokens, stopped) -> list[int]:
    response = torch.tensor(tokens + ([model.config.stop_token_id] if stopped else []), dtype=torch.long)
    ids = tts_sequence(model.config, text, 0, len(prompt), response)[None]
    logits = model(input_ids=ids, prompt_codes=prompt[None], task="tts", level=0).logits[0]
    return logits[-len(response) - 1 : -1].argmax(-1)[: len(tokens)].tolist()


def test_refine_on_stop_is_the_teacher_forced_argmax_without_stop_tokens(fixture_model, case):
    text, prompt = case
    stop = fixture_model.config.stop_token_id
    # with penalties the run differs from the model's own argmax; a positive length penalty even skips the stop
    # the model would have emitted at step 28, so the teacher-forced argmax predicts a stop token there
    for settings in (PENALTIES, dict(stop_length_penalty=0.5)):
        tokens, stopped = _greedy_tokens(fixture_model, text, prompt, **settings)
        argmax = _teacher_forced_argmax(fixture_model, text, prompt, tokens, stopped)
        assert argmax != tokens
        refined = _greedy_tokens(fixture_model, text, prompt, refine_on_stop=True, **settings)
        assert refined == ([t for t in argmax if t != stop], stopped)
    assert stop in argmax  # the second setting exercised the stop-token removal


def test_refine_on_stop_batch_equals_rows_alone(fixture_model, case):
    text, prompt = case
    texts, prompts = [text, text[3:15]], [prompt, prompt[10:50]]
    settings = dict(temperature=0.0, refine_on_stop=True, **PENALTIES)
    batch = _generate(fixture_model, texts, prompts, **settings)
    for row, (t, p) in enumerate(zip(texts, prompts, strict=True)):
        assert _tokens(batch, row) == _tokens(_generate(fixture_model, [t], [p], **settings))
