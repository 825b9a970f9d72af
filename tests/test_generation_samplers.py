"""The samplers through model.generate(): every sampler setting in the scores, an uncached step-by-step reference
loop, seeds, beams, refine-on-stop, NAR sampling.

The reference loop rebuilds the AR sequence with `layout.tts_sequence` at every step, runs the model over all of it
(no cache), applies `build_sampler_processors(...)` to the last position's logits and takes the argmax, so any
disagreement with `generate` points at the wiring (kwargs merge, processor list, cache, padding), not the samplers.

Everything runs on the tiny reactive model of conftest (whose every input matters), made to stop at a known step by
`stop_at`, so no number here depends on a fixture set.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import PLAIN_SETTINGS, dry_penalty_by_definition, stop_at
from transformers import GenerationConfig

from valle_hf.layout import pad, tts_sequence
from valle_hf.logits_process import MIN_P_MIN_TOKENS_TO_KEEP, build_sampler_processors

STOP_STEP = 14  # the plain greedy run of the `case` model emits its stop token at this step
MAX_NEW_TOKENS = 30
PENALTIES = dict(repetition_penalty=1.5, repetition_penalty_decay=0.5, stop_length_penalty=-0.06)
HISTORY_WINDOW = 75  # the original's repetition-penalty window: the last 75 response tokens (1 s of codes)


@pytest.fixture(scope="module")
def case(tiny_model):
    """A copy of the tiny reactive model whose plain greedy run on (text, prompt) stops at STOP_STEP."""
    config = tiny_model.config
    generator = torch.Generator().manual_seed(0)
    text = torch.randint(3, config.text_vocab_size, (12,), generator=generator)
    prompt = torch.randint(0, config.audio_vocab_size, (40, config.num_rvq_levels), generator=generator)
    return stop_at(tiny_model, STOP_STEP, input_ids=text[None], prompt_codes=prompt[None]), text, prompt


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
def test_greedy_penalties_match_uncached_stepwise_loop(case):
    model, text, prompt = case
    plain = _greedy_tokens(model, text, prompt)
    expected = stepwise_greedy(model, text, prompt, **PENALTIES)
    assert expected != plain, "the penalties must change the greedy output, or this test proves nothing"
    assert expected[1], "the reference run should stop inside max_new_tokens"
    assert _greedy_tokens(model, text, prompt, **PENALTIES) == expected


def test_repetition_penalty_decay_and_length_penalty_each_matter(case):
    model, text, prompt = case
    plain, stopped = _greedy_tokens(model, text, prompt)
    assert stopped and len(plain) == STOP_STEP
    base = dict(repetition_penalty=1.05)  # too weak to stop a repeat by itself, unless decay grows it with distance
    penalised = _greedy_tokens(model, text, prompt, **base)
    # the original's decay (penalty * distance ** decay): < 0 spares old occurrences (factors clamped at 1), > 0
    # penalises them more; the default decay fades the penalty with distance (never more than the penalty itself)
    for decay in (-0.5, 1.0):
        legacy = dict(repetition_penalty_decay=decay, repetition_penalty_decay_mode="original", **base)
        decayed = _greedy_tokens(model, text, prompt, **legacy)
        assert decayed == stepwise_greedy(model, text, prompt, **legacy)
    assert decayed != penalised
    faded = dict(repetition_penalty_decay=1.0, **base)
    assert _greedy_tokens(model, text, prompt, **faded) == stepwise_greedy(model, text, prompt, **faded)
    # a positive length penalty delays the stop token, a negative one brings it forward
    longer, _ = _greedy_tokens(model, text, prompt, stop_length_penalty=0.5)
    shorter, shorter_stopped = _greedy_tokens(model, text, prompt, stop_length_penalty=-0.5)
    assert shorter_stopped and len(shorter) < len(plain) < len(longer)
    assert longer[: len(plain)] == plain and shorter == plain[: len(shorter)]


def test_batch_with_penalties_equals_rows_alone(case):
    model, text, prompt = case
    texts, prompts = [text, text[3:15]], [prompt, prompt[10:50]]
    settings = dict(temperature=0.0, dry_multiplier=0.8, **PENALTIES)
    batch = _generate(model, texts, prompts, **settings)
    rows = [_tokens(_generate(model, [t], [p], **settings)) for t, p in zip(texts, prompts, strict=True)]
    assert rows[0] != rows[1]
    assert [_tokens(batch, 0), _tokens(batch, 1)] == rows


# ---------------------------------------------------------------------------------------------- every sampler setting
def _scored_run(model, text, prompt, steps=6, seed=0, **kwargs):
    """`generate` with the raw logits and the processed scores of every step (sampling from `seed`)."""
    torch.manual_seed(seed)
    return _generate(model, [text], [prompt], max_new_tokens=steps, output_scores=True, output_logits=True, **kwargs)


def _steps(out, prefix: list[int]):
    """Per step: (raw logits, processed scores, the response so far) of row 0; `prefix` seeds the response."""
    generated = out.sequences[0, out.sequences.shape[1] - len(out.scores):].tolist()
    return [(logits[0], scores[0], prefix + generated[:step])
            for step, (logits, scores) in enumerate(zip(out.logits, out.scores, strict=True))]


def _penalised(logits: torch.Tensor, divisor: torch.Tensor) -> torch.Tensor:
    """The sign-aware penalty: a positive logit is divided, a negative one multiplied."""
    return torch.where(logits > 0, logits / divisor, logits * divisor)


def _top_p_kept(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """transformers' nucleus: drop the least likely tokens while their total mass stays <= 1 - top_p."""
    order = logits.argsort()
    dropped = logits.softmax(-1)[order].cumsum(-1) <= 1 - top_p
    dropped[-1] = False
    kept = torch.ones_like(logits, dtype=torch.bool)
    kept[order[dropped]] = False
    return kept


