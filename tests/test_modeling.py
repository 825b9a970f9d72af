"""Forward-pass parity with the original (fixture cases), save/load, Auto classes, and the tiny models reacting to every
input."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from conftest import case_inputs, forward_cases

from valle_hf.cpu_kernels import backbone_attention, disable_onednn_linears
from valle_hf.errors import VallEValueError
from valle_hf.layout import segment_position_ids, tts_sequence
from valle_hf.modeling import VallEForConditionalGeneration

TOLERANCE = 1e-4


def test_fixture_has_forward_cases(fixtures):
    kinds = {case["kind"] for case in forward_cases(fixtures)}
    assert kinds == {"ar_step", "nar_step", "stt_step"}


def test_forward_matches_original(fixtures, fixture_model):
    """Every stored forward case: position ids, inputs_embeds, hidden states, logits and greedy tokens."""
    for case in forward_cases(fixtures):
        ids, kwargs = case_inputs(fixtures, fixture_model, case)
        ids = ids[None]
        name = case["name"]
        expected_positions = fixtures.case_tensor(case, "position_ids")
        assert torch.equal(segment_position_ids(ids, fixture_model.config)[0], expected_positions), name
        embed_kwargs = {key: kwargs.get(key) for key in ("prompt_codes", "audio_codes")}
        embeds = fixture_model.model.embeddings.embed_pass(ids, kwargs["level"], kwargs.get("task", "tts"),
                                                          embed_kwargs["prompt_codes"], embed_kwargs["audio_codes"])[0]
        if (expected := fixtures.case_tensor(case, "inputs_embeds")) is not None:
            assert (embeds - expected).abs().max() <= TOLERANCE, f"{name}: inputs_embeds differ"
        with torch.no_grad():
            hidden = fixture_model.model(input_ids=ids, **kwargs).last_hidden_state[0]
            logits = fixture_model(input_ids=ids, **kwargs).logits[0]
        if (expected := fixtures.case_tensor(case, "last_hidden_state")) is not None:
            assert (hidden - expected).abs().max() <= TOLERANCE, f"{name}: backbone output differs"
        if (expected := fixtures.case_tensor(case, "logits_full")) is not None:
            assert (logits - expected).abs().max() <= TOLERANCE, f"{name}: full logits differ"
        sampled = fixtures.case_tensor(case, "logits_sampled")
        rows = logits[-len(sampled):]
        assert rows.shape == sampled.shape, name
        assert (rows - sampled).abs().max() <= TOLERANCE, f"{name}: sampled logits differ"
        greedy = fixtures.case_tensor(case, "greedy_token")
        if greedy is None:
            greedy = fixtures.case_tensor(case, "greedy_tokens")
        assert torch.equal(rows.argmax(-1), greedy), f"{name}: greedy tokens differ"


def test_padding_and_batching_do_not_change_logits(fixtures, fixture_model):
    """Left-padded rows of different lengths give the logits each sequence gives alone."""
    case = next(case for case in forward_cases(fixtures) if case["kind"] == "ar_step" and "resp" in case["tensors"])
    ids, kwargs = case_inputs(fixtures, fixture_model, case)
    response_frames = len(fixtures.case_tensor(case, "resp"))
    short = ids[: len(ids) - (response_frames + 1) // 2]  # the same prefix with a shorter response
    from valle_hf.layout import pad

    batch, mask = pad([ids, short], fixture_model.config.pad_token_id)
    prompt = kwargs["prompt_codes"].expand(2, -1, -1)
    with torch.no_grad():
        together = fixture_model(input_ids=batch, attention_mask=mask, prompt_codes=prompt).logits
        alone = fixture_model(input_ids=short[None], prompt_codes=kwargs["prompt_codes"]).logits
    assert (together[1, -len(short):] - alone[0]).abs().max() <= TOLERANCE


def test_a_bad_generation_setting_is_refused_before_anything_is_saved(tmp_path):
    from conftest import reactive_model

    from valle_hf.errors import VallEValueError

    model = reactive_model()
    model.generation_config.temperature = -5.0
    with pytest.raises(VallEValueError, match="temperature=-5.0 is not allowed"):
        model.save_pretrained(tmp_path / "saved")
    assert not (tmp_path / "saved").exists()  # not config.json and the code without weights


def test_save_and_reload_give_identical_logits(tmp_path, fixtures, fixture_model):
    from transformers import AutoConfig, AutoModelForTextToWaveform

    import valle_hf  # noqa: F401  (registers the Auto classes)

    case = forward_cases(fixtures)[0]
    ids, kwargs = case_inputs(fixtures, fixture_model, case)
    # An earlier test's generate may have given this shared model oneDNN's linears, whose float32 rounding differs
    # from F.linear's in the last bit; the reloaded model runs F.linear, so the original must too.
    disable_onednn_linears(fixture_model)
    fixture_model.save_pretrained(tmp_path)
    for loader in (VallEForConditionalGeneration, AutoModelForTextToWaveform):
        reloaded = loader.from_pretrained(tmp_path).eval()
        assert isinstance(reloaded, VallEForConditionalGeneration)
        with torch.no_grad():
            assert torch.equal(reloaded(input_ids=ids[None], **kwargs).logits,
                               fixture_model(input_ids=ids[None], **kwargs).logits)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "valle"


def test_tiny_random_model_builds_and_runs(tiny_model):
    config = tiny_model.config
    ids = tts_sequence(config, torch.tensor([1, 3, 2]), 2, 5, response_frames=4)[None]
    prompt = torch.randint(0, config.audio_vocab_size, (1, 5, config.num_rvq_levels))
    audio = torch.randint(0, config.audio_vocab_size, (1, 4, 2))
    logits = tiny_model(input_ids=ids, prompt_codes=prompt, audio_codes=audio, level=2).logits
    assert logits.shape == (1, ids.shape[1], config.audio_vocab_size)
    assert torch.isfinite(logits).all()


def test_a_new_model_starts_from_the_originals_initialisation():
    """The original's segment tables and separator are unit-normal (torch's default for an embedding), the rest is
    Llama's init (normal at `initializer_range`): a model trained from scratch starts where the original's did."""
    from conftest import tiny_config

    config = tiny_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = VallEForConditionalGeneration(config)
    embeddings = model.model.embeddings
    tables = [embeddings.text, embeddings.level, *embeddings.prompt.levels, *embeddings.response.levels]
    for table in tables:
        assert 0.7 < float(table.weight.std()) < 1.3, table
    assert 0.5 < float(embeddings.separator.std()) < 1.5
    for head in model.classifiers:
        assert float(head.weight.std()) < 3 * config.initializer_range


@pytest.mark.parametrize("level", [0, 1])
@torch.no_grad()
def test_every_text_id_is_embedded_from_the_text_table(tiny_model, level):
    """Text id t is the unified id `text_token_offset + t` for t in 0..text_vocab_size - 1 (the separator follows):
    its embedding is row t of the text table, at the AR level and at a NAR level."""
    config, embeddings = tiny_model.config, tiny_model.model.embeddings
    text = torch.tensor([0, 1, config.text_vocab_size - 1])
    ids = torch.cat([config.text_token_offset + text, torch.tensor([config.separator_token_id])])[None]
    embeds = embeddings.embed_pass(ids, level, "tts", None, None)[0]
    assert torch.equal(embeds[:3], embeddings.text.weight[text])
    assert torch.equal(embeds[3], embeddings.separator)


def test_forward_rejects_bad_arguments(tiny_model):
    ids = tts_sequence(tiny_model.config, torch.tensor([1, 2]), 0, 3, torch.zeros(0, dtype=torch.long))[None]
    with pytest.raises(ValueError, match="task"):
        tiny_model(input_ids=ids, task="asr")
    with pytest.raises(ValueError, match="level"):
        tiny_model(input_ids=ids, level=9)
    with pytest.raises(ValueError, match="placeholders"):
        tiny_model(input_ids=ids, prompt_codes=torch.zeros(1, 2, 8, dtype=torch.long))
    with pytest.raises(VallEValueError, match="labels need the logits of every position: do not pass logits_to_keep"):
        tiny_model(input_ids=ids, labels=torch.full_like(ids, -100), logits_to_keep=1)


@torch.no_grad()
def test_position_ids_are_required_where_the_ids_alone_cannot_give_them(tiny_model):
    """The segment positions are read from the whole sequence: the new ids of a filled cache, or embeddings, would
    restart them at 0 in silence, and the step would see itself at the start of its segment; a cache of one position
    is filled too."""
    from valle_hf.cache import CACHE_FIELD

    ids = tts_sequence(tiny_model.config, torch.tensor([1, 2]), 0, 3, torch.zeros(0, dtype=torch.long))[None]
    for cached in (1, ids.shape[1] - 1):
        cache = getattr(tiny_model(input_ids=ids[:, :cached], use_cache=True), CACHE_FIELD)
        with pytest.raises(VallEValueError, match="position_ids are required with inputs_embeds or a non-empty cache"):
            tiny_model(input_ids=ids[:, cached:], cache=cache, use_cache=True)
    with pytest.raises(VallEValueError, match="position_ids are required"):
        tiny_model(inputs_embeds=torch.zeros(1, ids.shape[1], tiny_model.config.hidden_size))


def test_a_pass_outside_the_models_levels_and_tasks_is_refused(tiny_model):
    """The first level past the model's last, a NAR level for STT, and task indices outside `TASKS` (a negative one
    would pick a task from the end) are refused by name, for the whole batch and per row; the last level runs."""
    from valle_hf.configuration import TASKS

    levels = tiny_model.config.num_rvq_levels
    ids = tts_sequence(tiny_model.config, torch.tensor([1, 2]), 0, 3, torch.zeros(0, dtype=torch.long))[None]
    rows = ids.expand(2, -1)
    refused = [(dict(input_ids=ids, level=levels), f"level must be 0..{levels - 1} .*got {levels}"),
               (dict(input_ids=rows, level=torch.tensor([0, levels])), f"got {levels}"),
               (dict(input_ids=ids, level=1, task="stt"), "0 for STT.*got 1"),
               (dict(input_ids=rows, level=torch.tensor([0, 1]), task=["tts", "stt"]), "0 for STT.*got 1")]
    refused += [(dict(input_ids=rows, task=torch.tensor([0, index])), f"unknown task {index}")
                for index in (-1, len(TASKS))]
    for kwargs, message in refused:
        with pytest.raises(VallEValueError, match=message):
            tiny_model(**kwargs)
    assert tiny_model(input_ids=ids, level=levels - 1).logits.shape[-1] == tiny_model.config.audio_vocab_size


def test_per_row_levels_or_codes_for_another_batch_size_are_refused():
    """One level or task per row, and codes with one row per sequence: a batch of 2 given 3 of them is refused, and
    so are codes without their levels axis (or with one axis too many), which failed inside torch's gather."""
    from valle_hf.embeddings import frames_at_placeholders, passes_of

    with pytest.raises(VallEValueError, match=r"one value per row \(2\), got 3 and 2"):
        passes_of(torch.tensor([0, 1, 0]), "tts", batch_size=2, num_levels=8)
    with pytest.raises(VallEValueError, match=r"one value per row \(2\), got 2 and 3"):
        passes_of(torch.tensor([0, 1]), ["tts", "tts", "stt"], batch_size=2, num_levels=8)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    with pytest.raises(VallEValueError, match=r"prompt_codes must have shape \[batch=2, frames, levels\]"):
        frames_at_placeholders(mask, torch.zeros(3, 4, 8, dtype=torch.long), "prompt_codes")
    for codes in (torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 4, 8, 1, dtype=torch.long)):
        with pytest.raises(VallEValueError, match=r"prompt_codes must have shape \[batch=2, frames, levels\]"):
            frames_at_placeholders(mask, codes, "prompt_codes")

