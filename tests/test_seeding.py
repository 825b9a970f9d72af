"""Per-row seeds (`generate(..., seeds=...)`, valle_hf.seeding): a seeded row gives exactly what it gives alone, in
every sampled path (AR sampling, mirostat, entropix, beam sampling, returned sequences, NAR sampling, STT), whatever
rows share its batch and however long they run; and seeds are checked."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from conftest import PLAIN_SETTINGS

from valle_hf.errors import VallEValueError
from valle_hf.layout import pad
from valle_hf.seeding import AR_STAGE, RowGenerators, active_generators, multinomial_per_row, seeded, sentence_seeds

SEEDS = [5, 6, 7]
SAMPLED = {
    "ar_and_nar": dict(temperature=1.0, nar_temperature=1.0),
    "mirostat": dict(temperature=1.0, mirostat_tau=3.0, mirostat_eta=0.5, nar_temperature=0.7),
    "entropix": dict(temperature=1.0, entropix=True, top_k=50, top_p=0.9, nar_temperature=0.7),
    "penalties_and_filters": dict(temperature=0.8, repetition_penalty=1.3, top_k=40, top_p=0.9, nar_temperature=1.0),
    "beam_sampling": dict(temperature=1.0, num_beams=2, nar_temperature=1.0),
    "returned_sequences": dict(temperature=1.0, num_return_sequences=2, nar_temperature=1.0),
}


@pytest.fixture(scope="module")
def stopping_model(tiny_model):
    """The tiny reactive model with its stop logit raised so that a sampled row stops after about 10 steps (a step's
    code logits have a log-sum-exp near 9): the rows of a batch end at different steps."""
    model = copy.deepcopy(tiny_model)
    with torch.no_grad():
        model.classifiers[0].bias[model.config.stop_token_id] += 6.5
    return model


@pytest.fixture(scope="module")
def rows(tiny_model):
    """Three rows of different text and prompt lengths."""
    config = tiny_model.config
    generator = torch.Generator().manual_seed(0)
    texts = [torch.randint(3, config.text_vocab_size, (length,), generator=generator) for length in (12, 5, 9)]
    prompts = [torch.randint(0, config.audio_vocab_size, (length, config.num_rvq_levels), generator=generator)
               for length in (40, 20, 30)]
    return texts, prompts


def tts(model, texts, prompts, seeds, **settings):
    ids, mask = pad(texts, 0, side="right")
    codes, codes_mask = pad(prompts, 0, side="right")
    settings = {**PLAIN_SETTINGS, "max_new_tokens": 30, "output_audio": False, "return_dict_in_generate": True,
                **settings}
    return model.generate(input_ids=ids, attention_mask=mask, prompt_codes=codes, prompt_attention_mask=codes_mask,
                          seeds=seeds, **settings)


def outputs(out) -> list[torch.Tensor]:
    return [codes[:length] for codes, length in zip(out.codes, out.lengths, strict=True)]


@pytest.mark.parametrize("setting", SAMPLED)
def test_a_seeded_row_gives_what_it_gives_alone(stopping_model, rows, setting):
    texts, prompts = rows
    settings = SAMPLED[setting]
    batch = tts(stopping_model, texts, prompts, SEEDS, **settings)
    copies = len(batch.codes) // len(texts)
    alone = [outputs(tts(stopping_model, [text], [prompt], [seed], **settings))
             for text, prompt, seed in zip(texts, prompts, SEEDS, strict=True)]
    for row, expected in enumerate(alone):
        for copy_index, codes in enumerate(expected):
            assert torch.equal(outputs(batch)[row * copies + copy_index], codes), (row, copy_index)
    # the rows ended at different steps, so later rows' AR draws did not shift the others' NAR draws
    assert len(set(batch.lengths.tolist())) > 1, batch.lengths
    # another seed for the middle row changes that row only
    other = outputs(tts(stopping_model, texts, prompts, [SEEDS[0], 99, SEEDS[2]], **settings))
    middle = slice(copies, 2 * copies)
    assert all(torch.equal(a, b) for a, b in zip(other[: copies], outputs(batch)[: copies], strict=True))
    assert all(torch.equal(a, b) for a, b in zip(other[2 * copies:], outputs(batch)[2 * copies:], strict=True))
    assert not all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(other[middle], outputs(batch)[middle],
                                                                             strict=True))


def test_seeded_beam_sampling_is_transformers_beam_sampling_drawn_from_the_rows_stream(stopping_model, rows):
    """A seeded row's beam sampling draws its candidates over all beams from its AR stream, exactly as transformers'
    own beam sampling draws them from the global generator: seeded with the stream's seed, an unseeded run of the row
    gives the same beams. (A per-beam seeded draw before it, one token proposed by each beam, gave other beams while
    a row still gave what it gives alone.)"""
    texts, prompts = rows
    settings = dict(temperature=1.0, num_beams=2, nar_temperature=0.0)  # a greedy NAR draws nothing
    for text, prompt, seed in zip(texts, prompts, SEEDS, strict=True):
        seeded = tts(stopping_model, [text], [prompt], [seed], **settings)
        torch.manual_seed(RowGenerators([seed], "cpu").for_stage(AR_STAGE, 1)[0].initial_seed())
        drawn = tts(stopping_model, [text], [prompt], None, **settings)
        assert torch.equal(seeded.sequences, drawn.sequences), seed
        assert torch.equal(seeded.codes, drawn.codes), seed


def test_seeds_do_not_read_the_global_generator_and_keep_the_scores_drawn_from(stopping_model, rows):
    texts, prompts = rows
    runs = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        runs.append(tts(stopping_model, texts, prompts, SEEDS, **SAMPLED["ar_and_nar"], output_scores=True))
    assert all(torch.equal(a, b) for a, b in zip(outputs(runs[0]), outputs(runs[1]), strict=True))
    # `scores` are the distributions the tokens were drawn from (the first step's, given the same input, are those
    # of an unseeded run), not the one-token distributions handed on to transformers' selection
    unseeded = tts(stopping_model, texts, prompts, None, **SAMPLED["ar_and_nar"], output_scores=True)
    assert torch.equal(runs[0].scores[0], unseeded.scores[0])
    assert all(int(torch.isfinite(scores).sum(-1).min()) > 1 for scores in runs[0].scores)


def test_a_seeded_stt_row_gives_what_it_gives_alone(stopping_model, rows):
    _, audios = rows
    codes, mask = pad(audios, 0, side="right")
    settings = dict(task="stt", temperature=1.0, max_new_tokens=12)
    batch = stopping_model.generate(audio_codes=codes, audio_attention_mask=mask, seeds=SEEDS, **settings)
    for row, (audio, seed) in enumerate(zip(audios, SEEDS, strict=True)):
        alone = stopping_model.generate(audio_codes=audio[None], seeds=[seed], **settings)
        assert torch.equal(batch[row], alone[0])


@pytest.mark.parametrize("seeds, message", [
    ([1, 2], "got 2 seeds for 3 rows"), ([1, 2, 3, 4], "got 4 seeds for 3 rows"), ([1, -2, 3], "integers >= 0"),
    ([1, True, 3], "integers >= 0"), ([1, 2.0, 3], "integers >= 0"), ("123", "one integer >= 0 per row"),
    ([], "one integer >= 0 per row"),
])
def test_seeds_are_checked(tiny_model, rows, seeds, message):
    texts, prompts = rows
    with pytest.raises(VallEValueError, match=message):
        tts(tiny_model, texts, prompts, seeds, max_new_tokens=2)


@pytest.mark.parametrize("seeds", [[1], [1, 2]])
def test_stt_seeds_are_checked(tiny_model, rows, seeds):
    """A transcription needs one seed per row too (one seed for every row was taken, its copies drawing in turn)."""
    _, audios = rows
    codes, mask = pad(audios, 0, side="right")
    with pytest.raises(VallEValueError, match=f"got {len(seeds)} seeds for {len(audios)} rows"):
        tiny_model.generate(audio_codes=codes, audio_attention_mask=mask, task="stt", temperature=1.0,
                            max_new_tokens=2, seeds=seeds)


def test_seeds_may_be_a_list_a_tensor_or_a_numpy_array(tiny_model, rows):
    """numpy arrays were refused as "not a list" where tensors were taken."""
    texts, prompts = rows
    seeds = [3, 4, 5][:len(texts)]
    expected = tts(tiny_model, texts, prompts, seeds, max_new_tokens=3, temperature=1.0)
    for given in (torch.tensor(seeds), np.array(seeds)):
        assert torch.equal(tts(tiny_model, texts, prompts, given, max_new_tokens=3, temperature=1.0).codes,
                           expected.codes)


def test_a_texts_sentences_get_consecutive_seeds():
    assert sentence_seeds(41, 3) == [41, 42, 43] and sentence_seeds(0, 0) == []


def test_each_row_and_stage_draws_from_a_stream_of_its_own_that_continues_across_calls(tiny_model):
    """Every (seed, stage) pair of the AR and the NAR levels has its own stream (no stage repeats another's draws, no
    seed another seed's at a neighbouring stage), the same pair gives the same stream in every call, and a stage's
    stream continues from one step to the next rather than starting again."""
    seeds, stages = [0, 1, 2], range(tiny_model.config.num_rvq_levels)

    def first_draws(generators):
        return {(seed, stage): tuple(torch.randint(2**62, (4,), generator=stream).tolist())
                for stage in stages for seed, stream in zip(seeds, generators.for_stage(stage, len(seeds)),
                                                             strict=True)}

    draws = first_draws(RowGenerators(seeds, "cpu"))
    assert len(set(draws.values())) == len(draws)
    assert first_draws(RowGenerators(seeds, "cpu")) == draws
    generators = RowGenerators(seeds, "cpu")
    first, again = (tuple(torch.randint(2**62, (4,), generator=generators.for_stage(0, len(seeds))[0]).tolist())
                    for _ in range(2))
    assert first == draws[(0, 0)] and again != first


@pytest.mark.parametrize("rows", [2, 4])
def test_a_stage_asked_for_rows_that_are_no_copies_of_the_seeded_rows_is_refused(rows):
    """Fewer rows than seeds divided by zero copies, more but no multiple read past the streams: bare errors."""
    with pytest.raises(VallEValueError, match=f"{rows} rows are no copies of the {len(SEEDS)} seeded rows"):
        RowGenerators(SEEDS, "cpu").for_stage(AR_STAGE, rows)


@pytest.mark.parametrize("sizes", [[1, 1], [2, 2]])
def test_blocks_that_do_not_cover_the_rows_exactly_are_refused(sizes):
    """One generator per block, and the blocks must add up to the rows: torch's split said only that sizes differ."""
    probs = torch.full((3, 4), 0.25)
    generators = [torch.Generator().manual_seed(seed) for seed in range(len(sizes))]
    with pytest.raises(VallEValueError, match=re.escape(f"2 generators for blocks {sizes} of 3 rows")):
        multinomial_per_row(probs, generators, sizes)


@pytest.mark.parametrize("replacement", [False, True])
def test_each_block_draws_what_its_generator_draws_alone(replacement):
    """A block's draws are `torch.multinomial` of that block with its own generator, with or without replacement as
    asked (entropix's adaptive branch draws five tokens of fewer), an empty block drawing nothing."""
    probs = torch.tensor([[0.5, 0.5, 0.0], [0.1, 0.2, 0.7], [0.3, 0.3, 0.4]])
    sizes, seeds, samples = [1, 0, 2], [3, 4, 5], 2 if not replacement else 5  # the first row has 2 possible tokens
    drawn = multinomial_per_row(probs, [torch.Generator().manual_seed(seed) for seed in seeds], sizes, samples,
                                replacement)
    expected = [torch.multinomial(block, samples, replacement, generator=torch.Generator().manual_seed(seed))
                for block, seed in zip(probs.split(sizes), seeds, strict=True) if len(block)]
    assert torch.equal(drawn, torch.cat(expected))


def test_the_generators_of_a_call_are_active_inside_it_only():
    """`seeded` sets the running call's generators and restores what was there before, so nothing after a seeded
    call (nor after a nested one) draws from its streams."""
    outer, inner = RowGenerators([1], "cpu"), RowGenerators([2], "cpu")
    assert active_generators() is None
    with seeded(outer):
        with seeded(inner):
            assert active_generators() is inner
        assert active_generators() is outer
        with pytest.raises(RuntimeError, match="boom"), seeded(inner):
            raise RuntimeError("boom")
        assert active_generators() is outer
    assert active_generators() is None