def _is_top_set(logits: torch.Tensor, kept: torch.Tensor) -> bool:
    return bool(kept.any()) and (kept.all() or bool(logits[kept].min() >= logits[~kept].max()))


def _entropy(scores: torch.Tensor) -> float:
    log_probs = scores.log_softmax(-1)
    return float(-(log_probs.exp() * torch.where(torch.isfinite(log_probs), log_probs, 0.0)).sum())


def _repeating_prompt(prompt: torch.Tensor) -> torch.Tensor:
    """The prompt with a level 0 full of repeats (a short cycle of codes), to seed a response history."""
    repeated = prompt.clone()
    repeated[:, 0] = prompt[torch.arange(len(prompt)) % 5, 0]
    return repeated


def check_temperature(model, text, prompt):
    for temperature in (2.0, 0.5):
        for logits, scores, _ in _steps(_scored_run(model, text, prompt, do_sample=True, temperature=temperature), []):
            torch.testing.assert_close(scores, logits / temperature)
            hotter = _entropy(scores) > _entropy(logits)
            assert hotter == (temperature > 1)  # a higher temperature flattens, a lower one sharpens


def check_min_temperature(model, text, prompt):
    out = _scored_run(model, text, prompt, steps=8, do_sample=True, temperature=1.5, min_temperature=0.3)
    applied = []
    for logits, scores, _ in _steps(out, []):
        ratio = logits / scores  # the temperature applied: one value per step
        torch.testing.assert_close(ratio, ratio.mean().expand_as(ratio))
        applied.append((float(logits.softmax(-1).max()), float(ratio.mean())))
    assert all(0.3 <= temperature <= 1.5 for _, temperature in applied)
    assert any(temperature < 1.49 for _, temperature in applied)
    applied.sort()
    assert all(a[1] >= b[1] - 1e-6 for a, b in zip(applied, applied[1:], strict=False))  # confident: cooler


def check_top_k(model, text, prompt):
    for logits, scores, _ in _steps(_scored_run(model, text, prompt, do_sample=True, top_k=7), []):
        kept = torch.isfinite(scores)
        assert int(kept.sum()) == 7 and _is_top_set(logits, kept)
        assert torch.equal(scores[kept], logits[kept])


def check_top_p(model, text, prompt):
    for logits, scores, _ in _steps(_scored_run(model, text, prompt, do_sample=True, top_p=0.6), []):
        kept = torch.isfinite(scores)
        assert torch.equal(kept, _top_p_kept(logits, 0.6)) and not kept.all()
        mass = logits.softmax(-1)[kept]
        assert mass.sum() >= 0.6 - 1e-5 and mass.sum() - mass.min() < 0.6 + 1e-5


def check_min_p(model, text, prompt, keep=1):
    settings = dict(do_sample=True, min_p=0.3) | ({"min_p_keep": keep} if keep != 1 else {})
    for logits, scores, _ in _steps(_scored_run(model, text, prompt, **settings), []):
        kept = torch.isfinite(scores)
        probs = logits.softmax(-1)
        above = int((probs >= 0.3 * probs.max()).sum())
        assert int(kept.sum()) == max(above, keep) and _is_top_set(logits, kept)


def check_min_p_keep(model, text, prompt):
    check_min_p(model, text, prompt, keep=MIN_P_MIN_TOKENS_TO_KEEP)  # the original's floor, on request


def _repetition_divisor(history: list[int], vocab: int, penalty: float, decay: float, per_token: bool = False,
                        original_decay: bool = False) -> torch.Tensor:
    """By definition: every occurrence among the last 75 response tokens at distance d multiplies its token's divisor
    by 1 + (penalty - 1) / d**decay (the original's decay: max(1, penalty * d**decay)); per token: the nearest only."""
    divisor, seen = torch.ones(vocab), set()
    recent = history[-HISTORY_WINDOW:]
    for distance, token in enumerate(reversed(recent), start=1):
        if per_token and token in seen:
            continue
        seen.add(token)
        factor = max(1.0, penalty * distance**decay) if original_decay else 1 + (penalty - 1) / distance**decay
        divisor[token] *= factor
    return divisor


def check_repetition_penalty(model, text, prompt, **options):
    prompt = _repeating_prompt(prompt)
    settings = dict(do_sample=True, repetition_penalty=2.0, input_prompt_prefix=True, **options)
    decay = options.get("repetition_penalty_decay", 0.0)
    per_token = options.get("repetition_penalty_mode") == "per_token"
    original = options.get("repetition_penalty_decay_mode") == "original"
    for logits, scores, history in _steps(_scored_run(model, text, prompt, **settings), prompt[:, 0].tolist()):
        divisor = _repetition_divisor(history, len(logits), 2.0, decay, per_token, original)
        torch.testing.assert_close(scores, _penalised(logits, divisor))
        assert (divisor > 1).sum() >= 5