# ---------------------------------------------------------------------------------------------------- reactive models
# The tiny test models must react to every input, or no test can see an input being dropped, trimmed or swapped: the
# default init (N(0, 0.02)) moved level-0 logits by 0.002 against a spread of 0.11 when the whole prompt was replaced.
MARGIN = 0.1  # smallest change of the logits, relative to their spread, that counts as a reaction


def relative_change(base: torch.Tensor, other: torch.Tensor) -> float:
    return float((other - base).std() / base.std())


@pytest.fixture(params=["tiny_model", "tiny_random"])
def reactive(request):
    """Each tiny model the tests use: the conftest one and the embedded tiny-random."""
    model = request.getfixturevalue(request.param)
    return model[0] if isinstance(model, tuple) else model


def random_inputs(config, seed, text_length=10, prompt_frames=30):
    generator = torch.Generator().manual_seed(seed)
    text = torch.randint(3, config.text_vocab_size, (text_length,), generator=generator)
    prompt = torch.randint(0, config.audio_vocab_size, (prompt_frames, config.num_rvq_levels), generator=generator)
    return text, prompt


@torch.no_grad()
def ar_logits(model, text, prompt, response):
    ids = tts_sequence(model.config, text, 0, len(prompt), response)[None]
    return model(input_ids=ids, prompt_codes=prompt[None]).logits[0, -1]


@torch.no_grad()
def nar_logits(model, text, prompt, frames, level):
    ids = tts_sequence(model.config, text, level, len(prompt), response_frames=len(frames))[None]
    logits = model(input_ids=ids, prompt_codes=prompt[None], audio_codes=frames[None], level=level).logits
    return logits[0, -len(frames):]


def test_the_ar_reacts_to_the_prompt_and_the_text(reactive):
    text, prompt = random_inputs(reactive.config, 0)
    other_text, other_prompt = random_inputs(reactive.config, 1)
    response = prompt[:5, 0]
    base = ar_logits(reactive, text, prompt, response)
    assert relative_change(base, ar_logits(reactive, text, other_prompt, response)) > MARGIN
    assert relative_change(base, ar_logits(reactive, other_text, prompt, response)) > MARGIN
    # a prompt cut short, looped, or joined with another is seen too
    for changed in (prompt[:20], torch.cat([prompt, prompt[:10]]), torch.cat([prompt, other_prompt[:10]])):
        assert relative_change(base, ar_logits(reactive, text, changed, response)) > MARGIN / 4
    # the AR embeds level 0 of the prompt only
    upper = prompt.clone()
    upper[:, 1:] = other_prompt[:, 1:]
    assert torch.equal(ar_logits(reactive, text, upper, response), base)