def check_repetition_penalty_decay(model, text, prompt):
    check_repetition_penalty(model, text, prompt, repetition_penalty_decay=0.5)


def check_repetition_penalty_mode(model, text, prompt):
    check_repetition_penalty(model, text, prompt, repetition_penalty_mode="per_token")


def check_repetition_penalty_decay_mode(model, text, prompt):
    check_repetition_penalty(model, text, prompt, repetition_penalty_decay=0.5,
                             repetition_penalty_decay_mode="original")


def check_stop_length_penalty(model, text, prompt):
    stop = model.config.stop_token_id
    settings = dict(do_sample=True, stop_length_penalty=0.5, input_prompt_prefix=True)
    for logits, scores, history in _steps(_scored_run(model, text, prompt, **settings), prompt[:, 0].tolist()):
        expected = logits.clone()
        expected[stop] = _penalised(logits[stop], torch.tensor((len(history) + 1) ** 0.5))
        torch.testing.assert_close(scores, expected)
        assert scores[stop] != logits[stop]


def check_dry(model, text, prompt):
    prompt = _repeating_prompt(prompt)
    for dry in (dict(dry_multiplier=2.0), dict(dry_multiplier=0.5, dry_base=3.0, dry_allowed_length=3)):
        settings = {"dry_base": 1.75, "dry_allowed_length": 2, **dry}
        out = _scored_run(model, text, prompt, steps=3, do_sample=True, input_prompt_prefix=True, **settings)
        for step, (logits, scores, history) in enumerate(_steps(out, prompt[:, 0].tolist())):
            penalty = dry_penalty_by_definition(history, len(logits), settings["dry_multiplier"],
                                                settings["dry_base"], settings["dry_allowed_length"], 50)
            assert step or max(penalty) > 0  # the cyclic prompt invites its next code first
            torch.testing.assert_close(logits - scores, torch.tensor(penalty))


def check_dry_sequence_breakers(model, text, prompt):
    """A breaker ends every match: the cyclic prompt's codes as breakers leave nothing for DRY to penalise."""
    prompt = _repeating_prompt(prompt)
    breakers = sorted(set(prompt[:, 0].tolist()))
    settings = dict(do_sample=True, input_prompt_prefix=True, dry_multiplier=2.0)
    plain = _scored_run(model, text, prompt, steps=1, **settings).scores[0][0]
    broken = _scored_run(model, text, prompt, steps=1, dry_sequence_breakers=breakers, **settings).scores[0][0]
    logits = _scored_run(model, text, prompt, steps=1, do_sample=True, input_prompt_prefix=True).scores[0][0]
    assert not torch.equal(plain, logits) and torch.equal(broken, logits)


def check_mirostat_tau(model, text, prompt):
    for logits, scores, _ in _steps(_scored_run(model, text, prompt, do_sample=True, mirostat_tau=3.0), []):
        kept = torch.isfinite(scores)
        assert 1 <= int(kept.sum()) < len(logits) and _is_top_set(logits, kept)


def check_mirostat_eta(model, text, prompt):
    kept = {}
    for eta in (0.0, 1.0):
        out = _scored_run(model, text, prompt, steps=8, do_sample=True, mirostat_tau=3.0, mirostat_eta=eta)
        kept[eta] = [int(torch.isfinite(scores).sum()) for scores in out.scores]
    assert kept[0.0][0] == kept[1.0][0]  # the first step: mu has not moved yet
    assert kept[0.0] != kept[1.0]  # eta moves mu by the surprise of every sampled token


def check_entropix(model, text, prompt):
    """Each step keeps a top set of the logits: one token where entropix decides (confident or adaptive branch), or
    their distribution at a temperature in entropix's [0.5, 1.25], which its branches move away from the run's 1."""
    temperatures = []
    for logits, scores, _ in _steps(_scored_run(model, text, prompt, steps=8, do_sample=True, temperature=1.0,
                                                entropix=True), []):
        kept = torch.isfinite(scores)
        assert _is_top_set(logits, kept)
        torch.testing.assert_close(scores[kept].logsumexp(-1), torch.tensor(0.0))
        if int(kept.sum()) > 1:
            slope = (scores[kept] - scores[kept].mean()) / (logits[kept] - logits[kept].mean())
            temperatures.append(float(1 / slope.median()))
    assert temperatures and all(0.5 - 1e-4 <= t <= 1.25 + 1e-4 and abs(t - 1) > 1e-3 for t in temperatures)


def check_sampler_order(model, text, prompt):
    settings = dict(do_sample=True, temperature=2.0, top_p=0.5)
    for order, filtered in (("original", lambda logits: logits), ("transformers", lambda logits: logits / 2.0)):
        for logits, scores, _ in _steps(_scored_run(model, text, prompt, sampler_order=order, **settings), []):
            kept = torch.isfinite(scores)  # the original filters before the temperature, transformers after it
            assert torch.equal(kept, _top_p_kept(filtered(logits), 0.5))
            torch.testing.assert_close(scores[kept], logits[kept] / 2.0)