def test_the_nar_reacts_to_its_level_the_prompt_levels_it_sums_and_the_lower_levels(reactive):
    config = reactive.config
    text, prompt = random_inputs(config, 2)
    _, other = random_inputs(config, 3)
    frames = other[:6]
    level = config.num_rvq_levels - 3  # a level whose pass sums several prompt levels
    base = nar_logits(reactive, text, prompt, frames, level)
    summed = max(level - 1, 1)  # prompt and response levels a level-k pass embeds (the original's off-by-one)
    for prompt_level in range(config.num_rvq_levels):
        changed = prompt.clone()
        changed[:, prompt_level] = other[:, prompt_level]
        moved = relative_change(base, nar_logits(reactive, text, changed, frames, level))
        assert (moved > MARGIN / 2) == (prompt_level < summed), prompt_level
    for frame_level in range(config.num_rvq_levels):
        changed = frames.clone()
        changed[:, frame_level] = prompt[: len(frames), frame_level]
        moved = relative_change(base, nar_logits(reactive, text, prompt, changed, level))
        assert (moved > MARGIN / 2) == (frame_level < summed), frame_level
    # levels 1 and 2 embed the same prompt and response levels: only the level token tells them apart
    with torch.no_grad():
        hidden = [reactive.model(input_ids=tts_sequence(config, text, k, len(prompt), response_frames=6)[None],
                                 prompt_codes=prompt[None], audio_codes=frames[None], level=k).last_hidden_state
                  for k in (1, 2)]
    assert relative_change(hidden[0], hidden[1]) > MARGIN


def test_greedy_codes_follow_the_prompt_and_the_text(reactive):
    text, prompt = random_inputs(reactive.config, 4)
    other_text, other_prompt = random_inputs(reactive.config, 5)

    def greedy(text, prompt):
        return reactive.generate(input_ids=text[None], prompt_codes=prompt[None], temperature=0.0,
                                 repetition_penalty=1.0, input_prompt_length=0, max_new_tokens=8, min_new_tokens=8,
                                 max_levels=2, output_audio=False)[0]

    base = greedy(text, prompt)
    for changed in (greedy(text, other_prompt), greedy(other_text, prompt), greedy(text, prompt[:20])):
        assert not torch.equal(changed[:, 0], base[:, 0])
        assert not torch.equal(changed[:, 1:], base[:, 1:])