def check_do_sample(model, text, prompt):
    greedy = _scored_run(model, text, prompt, do_sample=False, temperature=0.7, steps=8)
    for logits, scores, _ in _steps(greedy, []):
        assert torch.equal(scores, logits)  # no temperature in greedy mode
    tokens = greedy.sequences[0, -8:]
    assert torch.equal(tokens, torch.stack([scores[0].argmax() for scores in greedy.scores]))
    sampled = [_scored_run(model, text, prompt, do_sample=True, steps=8, seed=seed).sequences for seed in (0, 1)]
    assert not torch.equal(sampled[0], sampled[1]) and not torch.equal(sampled[0][0, -8:], tokens)


def check_min_new_tokens(model, text, prompt):
    out = _scored_run(model, text, prompt, steps=6, do_sample=True, min_new_tokens=4)
    stop = model.config.stop_token_id
    assert [bool(torch.isinf(scores[0, stop])) for scores in out.scores] == [True] * 4 + [False] * 2


def check_max_new_tokens(model, text, prompt):
    for steps in (3, 7):
        out = _generate(model, [text], [prompt], max_new_tokens=steps, min_new_tokens=steps)
        assert out.lengths.tolist() == [steps]


# Each sampler setting of `generate` (GenerationConfig fields and the original's own) and the check that it reaches
# the processed scores or the tokens in the way it means. test_generation.py checks that every setting has one.
SAMPLER_SETTING_CHECKS = {
    "temperature": check_temperature,
    "min_temperature": check_min_temperature,
    "top_k": check_top_k,
    "top_p": check_top_p,
    "min_p": check_min_p,
    "repetition_penalty": check_repetition_penalty,
    "repetition_penalty_decay": check_repetition_penalty_decay,
    "repetition_penalty_mode": check_repetition_penalty_mode,
    "repetition_penalty_decay_mode": check_repetition_penalty_decay_mode,
    "min_p_keep": check_min_p_keep,
    "dry_sequence_breakers": check_dry_sequence_breakers,
    "stop_length_penalty": check_stop_length_penalty,
    "dry_multiplier": check_dry,
    "dry_base": check_dry,
    "dry_allowed_length": check_dry,
    "mirostat_tau": check_mirostat_tau,
    "mirostat_eta": check_mirostat_eta,
    "entropix": check_entropix,
    "sampler_order": check_sampler_order,
    "do_sample": check_do_sample,
    "min_new_tokens": check_min_new_tokens,
    "max_new_tokens": check_max_new_tokens,
}


@pytest.mark.parametrize("check", sorted(set(SAMPLER_SETTING_CHECKS.values()), key=lambda check: check.__name__),
                         ids=lambda check: check.__name__.removeprefix("check_"))
def test_each_sampler_setting_reaches_the_scores(tiny_model, case, check):
    _, text, prompt = case
    check(tiny_model, text, prompt)


def test_sampler_settings_are_validated(tiny_model, case):
    _, text, prompt = case
    with pytest.raises(ValueError, match="order"):
        _scored_run(tiny_model, text, prompt, do_sample=True, sampler_order="sideways")


def test_dry_matches_the_uncached_loop(case):
    """Over several cached steps (the processor's incremental state), DRY picks what the uncached loop picks."""
    model, text, prompt = case
    prompt = _repeating_prompt(prompt)
    dry = dict(dry_multiplier=2.0, dry_base=1.75, dry_allowed_length=2)
    kwargs = dict(input_prompt_prefix=True, max_new_tokens=10)
    with_dry = _greedy_tokens(model, text, prompt, **kwargs, **dry)
    assert with_dry != _greedy_tokens(model, text, prompt, **kwargs), "setup: DRY should change the greedy run"
    assert with_dry == stepwise_greedy(model, text, prompt, max_new_tokens=10, prompt_prefix=True, **dry)


# ---------------------------------------------------------------------------------------------- sampling
ALL_SAMPLERS = dict(
    do_sample=True, temperature=0.9, min_temperature=0.3, top_k=200, top_p=0.95, min_p=0.02, mirostat_tau=4.0,
    mirostat_eta=0.2, dry_multiplier=0.5, dry_base=1.5, dry_allowed_length=2, **PENALTIES,
)


def test_sampling_with_every_sampler_is_reproducible_with_a_seed(case):
    model, text, prompt = case
    texts, prompts = [text, text[:12]], [prompt, prompt[:30]]
    runs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        out = _generate(model, texts, prompts, max_new_tokens=20, **ALL_SAMPLERS)
        runs.append([_tokens(out, 0), _tokens(out, 1)])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_mirostat_sampling_is_reproducible_and_truncates(case):
    model, text, prompt = case
    runs = []
    for tau in (3.0, 3.0, 0.0):
        torch.manual_seed(11)
        out = _generate(model, [text], [prompt], max_new_tokens=15, do_sample=True, mirostat_tau=tau,
                        output_scores=True)
        runs.append(_tokens(out))
        if tau:
            assert all(int(torch.isfinite(s).sum()) < s.shape[-1] for s in out.scores)
    assert runs[0] == runs[1] != runs[2]


def test_greedy_ignores_the_sampling_only_settings(case):
    model, text, prompt = case
    expected = _greedy_tokens(model, text, prompt, **PENALTIES)
    noisy = dict(top_k=3, top_p=0.3, min_p=0.2, min_temperature=0.1, mirostat_tau=2.0, sampler_order="transformers")
    assert _greedy_tokens(model, text, prompt, **PENALTIES, **noisy) == expected
    out = _generate(model, [text], [prompt], do_sample=False, temperature=0.7, **PENALTIES)
    assert _tokens(out) == expected[0]


def test_a_temperature_given_alone_samples_where_the_config_decodes_greedily(case, monkeypatch):
    """A config saved greedy (do_sample False) and `generate(temperature=1.0)`: transformers would keep do_sample
    and decode greedily whatever the seed, without a word; as in the original, the temperature says to sample."""
    model, text, prompt = case
    monkeypatch.setattr(model.generation_config, "do_sample", False)
    greedy = _tokens(_generate(model, [text], [prompt], max_new_tokens=STOP_STEP, temperature=0.0))
    takes = [_tokens(_generate(model, [text], [prompt], max_new_tokens=STOP_STEP, temperature=1.0, seeds=[seed]))
             for seed in (1, 2)]
    assert takes[0] != takes[1] and greedy not in takes
    passed = GenerationConfig(temperature=1.0)  # transformers' own: its do_sample stays None
    ids, codes = text[None], prompt[None]
    takes = [_tokens(model.generate(input_ids=ids, prompt_codes=codes, generation_config=passed, seeds=[seed],
                                    max_new_tokens=STOP_STEP, max_levels=0, output_audio=False,
                                    return_dict_in_generate=True)) for seed in (1, 2)]
    assert takes[0] != takes[1] and greedy not in takes


# ---------------------------------------------------------------------------------------------- NAR sampling
def test_nar_temperature_samples_each_level_from_the_tempered_distribution(tiny_model, case):
    """`nar_temperature` reaches the NAR: 0 is the argmax, > 0 samples (seeded), and the temperature shapes the
    distribution: the hotter, the less often a sample is the argmax of the same input (level 1: its input, level 0,
    comes from the greedy AR and is the same in every run)."""
    _, text, prompt = case
    frames = 48

    def run(seed, **kwargs):
        torch.manual_seed(seed)
        settings = {**PLAIN_SETTINGS, "temperature": 0.0, "max_new_tokens": frames, "min_new_tokens": frames}
        return tiny_model.generate(input_ids=text[None], prompt_codes=prompt[None], **settings, output_audio=False,
                                   return_dict_in_generate=True, **kwargs).codes[0]

    greedy = run(0, nar_temperature=0.0)
    sampled = {(seed, temperature): run(seed, nar_temperature=temperature)
               for seed in (1, 2) for temperature in (1e-4, 0.5, 1.0, 4.0)}
    assert all(torch.equal(codes[:, 0], greedy[:, 0]) for codes in sampled.values())  # the AR stays greedy
    assert torch.equal(sampled[1, 1e-4], greedy)  # cold: the argmax
    assert torch.equal(run(1, nar_temperature=1.0), sampled[1, 1.0])  # seeded
    assert not torch.equal(sampled[1, 1.0][:, 1:], sampled[2, 1.0][:, 1:])
    assert not torch.equal(sampled[1, 1.0][:, 1:], greedy[:, 1:])
    agreement = [float((sampled[1, temperature][:, 1] == greedy[:, 1]).float().mean()) for temperature in (0.5, 4.0)]
    assert agreement[0] > agreement[1] + 0.2, agreement
    assert not torch.equal(sampled[1, 0.5], sampled[1, 1.0]) and not torch.equal(sampled[1, 1.0], sampled[1, 4.0])