def test_the_language_reaches_the_model_through_the_phoneme_ids(tiny_model, tokenizer_file):
    """The released layout has no language token: the language changes the phonemes, and so the logits."""
    from valle_hf.processing import VallEProcessor

    processor = VallEProcessor.from_tokenizer_file(tokenizer_file)
    ids = processor(["Guten Tag, meine Damen.", "Guten Tag, meine Damen."], language=["en", "de"])["input_ids"]
    rows = [row[row != processor.tokenizer.pad_token_id] for row in ids]
    assert not torch.equal(rows[0], rows[1])
    _, prompt = random_inputs(tiny_model.config, 6)
    english, german = (ar_logits(tiny_model, row, prompt, prompt[:3, 0]) for row in rows)
    assert relative_change(english, german) > MARGIN


def test_return_dict_false_gives_the_output_as_a_tuple(tiny_model):
    from valle_hf.training import build_training_sequence, collate_sequences

    config = tiny_model.config
    codes = torch.randint(0, config.audio_vocab_size, (6, config.num_rvq_levels), generator=torch.Generator())
    sequences = [build_training_sequence(config, torch.tensor([1, 5, 6, 2]), codes, level) for level in (0, 3)]
    batch = collate_sequences(config, sequences)
    output = tiny_model(**batch)
    as_tuple = tiny_model(**batch, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == len(output.to_tuple())
    assert all(torch.equal(a, b) for a, b in zip(as_tuple, output.to_tuple(), strict=True) if torch.is_tensor(a))
    hidden = tiny_model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                              level=batch["level"], task=batch["task"], audio_codes=batch["audio_codes"],
                              return_dict=False)
    assert isinstance(hidden, tuple) and hidden[0].shape[:2] == batch["input_ids"].shape



@torch.no_grad()
def test_a_batch_mixing_passes_gives_each_row_the_logits_it_has_alone(tiny_model):
    """A training batch of several rows per pass (AR, NAR, STT), each with its own text, codes and prompt: each pass's
    rows are embedded from their own prompt and audio codes, so every row's logits equal its logits alone. The last
    NAR level sums more prompt and response levels than levels 0 to 2, so a row embedded at another's level shows."""
    from valle_hf.training import build_training_sequence, collate_sequences

    config = tiny_model.config
    generator = torch.Generator().manual_seed(3)
    sequences = []
    passes = [(0, "tts"), (2, "tts"), (config.num_rvq_levels - 1, "tts"), (0, "stt")]
    for index, (level, task) in enumerate(passes * 2):
        phonemes = torch.randint(3, config.text_vocab_size, (5 + index,), generator=generator)
        text = torch.cat([torch.tensor([config.text_bos_token_id]), phonemes, torch.tensor([config.text_eos_token_id])])
        codes, prompt = (torch.randint(0, config.audio_vocab_size, (frames + index, config.num_rvq_levels),
                                       generator=generator) for frames in (6, 4))
        prompt = None if task == "stt" else prompt
        sequences.append(build_training_sequence(config, text, codes, level, task, prompt))
    batch = collate_sequences(config, sequences)
    logits = tiny_model(**batch).logits
    for row, sequence in enumerate(sequences):
        alone = tiny_model(**collate_sequences(config, [sequence])).logits[0]
        torch.testing.assert_close(logits[row, : alone.shape[0], : alone.shape[1]], alone, msg=f"row {row}")

@torch.no_grad()
def test_a_level_given_as_a_0_dim_tensor_is_that_level_for_every_row(tiny_model):
    """`level=torch.tensor(k)` is the int k: one pass over every row of the batch, with that level's head."""
    from valle_hf.training import build_training_sequence, collate_sequences

    config = tiny_model.config
    generator = torch.Generator().manual_seed(5)
    text = torch.tensor([config.text_bos_token_id, 5, 6, config.text_eos_token_id])
    level = config.num_rvq_levels - 1
    sequences = [build_training_sequence(config, text, torch.randint(0, config.audio_vocab_size, (frames, level + 1),
                                                                     generator=generator), level)
                 for frames in (4, 6)]
    batch = collate_sequences(config, sequences)
    batch = {name: value for name, value in batch.items() if name not in ("level", "task")}
    expected = tiny_model(**batch, level=level).logits
    torch.testing.assert_close(tiny_model(**batch, level=torch.tensor(level)).logits, expected, rtol=0, atol=0)