def test_nar_min_temperature_samples_each_frame_at_its_dynamic_temperature():
    """`nar_min_temperature` >= 0 gives each NAR frame the dynamic temperature of the AR's `min_temperature`:
    T - (T - T_min) / (1 + exp(-10 (p_max - 0.5))), p_max the frame's top probability (computed here from that
    formula); below 0, or equal to the temperature, every frame samples at the temperature itself."""
    from valle_hf.generation import VallEGenerationMixin

    frames, vocab, temperature, floor = 400, 16, 1.5, 0.1
    spread = torch.linspace(0.1, 8.0, frames)[:, None]  # from unsure frames to confident ones
    logits = torch.randn(frames, vocab, generator=torch.Generator().manual_seed(0)) * spread
    p_max = logits.softmax(-1).max(-1).values
    dynamic = temperature - (temperature - floor) / (1 + torch.exp(-10 * (p_max - 0.5)))

    def draw(min_temperature):
        torch.manual_seed(3)
        return VallEGenerationMixin._sample_frames(logits, temperature, 1, [frames], min_temperature)

    def expected(divisor):
        torch.manual_seed(3)
        return torch.multinomial(torch.softmax(logits / divisor, dim=-1), 1).squeeze(-1)

    assert torch.equal(draw(floor), expected(dynamic[:, None]))
    assert torch.equal(draw(-1.0), expected(temperature)) and torch.equal(draw(temperature), expected(temperature))
    assert not torch.equal(draw(floor), draw(-1.0))


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_nar_min_temperature_reaches_the_nar_sampling(tiny_model, case, monkeypatch, streamed):
    """Both NAR paths (a whole call, a streamed one) sample with `nar_min_temperature`, and the AR never does."""
    from valle_hf.generation import VallEGenerationMixin
    from valle_hf.streaming import AudioStreamer

    _, text, prompt = case
    sample_frames, seen = VallEGenerationMixin._sample_frames, []

    def spy(logits, temperature, level, frames_per_row, min_temperature=-1.0):
        seen.append((temperature, min_temperature))
        return sample_frames(logits, temperature, level, frames_per_row, min_temperature)

    class Discard(AudioStreamer):
        def put(self, chunk):
            pass

        def end(self):
            pass

    monkeypatch.setattr(VallEGenerationMixin, "_sample_frames", staticmethod(spy))
    settings = {**PLAIN_SETTINGS, "temperature": 0.0, "max_new_tokens": 6, "min_new_tokens": 6, "max_levels": 2,
                "nar_temperature": 0.9, "nar_min_temperature": 0.2}
    tiny_model.generate(input_ids=text[None], prompt_codes=prompt[None], output_audio=streamed,
                        audio_streamer=Discard(0.05) if streamed else None, **settings)
    assert seen and set(seen) == {(0.9, 0.2)}
    with pytest.raises(ValueError, match=r"^nar_min_temperature=1.5 is not allowed: it must be at most "
                                         r"nar_temperature \(0.9\)"):
        tiny_model.generate(input_ids=text[None], prompt_codes=prompt[None], **{**settings, "nar_min_temperature": 1.5})


# ---------------------------------------------------------------------------------------------- beam search
def test_beam_search_returns_the_best_beam(case):
    """Fixed length (stop suppressed), so the beam objective is the total log-probability we compare."""
    model, text, prompt = case
    texts, prompts = [text, text[3:15]], [prompt, prompt[10:50]]
    length = 12
    fixed = dict(max_new_tokens=length, min_new_tokens=length, temperature=0.0)
    greedy = _generate(model, texts, prompts, **fixed)
    beam = _generate(model, texts, prompts, num_beams=3, length_penalty=0.0, early_stopping=True,
                     output_scores=True, **fixed)
    assert beam.sequences.shape[0] == beam.codes.shape[0] == 2
    assert beam.lengths.tolist() == [length, length]
    for row, (t, p) in enumerate(zip(texts, prompts, strict=True)):
        beam_log_prob = response_log_prob(model, t, p, _tokens(beam, row), stopped=False)
        greedy_log_prob = response_log_prob(model, t, p, _tokens(greedy, row), stopped=False)
        assert beam_log_prob >= greedy_log_prob - 1e-4
        # the beam's own score (no length normalisation) is that log-probability: cache and prompt_codes were
        # reordered / expanded consistently
        assert beam.sequences_scores[row].item() == pytest.approx(beam_log_prob, abs=1e-3)


def test_beam_search_with_stops_penalties_and_several_returned_sequences(case):
    model, text, prompt = case
    texts, prompts = [text, text[3:15]], [prompt, prompt[10:50]]
    settings = dict(temperature=0.0, num_beams=3, length_penalty=0.0, max_new_tokens=30, output_scores=True,
                    **PENALTIES)
    best = _generate(model, texts, prompts, **settings)
    assert best.codes.shape[0] == 2
    both = _generate(model, texts, prompts, num_return_sequences=2, **settings)
    assert both.sequences.shape[0] == both.codes.shape[0] == both.lengths.shape[0] == 4
    # row r's n-th sequence is at r * 2 + n; the first one is the best beam
    assert [_tokens(both, 0), _tokens(both, 2)] == [_tokens(best, 0), _tokens(best, 1)]
    assert _tokens(both, 0) != _tokens(both, 1)
    assert both.sequences_scores[0] >= both.sequences_scores[1]
    stop = model.config.stop_token_id
    assert all(stop not in _tokens(both, row) for row in range(4))


# ---------------------------------------------------------------------------------------------- refine-on-stop
def test_refine_on_stop_reproduces_a_plain_greedy_run(case):
    model, text, prompt = case
    plain = _greedy_tokens(model, text, prompt)
    assert plain[1]
    assert _greedy_tokens(model, text, prompt, refine_on_stop=True) == plain


@torch.no_grad()
def _teacher_forced_argmax(model, text, prompt, tokens, stopped) -> list[int]:
    response = torch.tensor(tokens + ([model.config.stop_token_id] if stopped else []), dtype=torch.long)
    ids = tts_sequence(model.config, text, 0, len(prompt), response)[None]
    logits = model(input_ids=ids, prompt_codes=prompt[None], task="tts", level=0).logits[0]
    return logits[-len(response) - 1 : -1].argmax(-1)[: len(tokens)].tolist()


def test_refine_on_stop_is_the_teacher_forced_argmax_without_stop_tokens(case):
    model, text, prompt = case
    stop = model.config.stop_token_id
    # with penalties the run differs from the model's own argmax; a positive length penalty even skips the stop
    # the model would have emitted at STOP_STEP, so the teacher-forced argmax predicts a stop token there
    for settings in (PENALTIES, dict(stop_length_penalty=0.5)):
        tokens, stopped = _greedy_tokens(model, text, prompt, **settings)
        argmax = _teacher_forced_argmax(model, text, prompt, tokens, stopped)
        assert argmax != tokens
        refined = _greedy_tokens(model, text, prompt, refine_on_stop=True, **settings)
        assert refined == ([t for t in argmax if t != stop], stopped)
    assert argmax[STOP_STEP] == stop  # the second setting exercised the stop-token removal


def test_refine_on_stop_batch_equals_rows_alone(case):
    model, text, prompt = case
    texts, prompts = [text, text[3:15]], [prompt, prompt[10:50]]
    settings = dict(temperature=0.0, refine_on_stop=True, **PENALTIES)
    batch = _generate(model, texts, prompts, **settings)
    for row, (t, p) in enumerate(zip(texts, prompts, strict=True)):
        assert _tokens(batch, row) == _tokens(_generate(model, [t], [p], **settings))


@pytest.mark.parametrize("task", ["tts", "stt"])
def test_refine_on_stop_of_several_returned_sequences_equals_rows_alone(case, task):
    """With num_return_sequences each take is refined over its own row's sequence and left padding (the rows' masks
    repeated as the takes are: row by row)."""
    model, text, prompt = case
    settings = dict(temperature=0.0, num_beams=2, num_return_sequences=2, length_penalty=0.0, refine_on_stop=True,
                    max_new_tokens=12, return_dict_in_generate=True, **PENALTIES)
    if task == "stt":
        audios = [prompt, prompt[10:50]]
        codes, mask = pad(audios, 0, side="right")
        batch = model.generate(audio_codes=codes, audio_attention_mask=mask, task="stt", **settings).text_ids
        rows = [model.generate(audio_codes=audio[None], task="stt", **settings).text_ids for audio in audios]
        takes = [[ids.tolist() for ids in row] for row in rows]
        assert [ids.tolist() for ids in batch] == takes[0] + takes[1]
        return
    texts, prompts = [text, text[3:15]], [prompt, prompt[10:50]]
    batch = _generate(model, texts, prompts, **settings)
    for row, (t, p) in enumerate(zip(texts, prompts, strict=True)):
        alone = _generate(model, [t], [p], **settings)
        assert [_tokens(batch, 2 * row + take) for take in range(2)] == [_tokens(alone, take) for take in range(2)]


def test_sampler_settings_cover_every_sampler_of_the_builder():
    """Every keyword of `build_sampler_processors` (bar the stop id `generate` fills in) has a check above."""
    import inspect

    builder = set(inspect.signature(build_sampler_processors).parameters) - {"stop_token_id", "order"}
    assert builder <= set(SAMPLER_SETTING_CHECKS), builder - set(SAMPLER_SETTING_CHECKS)


# ---------------------------------------------------------------------------------------------- STT, refusals, checks
@torch.no_grad()
def test_stt_refine_on_stop_is_the_teacher_forced_argmax(tiny_model):
    """Speech-to-text refines too: after a sampled run, one teacher-forced pass over the final sequence, argmax at
    every generated position, stop ids removed (temperature 1 samples ids the argmax disagrees with)."""
    from valle_hf.layout import stt_sequence

    config = tiny_model.config
    audio = torch.randint(0, config.audio_vocab_size, (30, config.num_rvq_levels),
                          generator=torch.Generator().manual_seed(3))
    settings = dict(audio_codes=audio[None], task="stt", temperature=1.0, repetition_penalty=1.0, max_new_tokens=12,
                    return_dict_in_generate=True)
    torch.manual_seed(1)
    sampled = tiny_model.generate(**settings)
    torch.manual_seed(1)
    refined = tiny_model.generate(**settings, refine_on_stop=True)
    tokens = sampled.text_ids[0]
    assert torch.equal(refined.sequences, sampled.sequences)  # the same run, then refined
    response = torch.cat([torch.tensor([config.text_bos_token_id]), tokens,
                          torch.tensor([config.text_eos_token_id] * bool(sampled.stopped[0]))])
    ids = stt_sequence(config, len(audio), response)[None]
    logits = tiny_model(input_ids=ids, audio_codes=audio[None], task="stt").logits[0]
    argmax = logits[-len(response): -1].argmax(-1)[: len(tokens)]
    expected = argmax[argmax != config.text_eos_token_id]
    assert not torch.equal(argmax, tokens)
    assert torch.equal(refined.text_ids[0], expected)