@torch.no_grad()
def test_per_row_passes_give_the_widest_heads_width_and_minus_inf_beyond_a_rows_own(tiny_model):
    """Per-row levels and tasks (a training batch) give every batch the width of the widest head, so predictions
    concatenate across batches, one pass or several; each row's logits beyond its own head are -inf, which neither
    its softmax nor its cross-entropy sees."""
    from valle_hf.training import build_training_sequence, collate_sequences

    config = tiny_model.config
    widest = max(head.out_features for head in tiny_model.classifiers)
    codes = torch.randint(0, config.audio_vocab_size, (6, config.num_rvq_levels), generator=torch.Generator())
    text = torch.tensor([config.text_bos_token_id, 5, 6, config.text_eos_token_id])
    for passes in ([(1, "tts"), (1, "tts")], [(1, "tts"), (0, "stt")]):
        batch = collate_sequences(config, [build_training_sequence(config, text, codes, level, task)
                                           for level, task in passes])
        logits = tiny_model(**batch).logits
        assert logits.shape[-1] == widest
        for row, (level, task) in enumerate(passes):
            own = tiny_model.classifiers[tiny_model.head_index(level, task)].out_features
            assert torch.isfinite(logits[row, :, :own]).all()
            assert (logits[row, :, own:] == float("-inf")).all()


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_attention_implementation_is_the_backbones_and_the_codec_keeps_its_own(converted_dir, fixtures,
                                                                               fixture_model, implementation):
    model = VallEForConditionalGeneration.from_pretrained(converted_dir, attn_implementation=implementation)
    assert model.config._attn_implementation == implementation
    assert model.model.backbone.config._attn_implementation == backbone_attention(implementation)
    assert model.codec_model.config._attn_implementation == "eager"  # EnCodec has no attention: it keeps its own
    case = forward_cases(fixtures)[0]
    ids, kwargs = case_inputs(fixtures, model, case)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids[None], **kwargs).logits,
                                   fixture_model(input_ids=ids[None], **kwargs).logits, atol=TOLERANCE, rtol=0)
    other = "sdpa" if implementation == "eager" else "eager"
    model.set_attn_implementation(other)  # switching at run time follows the same rule
    assert model.model.backbone.config._attn_implementation == backbone_attention(other)
    assert model.codec_model.config._attn_implementation == "eager"


@pytest.mark.parametrize("model_class", ["VallEForConditionalGeneration", "VallEModel"])
def test_resize_token_embeddings_keeps_the_phoneme_table_or_refuses_another_size(tiny_model, model_class):
    model = tiny_model if model_class == "VallEForConditionalGeneration" else tiny_model.model
    table = model.get_input_embeddings()
    before = table.weight.clone()
    size = tiny_model.config.text_vocab_size
    # The phoneme ids' place among the unified ids is fixed by the checkpoint: a new row could never be read.
    for arguments in ({"new_num_tokens": size + 8}, {"new_num_tokens": size - 1}, {"pad_to_multiple_of": size + 1}):
        with pytest.raises(VallEValueError, match=rf"^resize_token_embeddings cannot resize .* from {size} to"):
            model.resize_token_embeddings(**arguments)
    assert model.resize_token_embeddings() is table  # as transformers: no size asks for the table
    assert model.resize_token_embeddings(size - 1, pad_to_multiple_of=size) is table  # rounded up to its size
    assert model.resize_token_embeddings(np.int64(size), pad_to_multiple_of=np.int64(size)) is table  # a NumPy size
    assert model.get_input_embeddings() is table and torch.equal(table.weight, before)
    assert "vocab_size" not in tiny_model.config.to_diff_dict()


@pytest.mark.parametrize("arguments", [{"new_num_tokens": True}, {"new_num_tokens": 0}, {"pad_to_multiple_of": "8"},
                                       {"pad_to_multiple_of": -8}])
def test_resize_token_embeddings_refuses_a_size_or_multiple_that_is_no_positive_integer(tiny_model, arguments):
    """A string multiple failed with a bare TypeError (transformers' own check skipped), True was "resized to True
    ids", and a negative multiple rounded back to the table's size."""
    (name, value), = arguments.items()
    with pytest.raises(VallEValueError, match=rf"^resize_token_embeddings: {name} must be a positive integer or None, "
                                              rf"got {re.escape(repr(value))}$"):
        tiny_model.resize_token_embeddings(**arguments)