def test_stt_length_penalty_scales_the_text_stop_logit_by_the_text_so_far(tiny_model):
    """Speech-to-text's length penalty acts on its own stop id (the text's end), at (L + 1) ** factor with L the text
    so far, its begin-of-text id included; the original aimed at the audio stop id 1024, past the text head's 256
    ids (IndexError)."""
    config = tiny_model.config
    audio = torch.randint(0, config.audio_vocab_size, (30, config.num_rvq_levels),
                          generator=torch.Generator().manual_seed(4))
    factor, stop = 0.7, config.text_eos_token_id
    out = tiny_model.generate(audio_codes=audio[None], task="stt", temperature=0.0, repetition_penalty=1.0,
                              stop_length_penalty=factor, max_new_tokens=5, output_scores=True, output_logits=True,
                              return_dict_in_generate=True)
    assert len(out.scores) > 1
    for step, (raw, processed) in enumerate(zip(out.logits, out.scores, strict=True)):
        divisor = (step + 2) ** factor  # the text so far: its begin-of-text id and `step` generated ids
        logit = raw[0, stop].item()
        expected = logit / divisor if logit > 0 else logit * divisor
        assert processed[0, stop].item() == pytest.approx(expected, rel=1e-5)
        others = torch.arange(raw.shape[-1]) != stop
        assert torch.equal(processed[0, others], raw[0, others].to(processed.dtype))


def test_mirostat_with_beam_search_is_refused_in_one_line(case):
    model, text, prompt = case
    with pytest.raises(ValueError, match="mirostat_tau=3.0 is not allowed: it must be 0 with beam search") as error:
        _generate(model, [text], [prompt], do_sample=True, mirostat_tau=3.0, num_beams=2)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("task", ["tts", "stt"])
@pytest.mark.parametrize("settings, rule", [
    (dict(do_sample=True, temperature=0.0, num_return_sequences=2), "it must be 1 with greedy decoding"),
    (dict(do_sample=False, temperature=1.0, num_return_sequences=2), "it must be 1 with greedy decoding"),
    (dict(temperature=0.0, num_beams=2, num_return_sequences=3), r"it must be at most num_beams \(2\)"),
])
def test_more_takes_than_the_decoding_gives_are_refused_in_our_words(case, task, settings, rule):
    """transformers refused num_return_sequences with greedy decoding saying "do_sample != True", to a caller who had
    passed do_sample=True (temperature 0 is greedy here), and not as the package's own error."""
    from valle_hf.errors import VallEValueError

    model, text, prompt = case
    inputs = dict(audio_codes=prompt[None], task="stt") if task == "stt" else dict(input_ids=text[None],
                                                                                      prompt_codes=prompt[None])
    with pytest.raises(VallEValueError, match=rf"^num_return_sequences={settings['num_return_sequences']} is not "
                                             rf"allowed: {rule}") as error:
        model.generate(**inputs, **settings, max_new_tokens=2, max_levels=0, output_audio=False)
    assert "\n" not in str(error.value)
    takes = {**settings, "temperature": 1.0, "do_sample": True} if settings.get("num_beams") is None else {
        **settings, "num_beams": settings["num_return_sequences"]}
    out = model.generate(**inputs, **takes, max_new_tokens=2, max_levels=0, output_audio=False,
                         return_dict_in_generate=True)
    assert len(out.sequences) == settings["num_return_sequences"]


BAD_SETTINGS = [
    ("temperature", math.nan), ("temperature", math.inf), ("temperature", -1.0), ("min_temperature", math.nan),
    ("mirostat_tau", math.nan), ("repetition_penalty", 0.0), ("num_beams", -1), ("layer_skip_entropy_threshold", -1.0),
    ("layer_skip_varentropy_threshold", math.nan), ("nar_temperature", -1.0), ("top_p", 0.0), ("top_k", -3),
    ("min_p_keep", 0), ("dry_allowed_length", 0), ("prefix_silence", math.inf), ("input_prompt_length", -2.0),
    ("repetition_penalty_mode", "sometimes"), ("sampler_order", "random"), ("nar_dtype", "int4"),
    # transformers' own fields, which it takes unchecked: a string failed deep in its loop (beam search's
    # length_penalty at the first finished beam), NaN or a negative count passed without a word
    ("length_penalty", "1"), ("length_penalty", math.nan), ("min_new_tokens", "5"), ("min_new_tokens", -1),
    ("max_time", "5"), ("max_time", -1.0), ("no_repeat_ngram_size", "2"), ("suppress_tokens", [-1]),
    ("begin_suppress_tokens", "5"), ("max_length", "5"), ("min_length", -3),
]


@pytest.mark.parametrize("setting, value", BAD_SETTINGS)
def test_every_setting_is_checked_by_generate(case, setting, value):
    model, text, prompt = case
    with pytest.raises(ValueError, match=f"^{setting}=.* is not allowed: it must be ") as error:
        _generate(model, [text], [prompt], **{setting: value})
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("setting, value", BAD_SETTINGS[:6])
def test_a_saved_generation_config_is_checked_when_loaded(tmp_path, setting, value):
    import json

    from transformers import GenerationConfig

    from valle_hf.configuration import VallEGenerationConfig

    GenerationConfig().save_pretrained(tmp_path)
    path = tmp_path / "generation_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), setting: value}))
    plain = GenerationConfig.from_pretrained(tmp_path)  # what from_pretrained reads, before it becomes ours
    with pytest.raises(ValueError, match=f"{setting}=.* is not allowed"):
        VallEGenerationConfig.from_dict(plain.to_dict())
