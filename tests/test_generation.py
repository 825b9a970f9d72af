"""model.generate(): the original's end-to-end greedy runs, cache/batch/static-cache equivalences, STT, options."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from conftest import PLAIN_SETTINGS, logged_warnings, original_generate_kwargs, reactive_model, stop_at, tiny_config
from transformers import LogitsProcessorList, MaxLengthCriteria, StoppingCriteria, StoppingCriteriaList
from transformers.utils import logging as transformers_logging

from valle_hf.cache import CACHE_KWARG
from valle_hf.codec import encode
from valle_hf.layout import pad, tts_sequence


def e2e_case(fixtures, name):
    if name not in fixtures.cases:
        pytest.skip(f"fixture set has no {name} case")
    return fixtures.cases[name]


def tts_inputs(fixtures, case):
    return dict(input_ids=fixtures.case_tensor(case, "text")[None],
                prompt_codes=fixtures.case_tensor(case, "prom")[None])


@pytest.mark.parametrize("name", ["tts_e2e_greedy", "tts_e2e_greedy_prefix_silence"])
def test_tts_greedy_reproduces_original(fixtures, fixture_model, name):
    case = e2e_case(fixtures, name)
    with logged_warnings() as logged:
        out = fixture_model.generate(**tts_inputs(fixtures, case), **original_generate_kwargs(case), output_audio=False,
                                     return_dict_in_generate=True)
    assert ("without a stop token" in logged.out) == (not case["stop_token_emitted"]), logged.out
    # The original returns its silence prefix as part of the output; we drop it (it only conditions the model).
    expected = fixtures.case_tensor(case, "codes")[case["prefix_silence_frames"]:]
    assert out.lengths.tolist() == [len(expected)]
    assert torch.equal(out.codes[0, : out.lengths[0]], expected)
    assert out.stopped.tolist() == [case["stop_token_emitted"]]


def test_stt_greedy_reproduces_original(fixtures, fixture_model):
    case = e2e_case(fixtures, "stt_e2e_greedy")
    text = fixture_model.generate(audio_codes=fixtures.case_tensor(case, "resp")[None], task="stt",
                                  **original_generate_kwargs(case))
    assert torch.equal(text[0], fixtures.case_tensor(case, "text_tokens"))


def _greedy(model, **kwargs):
    return model.generate(**{**PLAIN_SETTINGS, "temperature": 0.0, "output_audio": False,
                             "return_dict_in_generate": True, **kwargs})


def _batch_inputs(config, seed=0):
    generator = torch.Generator().manual_seed(seed)
    texts = [torch.randint(3, config.text_vocab_size, (n,), generator=generator) for n in (7, 12, 4)]
    prompts = [torch.randint(0, config.audio_vocab_size, (t, config.num_rvq_levels), generator=generator)
               for t in (20, 9, 31)]
    return texts, prompts


def test_cache_and_no_cache_agree(fixtures, fixture_model):
    case = e2e_case(fixtures, "tts_e2e_greedy")
    inputs = tts_inputs(fixtures, case)
    steps = case["ar_kwargs"]["max_steps"]
    cached = _greedy(fixture_model, **inputs, max_new_tokens=steps)
    uncached = _greedy(fixture_model, **inputs, max_new_tokens=steps, use_cache=False)
    stock = _greedy(fixture_model, **inputs, max_new_tokens=steps, cache_implementation="dynamic")
    assert torch.equal(cached.codes, uncached.codes)
    assert torch.equal(cached.codes, stock.codes)


def _record_forward_kwargs(model):
    """Every forward call's keyword arguments during the `with` block."""
    calls = []
    handle = model.register_forward_pre_hook(lambda module, args, kwargs: calls.append(kwargs), with_kwargs=True)
    return calls, handle


@pytest.mark.parametrize("task", ["tts", "stt"])
def test_cached_steps_get_the_positions_and_embeddings_of_the_whole_sequence(tiny_model, task):
    """The O(1) cached-step inputs equal what the full sequence gives those columns (left-padded rows of different
    lengths, a silence prefix in the TTS response), and the default cache is the preallocated one."""
    from valle_hf.cache import CACHE_KWARG, PreallocatedDynamicCache
    from valle_hf.layout import segment_position_ids

    texts, prompts = _batch_inputs(tiny_model.config)
    codes, codes_mask = pad(prompts, 0, side="right")
    steps = 6
    calls, handle = _record_forward_kwargs(tiny_model)
    try:
        if task == "tts":
            ids, mask = pad(texts, 0, side="right")
            out = _greedy(tiny_model, input_ids=ids, attention_mask=mask, prompt_codes=codes,
                          prompt_attention_mask=codes_mask, prefix_silence=0.05, max_new_tokens=steps,
                          min_new_tokens=steps, max_levels=0)
        else:
            out = _greedy(tiny_model, task="stt", audio_codes=codes, audio_attention_mask=codes_mask,
                          max_new_tokens=steps, min_new_tokens=steps)
    finally:
        handle.remove()
    sequences = out.sequences
    positions = segment_position_ids(sequences, tiny_model.config)
    embeds = tiny_model.model.embeddings.embed_pass(sequences, 0, task, None, None)
    first_column = sequences.shape[1] - steps
    cached_steps = calls[1:steps]  # calls[0] is the prefill over the whole input
    assert len(cached_steps) == steps - 1
    for offset, call in enumerate(cached_steps):
        column = first_column + offset
        assert isinstance(call[CACHE_KWARG], PreallocatedDynamicCache)
        assert call["input_ids"] is None
        assert torch.equal(call["position_ids"], positions[:, column : column + 1])
        assert torch.equal(call["inputs_embeds"], embeds[:, column : column + 1])


def test_static_cache_matches_dynamic(fixtures, fixture_model):
    case = e2e_case(fixtures, "tts_e2e_greedy")
    inputs = tts_inputs(fixtures, case)
    steps = case["ar_kwargs"]["max_steps"]
    dynamic = _greedy(fixture_model, **inputs, max_new_tokens=steps)
    static = _greedy(fixture_model, **inputs, max_new_tokens=steps, cache_implementation="static")
    assert torch.equal(dynamic.codes, static.codes)


def test_compiled_forward_matches(fixtures, fixture_model):
    """The compiled forward decodes as the eager one, through the NAR levels up to the first that embeds a sum of
    levels (3), as every later one does: each further level only recompiles the same graph (a minute of the suite
    for all seven)."""
    case = e2e_case(fixtures, "tts_e2e_greedy")
    inputs = tts_inputs(fixtures, case)
    steps = case["ar_kwargs"]["max_steps"]
    levels = min(3, fixture_model.config.num_rvq_levels - 1)
    expected = _greedy(fixture_model, **inputs, max_new_tokens=steps, max_levels=levels)
    torch._dynamo.reset()
    original_forward = fixture_model.forward
    fixture_model.forward = torch.compile(original_forward, backend="aot_eager")
    try:
        compiled = _greedy(fixture_model, **inputs, max_new_tokens=steps, max_levels=levels,
                           cache_implementation="static")
    finally:
        fixture_model.forward = original_forward
    assert torch.equal(expected.codes, compiled.codes)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_generate_compiles_its_decoding_steps_into_one_graph(dtype):
    """transformers compiles the cached decoding step (`compile_config` with a static cache); the model's forward
    must not break that graph (`_can_compile_fullgraph`). A 16-bit model's linears broke it (they read a context
    variable), and on CUDA each layer's rest of the forward was compiled again, past torch's recompile limit."""
    from transformers import CompileConfig

    model = reactive_model(seed=1).to(dtype)
    generator = torch.Generator().manual_seed(0)
    text = torch.randint(3, model.config.text_vocab_size, (2, 6), generator=generator)
    prompt = torch.randint(0, model.config.audio_vocab_size, (2, 9, model.config.num_rvq_levels), generator=generator)
    inputs = dict(input_ids=text, prompt_codes=prompt, temperature=0.0, max_new_tokens=6, min_new_tokens=6,
                  max_levels=0, output_audio=False, return_dict_in_generate=True)
    expected = model.generate(**inputs).codes
    config = CompileConfig(fullgraph=True, backend="eager", mode=None)
    config._compile_all_devices = True  # transformers compiles on accelerators only unless told otherwise
    torch._dynamo.reset()
    compiled = model.generate(**inputs, cache_implementation="static", compile_config=config).codes
    assert torch.equal(compiled, expected)


def test_tts_batch_equals_items_alone():
    model = reactive_model(seed=1)
    texts, prompts = _batch_inputs(model.config)

    ids, mask = pad(texts, 0, side="right")
    codes, codes_mask = pad(prompts, 0, side="right")
    batch = _greedy(model, input_ids=ids, attention_mask=mask, prompt_codes=codes, prompt_attention_mask=codes_mask,
                    max_new_tokens=15)
    for row, (text, prompt) in enumerate(zip(texts, prompts, strict=True)):
        alone = _greedy(model, input_ids=text[None], prompt_codes=prompt[None], max_new_tokens=15)
        assert batch.lengths[row] == alone.lengths[0]
        assert torch.equal(batch.codes[row, : batch.lengths[row]], alone.codes[0, : alone.lengths[0]])


def test_stt_batch_equals_items_alone():
    model = reactive_model(seed=2)
    _, audios = _batch_inputs(model.config, seed=3)
    codes, mask = pad(audios, 0, side="right")
    batch = model.generate(audio_codes=codes, audio_attention_mask=mask, task="stt", temperature=0.0,
                           max_new_tokens=12)
    for row, audio in enumerate(audios):
        alone = model.generate(audio_codes=audio[None], task="stt", temperature=0.0, max_new_tokens=12)
        assert torch.equal(batch[row], alone[0])


@pytest.mark.parametrize("side", ["right", "left"])
def test_padded_text_without_its_mask_is_refused(tiny_model, side):
    """Without attention_mask the padding (id 0, `<unk>`) beside a short row's text was read as text: that row spoke
    other codes than with the mask, without a word."""
    from valle_hf.layout import pad

    config = tiny_model.config
    texts = [torch.cat([torch.tensor([config.text_bos_token_id]), text, torch.tensor([config.text_eos_token_id])])
             for text in _batch_inputs(config)[0]]
    ids, mask = pad(texts, 0, side=side)
    codes = torch.randint(0, config.audio_vocab_size, (1, 9, config.num_rvq_levels),
                          generator=torch.Generator().manual_seed(0))
    inputs = dict(input_ids=ids, prompt_codes=codes, max_new_tokens=2, max_levels=0)
    padded = [index for index, row in enumerate(mask) if not row.all()]
    with pytest.raises(ValueError, match=rf"^row\(s\) \{padded} of input_ids hold padding, but no attention_mask "
                                         r"was given, so the padding would be read as text: pass attention_mask"):
        _greedy(tiny_model, **inputs)
    _greedy(tiny_model, **inputs, attention_mask=mask)
    longest = [index for index, row in enumerate(mask) if row.all()]
    _greedy(tiny_model, **{**inputs, "input_ids": ids[longest]})  # rows as the processor makes them: no padding


def test_a_two_channel_array_as_the_prompt_of_two_rows_is_refused_as_ambiguous(tiny_model):
    """generate read a [2, samples] prompt_audio for two texts as one stereo voice, though it may be two voices."""
    pair = torch.rand(2, 4800) - 0.5
    inputs = dict(input_ids=torch.tensor([[1, 5, 2], [1, 6, 2]]), sampling_rate=24000, max_new_tokens=2, max_levels=0)
    with pytest.raises(ValueError, match=r"^prompt_audio is one array of shape \(2, 4800\) for 2 texts"):
        _greedy(tiny_model, prompt_audio=pair, **inputs)
    _greedy(tiny_model, prompt_audio=list(pair), **inputs)
    _greedy(tiny_model, prompt_audio=pair, **{**inputs, "input_ids": inputs["input_ids"][:1]})  # one text: stereo


@pytest.mark.parametrize("side", ["right", "left"])
def test_padded_codes_without_their_mask_are_refused(side):
    """Without audio_attention_mask the zero codes padding a short row of a batch were read as audio: its
    transcription changed without a word (generate's own `codes` are padded so, beside `lengths`)."""
    from valle_hf.layout import pad

    model = reactive_model(seed=2)
    _, audios = _batch_inputs(model.config, seed=3)
    codes, mask = pad(audios, 0, side=side)
    settings = dict(task="stt", max_new_tokens=2)
    padded = [index for index, row in enumerate(mask) if not row.all()]
    with pytest.raises(ValueError, match=rf"^row\(s\) \{padded} of audio_codes hold padding, but no "
                                         r"audio_attention_mask was given, so the padding would be read as audio"):
        _greedy(model, audio_codes=codes, **settings)
    _greedy(model, audio_codes=codes, audio_attention_mask=mask, **settings)
    _greedy(model, audio_codes=torch.zeros(2, 5, model.config.num_rvq_levels, dtype=torch.long), **settings)


def test_sampling_is_reproducible_with_a_seed(tiny_model):
    texts, prompts = _batch_inputs(tiny_model.config)
    kwargs = dict(input_ids=texts[0][None], prompt_codes=prompts[0][None], do_sample=True, temperature=1.0,
                  nar_temperature=1.0, max_new_tokens=10, output_audio=False, return_dict_in_generate=True)
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        runs.append(tiny_model.generate(**kwargs).codes)
    assert torch.equal(runs[0], runs[1])


def test_audio_output_and_levels(tiny_model):
    texts, prompts = _batch_inputs(tiny_model.config)
    out = tiny_model.generate(input_ids=texts[0][None], prompt_codes=prompts[0][None], temperature=0.0,
                              max_new_tokens=6, min_new_tokens=6, max_levels=3, return_dict_in_generate=True)
    frames = int(out.lengths[0])
    assert out.codes.shape[-1] == 4  # level 0 plus NAR levels 1..3
    assert len(out.audio) == 1 and out.audio[0].dim() == 1
    assert out.audio[0].numel() == frames * tiny_model.config.sampling_rate // tiny_model.config.frame_rate
    audio = tiny_model.generate(input_ids=texts[0][None], prompt_codes=prompts[0][None], temperature=0.0,
                                max_new_tokens=6, min_new_tokens=6, max_levels=3)
    assert torch.equal(audio[0], out.audio[0])
    all_levels = tiny_model.generate(input_ids=texts[0][None], prompt_codes=prompts[0][None], temperature=0.0,
                                     max_new_tokens=6, min_new_tokens=6)
    assert not torch.equal(all_levels[0], out.audio[0])  # the decoder hears the levels it is given


def test_each_rows_audio_is_decoded_from_its_own_frames(tiny_model):
    """A batch of rows of different lengths: each row's audio is that of its own frames, not of the padded batch's
    (with the padding frames decoded, every row came out as long as the longest)."""
    from valle_hf.layout import pad

    model = copy.deepcopy(tiny_model)
    with torch.no_grad():  # sampled rows then stop after a few steps, each at its own
        model.classifiers[0].bias[model.config.stop_token_id] += 6.5
    texts, prompts = _batch_inputs(model.config)
    (ids, mask), (codes, codes_mask) = pad(texts, 0, side="right"), pad(prompts, 0, side="right")
    out = model.generate(input_ids=ids, attention_mask=mask, prompt_codes=codes, prompt_attention_mask=codes_mask,
                         **PLAIN_SETTINGS, max_new_tokens=20, max_levels=1, seeds=[5, 6, 7],
                         return_dict_in_generate=True)
    assert len(set(out.lengths.tolist())) > 1, out.lengths
    hop = model.config.sampling_rate // model.config.frame_rate
    assert [waveform.numel() for waveform in out.audio] == [int(frames) * hop for frames in out.lengths]


def _forward_inputs(model, **kwargs):
    """The keyword arguments of every forward pass of `_greedy(model, **kwargs)`, and its output."""
    calls, handle = _record_forward_kwargs(model)
    try:
        out = _greedy(model, **kwargs)
    finally:
        handle.remove()
    return calls, out


def test_a_prompt_prefix_and_a_silence_prefix_are_refused_together(tiny_model):
    """The response starts with the prompt or with silence: given both, the silence was dropped without a word."""
    texts, prompts = _batch_inputs(tiny_model.config)
    with pytest.raises(ValueError, match=r"^prefix_silence=0.2 is not allowed: it must be 0 with input_prompt_prefix"):
        _greedy(tiny_model, input_ids=texts[0][None], prompt_codes=prompts[0][None], max_new_tokens=2,
                input_prompt_prefix=True, prefix_silence=0.2)


@pytest.mark.parametrize("setting", ["input_prompt_prefix", "prefix_silence"])
def test_the_response_prefix_conditions_both_stages_and_is_left_out(tiny_model, setting):
    """`input_prompt_prefix` starts the AR response with the prompt's level 0 (and leaves the prompt segment empty),
    `prefix_silence` with that many seconds of the silence code. The NAR reads the generated frames after the silence
    prefix, but only the generated ones after a prompt prefix (the prompt is in its own segment), as the original's
    NAR does; the output holds neither."""
    config = tiny_model.config
    texts, prompts = _batch_inputs(config)
    inputs = dict(input_ids=texts[0][None], prompt_codes=prompts[0][None], max_new_tokens=5, min_new_tokens=5,
                  max_levels=2)
    seconds = 0.2
    if setting == "input_prompt_prefix":
        prefix = prompts[0][:, 0]
        prompt_frames = 0
    else:
        prefix = torch.full((int(seconds * config.frame_rate),), config.silence_codes[0])
        prompt_frames = len(prompts[0])
    calls, out = _forward_inputs(tiny_model, **inputs, **{setting: True if setting == "input_prompt_prefix" else
                                                          seconds})
    expected = tts_sequence(config, texts[0], 0, prompt_frames, prefix)
    assert torch.equal(calls[0]["input_ids"][0], expected)  # the AR's first pass
    nar = [call for call in calls if call.get("level", 0) > 0]
    assert out.lengths.tolist() == [5]
    nar_level0 = torch.cat([prefix if setting == "prefix_silence" else prefix[:0], out.codes[0, :, 0]])
    assert len(nar) == 2 and all(torch.equal(call["audio_codes"][0, :, 0], nar_level0) for call in nar)
    frames = [int((call["input_ids"][0] == config.prompt_frame_token_id).sum()) for call in nar]
    assert frames == [len(prompts[0])] * 2  # the whole prompt in its segment
    plain = _greedy(tiny_model, **inputs)
    assert not torch.equal(out.codes, plain.codes)  # the prefix conditions the output
    with pytest.raises(ValueError, match="prefix_silence"):
        _greedy(tiny_model, **inputs, prefix_silence=-1.0)


def test_no_prompt_and_a_prompt_prefix_without_a_prompt(tiny_model):
    texts, _ = _batch_inputs(tiny_model.config)
    out = _greedy(tiny_model, input_ids=texts[0][None], max_new_tokens=5, min_new_tokens=5)
    assert out.codes.shape == (1, 5, tiny_model.config.num_rvq_levels)
    with pytest.raises(ValueError, match="input_prompt_prefix starts the response from the voice prompt, but none was "
                                         "given: give one, or turn input_prompt_prefix off"):
        _greedy(tiny_model, input_ids=texts[0][None], max_new_tokens=2, input_prompt_prefix=True)


def test_max_levels_runs_one_nar_pass_per_level_and_output_audio_decodes(tiny_model):
    texts, prompts = _batch_inputs(tiny_model.config)
    inputs = dict(input_ids=texts[0][None], prompt_codes=prompts[0][None], max_new_tokens=4, min_new_tokens=4)
    for levels in (0, 2, tiny_model.config.num_rvq_levels - 1):
        calls, out = _forward_inputs(tiny_model, **inputs, max_levels=levels)
        assert [call["level"] for call in calls if call.get("level", 0) > 0] == list(range(1, levels + 1))
        assert out.codes.shape == (1, 4, levels + 1) and out.audio is None
    assert len(_greedy(tiny_model, **inputs, output_audio=True).audio) == 1


def test_shipped_generation_config(tiny_model):
    config = tiny_model.generation_config
    assert config.max_new_tokens == 12 * tiny_model.config.frame_rate
    assert config.top_k == 0 and config.eos_token_id == tiny_model.config.stop_token_id
    assert config.pad_token_id == tiny_model.config.pad_token_id


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(input_ids=torch.zeros(1, 0, dtype=torch.long)), "empty text"),
        (dict(input_ids=torch.tensor([[1, 300, 2]])), "phoneme ids"),
        (dict(input_ids=torch.tensor([[1, 5, 2]]), prompt_codes=torch.zeros(1, 4, 3, dtype=torch.long)), "RVQ levels"),
        (dict(input_ids=torch.tensor([[1, 5, 2]]), prompt_codes=torch.full((1, 4, 8), 5000)), "EnCodec codes"),
        (dict(input_ids=torch.tensor([[1, 5, 2]]), task="asr"), "unknown task"),
        (dict(task="stt"), "audio_codes"),
        (dict(input_ids=torch.tensor([[1, 5, 2]]), max_levels=9), "max_levels"),
        (dict(input_ids=torch.tensor([[1, 5, 2]]), prefix_silence=300.5),  # 300 s: 22500 positions (masks of GB)
         r"prefix_silence=300.5 is not allowed: it must be a number of seconds in \[0, 300\]: this model has"),
        (dict(input_ids=torch.tensor([[1, 5, 2]]), input_prompt_length=[1.0, 3600]), "input_prompt_length=.*0, 300"),
        (dict(input_ids=torch.zeros(0, 3, dtype=torch.long)), "empty batch"),
        (dict(input_ids=torch.tensor([[1.0, 5.0, 2.0]])), "integer ids, got dtype torch.float32"),
        (dict(input_ids=torch.tensor([[True, True]])), "integer ids, got dtype torch.bool"),
        (dict(input_ids=torch.tensor([[1, 5, 2]]), prompt_codes=torch.zeros(1, 4, 8)), "integer ids, got dtype"),
        (dict(input_ids=torch.tensor([[1, 5, 2]]), prompt_codes=torch.zeros(1, 0, 8, dtype=torch.long),
              input_prompt_length=0), "prompt_codes: a row has no frames"),
        (dict(input_ids=torch.tensor([[1, 5, 2]]), prompt_codes=torch.zeros(1, 4, 8, dtype=torch.long),
              prompt_attention_mask=torch.zeros(1, 4, dtype=torch.long)), "prompt_codes: a row has no frames"),
        (dict(audio_codes=torch.zeros(1, 0, 8, dtype=torch.long), task="stt"), "audio_codes: a row has no frames"),
        (dict(audio_codes=torch.zeros(0, 3, 8, dtype=torch.long), task="stt"), "audio_codes is an empty batch"),
        # a mask of another shape than its input (an IndexError from the row selection, before)
        (dict(input_ids=torch.tensor([[1, 5, 2]]), attention_mask=torch.ones(1, 4, dtype=torch.long)),
         r"the mask of input_ids must have shape \(1, 3\), got \(1, 4\)"),
        (dict(input_ids=torch.tensor([[1, 5, 2]]), prompt_codes=torch.zeros(1, 4, 8, dtype=torch.long),
              prompt_attention_mask=torch.ones(1, 5, dtype=torch.long)), "the mask of prompt_codes must have shape"),
    ],
)
def test_bad_inputs_give_clear_errors(tiny_model, kwargs, message):
    from valle_hf.errors import VallEValueError

    with pytest.raises(VallEValueError, match=message):
        tiny_model.generate(max_new_tokens=2, output_audio=False, **kwargs)


def test_inputs_is_input_ids_as_in_transformers(tiny_model):
    texts, prompts = _batch_inputs(tiny_model.config)
    inputs = dict(prompt_codes=prompts[0][None], max_new_tokens=3)
    expected = _greedy(tiny_model, input_ids=texts[0][None], **inputs)
    assert torch.equal(_greedy(tiny_model, inputs=texts[0][None], **inputs).codes, expected.codes)
    with pytest.raises(ValueError, match="got both inputs and input_ids"):
        _greedy(tiny_model, inputs=texts[0][None], input_ids=texts[0][None], **inputs)
    assert torch.equal(_greedy(tiny_model, inputs=None, input_ids=texts[0][None], **inputs).codes, expected.codes)


def test_a_generation_config_that_is_not_one_is_refused_naming_what_to_give(tiny_model):
    from valle_hf.errors import VallETypeError

    with pytest.raises(VallETypeError, match="generation_config must be a GenerationConfig, got dict"):
        tiny_model.generate(input_ids=torch.tensor([[1, 5, 2]]), generation_config={"temperature": 0.0})


def test_a_misspelt_setting_of_a_passed_generation_config_is_warned_about_by_name(tiny_model):
    """GenerationConfig(temprature=0.0) keeps the name as an attribute that generate never reads: the model's own
    temperature sampled, without a word."""
    from transformers import GenerationConfig

    inputs = dict(input_ids=torch.tensor([[tiny_model.config.text_bos_token_id, tiny_model.config.text_eos_token_id]]),
                  max_new_tokens=1, max_levels=0, output_audio=False)
    with logged_warnings() as logged:
        tiny_model.generate(**inputs, generation_config=GenerationConfig(temperature=0.0))
        tiny_model.generate(**inputs, generation_config=copy.deepcopy(tiny_model.generation_config))
    assert "generation_config" not in logged.out, logged.out
    with logged_warnings() as logged:
        tiny_model.generate(**inputs, generation_config=GenerationConfig(temprature=0.0))
    assert ("the generation_config passed to generate has setting(s) temprature (did you mean temperature?) that no "
            "generation reads: they are ignored") in logged.out, logged.out


def test_a_plain_generation_config_assigned_to_the_model_generates_as_it_does_saved_and_loaded(tiny_model, tmp_path):
    """`model.generation_config = GenerationConfig(...)`, as for any transformers model, was an AttributeError (no
    min_temperature): its VALL-E settings take their defaults, as in the saved and loaded model; the object assigned
    stays the model's, so an edit made to it afterwards counts."""
    from transformers import GenerationConfig

    from valle_hf.modeling import VallEForConditionalGeneration

    model = copy.deepcopy(tiny_model)
    assigned = GenerationConfig(do_sample=False, max_new_tokens=4)
    model.generation_config = assigned
    texts, prompts = _batch_inputs(model.config)
    inputs = dict(input_ids=texts[0][None], prompt_codes=prompts[0][None], output_audio=False,
                  return_dict_in_generate=True)
    out = model.generate(**inputs)
    model.save_pretrained(tmp_path)
    loaded = VallEForConditionalGeneration.from_pretrained(tmp_path)
    assert torch.equal(out.codes, loaded.generate(**inputs).codes)
    assert out.lengths.tolist() == [4] and model.generation_config is assigned  # this model never stops by itself
    assigned.max_new_tokens = 2
    assert model.generate(**inputs).lengths.tolist() == [2]


def test_a_generation_config_without_special_tokens_stops_at_the_ars_stop_token(tiny_model):
    """A plain GenerationConfig has no eos_token_id: the AR ran to max_new_tokens past its stop token."""
    from transformers import GenerationConfig

    texts, prompts = _batch_inputs(tiny_model.config)
    inputs = dict(input_ids=texts[0][None], prompt_codes=prompts[0][None])
    stopping = stop_at(tiny_model, 2, **inputs)
    expected = _greedy(stopping, **inputs, max_new_tokens=6)
    assert expected.lengths.tolist() == [2] and expected.stopped.tolist() == [True]
    stopping.generation_config = GenerationConfig(max_new_tokens=6)
    for config in (None, GenerationConfig(max_new_tokens=6)):
        out = _greedy(stopping, **inputs, generation_config=config)
        assert out.sequences.shape == expected.sequences.shape and torch.equal(out.codes, expected.codes)


def test_a_passed_generation_config_takes_what_it_leaves_unset_from_the_models(tiny_model):
    """As transformers: a plain GenerationConfig, or a VallEGenerationConfig with settings at their defaults, runs
    with the model's own settings for those (the VALL-E stages once ran with the defaults while transformers' AR
    loop filled in the model's)."""
    from transformers import GenerationConfig

    from valle_hf.configuration import VallEGenerationConfig

    model = copy.deepcopy(tiny_model)
    model.generation_config.update(temperature=0.0, max_levels=2, input_prompt_length=8 / model.config.frame_rate,
                                   nar_temperature=0.0, output_audio=False)
    texts, prompts = _batch_inputs(model.config)
    inputs = dict(input_ids=texts[0][None], prompt_codes=prompts[0][None], return_dict_in_generate=True)
    expected = model.generate(**inputs, max_new_tokens=4)
    assert expected.codes.shape[-1] == 3 and expected.audio is None
    for config in (GenerationConfig(max_new_tokens=4), VallEGenerationConfig(max_new_tokens=4)):
        out = model.generate(**inputs, generation_config=config)
        assert torch.equal(out.sequences, expected.sequences) and torch.equal(out.codes, expected.codes)
        assert out.audio is None  # the model's output_audio=False, not the passed config's default True
    # what the passed config does set wins, return_dict_in_generate included
    out = model.generate(**inputs, generation_config=VallEGenerationConfig(max_new_tokens=4, max_levels=1))
    assert out.codes.shape[-1] == 2
    del inputs["return_dict_in_generate"]
    assert isinstance(model.generate(**inputs, max_new_tokens=4), list)
    for config in (GenerationConfig(max_new_tokens=4, return_dict_in_generate=True),
                   VallEGenerationConfig(max_new_tokens=4, return_dict_in_generate=True)):
        assert torch.equal(model.generate(**inputs, generation_config=config).codes, expected.codes)
    model.generation_config.return_dict_in_generate = True  # left unset in the passed config: the model's
    assert torch.equal(model.generate(**inputs, generation_config=GenerationConfig(max_new_tokens=4)).codes,
                       expected.codes)


@pytest.mark.parametrize("setting, model_value", [("layer_skip_exit_layer", 0), ("nar_temperature", 1.0),
                                                   ("prefix_silence", 0.2)])
def test_a_setting_given_as_none_is_not_set(tiny_model, setting, model_value):
    """None means "not set", as in transformers: the model's value (a TypeError deep inside, or a refusal, before);
    but max_levels and input_prompt_length None keep their meaning, "all"."""
    from valle_hf.configuration import VALLE_GENERATION_DEFAULTS, VallEGenerationConfig

    model = copy.deepcopy(tiny_model)
    setattr(model.generation_config, setting, model_value)
    texts, prompts = _batch_inputs(model.config)
    inputs = dict(input_ids=texts[0][None], prompt_codes=prompts[0][None], max_new_tokens=3, min_new_tokens=3,
                  layer_skip=True, output_audio=False, return_dict_in_generate=True, seeds=[0])
    expected = _greedy(model, **inputs, **{setting: model_value})
    assert not torch.equal(_greedy(model, **inputs, **{setting: VALLE_GENERATION_DEFAULTS[setting]}).codes,
                           expected.codes)  # the model's value is not the default, and it matters
    assert torch.equal(_greedy(model, **inputs, **{setting: None}).codes, expected.codes)
    # beside a passed config, the config's value
    passed = VallEGenerationConfig(**{setting: model_value})
    setattr(model.generation_config, setting, VALLE_GENERATION_DEFAULTS[setting])
    assert torch.equal(_greedy(model, **inputs, generation_config=passed, **{setting: None}).codes, expected.codes)
    model.generation_config.update(max_levels=1, input_prompt_length=0.1)
    out = _greedy(model, **{**inputs, "input_prompt_length": None, "max_levels": None})
    assert out.codes.shape[-1] == model.config.num_rvq_levels
    whole = _greedy(model, **{**inputs, "input_prompt_length": 0, "max_levels": None})
    assert torch.equal(out.codes, whole.codes)


def test_input_prompt_length_loops_or_cuts_the_prompt_codes(tiny_model):
    texts, prompts = _batch_inputs(tiny_model.config)
    prompt = prompts[0]  # 20 frames
    frame_rate = tiny_model.config.frame_rate
    for seconds, expected in ((30 / frame_rate, torch.cat([prompt, prompt[:10]])), (8 / frame_rate, prompt[:8])):
        trimmed = _greedy(tiny_model, input_ids=texts[0][None], prompt_codes=prompt[None], max_new_tokens=4,
                          input_prompt_length=seconds)
        explicit = _greedy(tiny_model, input_ids=texts[0][None], prompt_codes=expected[None], max_new_tokens=4,
                           input_prompt_length=0)
        assert torch.equal(trimmed.codes, explicit.codes)
    # one length per row (a pipeline batch lists each item's own): each row's prompt gets its own
    seconds = [30 / frame_rate, 8 / frame_rate]
    expected = [torch.cat([prompt, prompt[:10]]), prompt[:8]]
    batch = _greedy(tiny_model, input_ids=torch.stack([texts[0], texts[0]]), prompt_codes=prompt[None].repeat(2, 1, 1),
                    max_new_tokens=4, input_prompt_length=seconds)
    for row, codes in enumerate(expected):
        alone = _greedy(tiny_model, input_ids=texts[0][None], prompt_codes=codes[None], max_new_tokens=4,
                        input_prompt_length=0)
        assert torch.equal(batch.codes[row, : batch.lengths[row]], alone.codes[0, : alone.lengths[0]]), row
    with pytest.raises(ValueError, match="input_prompt_length"):
        _greedy(tiny_model, input_ids=texts[0][None], prompt_codes=prompt[None], max_new_tokens=2,
                input_prompt_length=-1.0)
    # `prompt_rows` is public (the synthesizer reads a voice's prompt through it) and checks a length given to it
    # directly, which no settings check has seen
    for seconds in (-1.0, 0.1 / frame_rate):
        with pytest.raises(ValueError, match=f"input_prompt_length must be at least one frame .*got {seconds}"):
            tiny_model.prompt_rows(prompt[None], None, None, 1, seconds)


def _prompt_codes_seen(model, **kwargs):
    """The `prompt_codes` the model's first forward receives from `generate(**kwargs)`."""
    calls, handle = _record_forward_kwargs(model)
    try:
        _greedy(model, max_new_tokens=1, max_levels=0, **kwargs)
    finally:
        handle.remove()
    return calls[0]["prompt_codes"][0]


def test_each_whole_reference_is_encoded_then_its_codes_looped_or_trimmed(tiny_model, tmp_path):
    """The original's prompt rule (`encode_audio`): encode each reference whole and alone, join the codes, then
    loop or cut them to int(75 * seconds) frames; never cut the waveform."""
    import numpy as np
    import soundfile

    from valle_hf.feature_extraction import VallEFeatureExtractor

    def load_audio(path):
        return VallEFeatureExtractor().load(path)[0]

    rate = tiny_model.config.sampling_rate
    generator = np.random.default_rng(0)
    first, second = tmp_path / "a.wav", tmp_path / "b.wav"
    soundfile.write(first, 0.3 * generator.standard_normal(int(3.7 * rate)).astype(np.float32), rate)
    soundfile.write(second, 0.3 * generator.standard_normal(int(0.55 * rate)).astype(np.float32), 16000)
    whole = [encode(tiny_model.codec_model, load_audio(path)) for path in (first, second)]
    joined = torch.cat(whole)
    text = torch.tensor([[1, 40, 41, 2]])
    for seconds in (0.5, 3.0):
        frames = int(seconds * tiny_model.config.frame_rate)
        expected = joined.repeat(-(-frames // len(joined)), 1)[:frames]
        seen = _prompt_codes_seen(tiny_model, input_ids=text, prompt_audio=f"{first};{second}",
                                  input_prompt_length=seconds)
        assert torch.equal(seen, expected)
    # 0 keeps every frame; the codes of the joined waveform would differ (the codec carries state across the join)
    seen = _prompt_codes_seen(tiny_model, input_ids=text, prompt_audio=[[str(first), str(second)]],
                              input_prompt_length=0)
    assert torch.equal(seen, joined)
    together = encode(tiny_model.codec_model, torch.cat([load_audio(first), load_audio(second)]))
    assert not torch.equal(together[: len(joined)], joined)


def test_a_prompt_array_is_read_at_its_sampling_rate(tiny_model):
    import numpy as np

    text, seconds = torch.tensor([[1, 40, 41, 2]]), 2.0
    for rate in (16000, 48000):
        samples = np.random.default_rng(0).uniform(-0.5, 0.5, int(seconds * rate)).astype(np.float32)
        seen = _prompt_codes_seen(tiny_model, input_ids=text, prompt_audio=samples, sampling_rate=rate,
                                  input_prompt_length=0)
        assert len(seen) == int(seconds * tiny_model.config.frame_rate)  # its duration, whatever its rate
    with pytest.raises(ValueError, match="sampling_rate") as raised:
        _prompt_codes_seen(tiny_model, input_ids=text, prompt_audio=samples)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("max_levels", [7, 1, 3])
def test_vocos_decodes_by_default_at_the_bandwidth_of_the_levels_and_encodec_on_request(fixture_model, max_levels):
    from valle_hf.codec import decode

    texts, prompts = _batch_inputs(fixture_model.config)
    inputs = dict(input_ids=texts[0][None], prompt_codes=prompts[0][None], max_new_tokens=8, min_new_tokens=8,
                  max_levels=max_levels)
    assert fixture_model.config.audio_backend == "vocos"  # a converted original checkpoint, as the original
    vocos = _greedy(fixture_model, **inputs, output_audio=True)
    codes = vocos.codes[0, : vocos.lengths[0]]
    levels = max_levels + 1
    bandwidth = fixture_model.vocoder.bandwidth_id_for_levels(levels)
    assert bandwidth == {2: 0, 4: 1, 8: 2}[levels]  # 1.5, 3 and 6 kbps; the original always used 2
    assert torch.allclose(vocos.audio[0], fixture_model.vocoder.decode(codes, bandwidth_id=bandwidth), atol=1e-6)
    assert not torch.allclose(vocos.audio[0], fixture_model.vocoder.decode(codes, bandwidth_id=(bandwidth + 1) % 4))
    encodec = _greedy(fixture_model, **inputs, output_audio=True, audio_backend="encodec")
    assert torch.equal(encodec.codes, vocos.codes)
    assert torch.allclose(encodec.audio[0], decode(fixture_model.codec_model, codes), atol=1e-6)
    assert not torch.allclose(encodec.audio[0], vocos.audio[0])


def test_audio_backend_errors(tiny_model):
    texts, prompts = _batch_inputs(tiny_model.config)
    inputs = dict(input_ids=texts[0][None], prompt_codes=prompts[0][None], max_new_tokens=2, output_audio=True)
    with pytest.raises(ValueError, match="without the Vocos decoder"):
        _greedy(tiny_model, **inputs, audio_backend="vocos")
    with pytest.raises(ValueError, match="audio_backend=.griffin-lim. is not allowed"):
        _greedy(tiny_model, **inputs, audio_backend="griffin-lim")


# Where each `generate` setting is checked to reach the computation: the original's settings
# (VALLE_GENERATION_DEFAULTS) and the GenerationConfig fields this model gives a meaning to. The sampler settings are
# checked in test_generation_samplers.py::test_each_sampler_setting_reaches_the_scores (SAMPLER_SETTING_CHECKS).
SETTING_TESTS = {
    "nar_temperature": ("test_generation_samplers",
                        "test_nar_temperature_samples_each_level_from_the_tempered_distribution"),
    "nar_min_temperature": ("test_generation_samplers", "test_nar_min_temperature_reaches_the_nar_sampling"),
    "max_levels": ("test_generation",
                   "test_max_levels_runs_one_nar_pass_per_level_and_output_audio_decodes"),
    "output_audio": ("test_generation",
                     "test_max_levels_runs_one_nar_pass_per_level_and_output_audio_decodes"),
    "prefix_silence": ("test_generation",
                       "test_the_response_prefix_conditions_both_stages_and_is_left_out"),
    "input_prompt_prefix": ("test_generation",
                            "test_the_response_prefix_conditions_both_stages_and_is_left_out"),
    "input_prompt_length": ("test_generation",
                            "test_each_whole_reference_is_encoded_then_its_codes_looped_or_trimmed"),
    "refine_on_stop": ("test_generation_samplers",
                       "test_refine_on_stop_is_the_teacher_forced_argmax_without_stop_tokens"),
    "layer_skip": ("test_layer_skip",
                   "test_exits_that_vary_between_steps_keep_the_cache_consistent"),
    "layer_skip_entropy_threshold": ("test_layer_skip",
                                     "test_exits_that_vary_between_steps_keep_the_cache_consistent"),
    "layer_skip_varentropy_threshold": ("test_layer_skip",
                                        "test_exits_that_vary_between_steps_keep_the_cache_consistent"),
    "layer_skip_exit_layer": ("test_layer_skip",
                              "test_a_forced_exit_equals_a_truncated_model"),
    "audio_backend": ("test_generation",
                      "test_vocos_decodes_by_default_at_the_bandwidth_of_the_levels_and_encodec_on_request"),
    "num_beams": ("test_generation_samplers",
                  "test_beam_search_returns_the_best_beam"),
    "length_penalty": ("test_generation_samplers",
                       "test_beam_search_returns_the_best_beam"),
    "num_return_sequences": ("test_generation_samplers",
                             "test_beam_search_with_stops_penalties_and_several_returned_sequences"),
    "use_cache": ("test_generation",
                  "test_cache_and_no_cache_agree"),
    "cache_implementation": ("test_generation",
                             "test_static_cache_matches_dynamic"),
    "nar_dtype": ("test_generation", "test_nar_dtype_runs_the_nar_matrix_products_in_the_chosen_precision"),
}
GENERATION_CONFIG_FIELDS = {"max_new_tokens", "min_new_tokens", "do_sample", "temperature", "top_k", "top_p", "min_p",
                            "repetition_penalty", "num_beams", "num_return_sequences", "length_penalty", "use_cache",
                            "cache_implementation"}


def test_every_generate_setting_has_a_test():
    import importlib

    from test_generation_samplers import SAMPLER_SETTING_CHECKS

    from valle_hf.configuration import VALLE_GENERATION_DEFAULTS

    settings = set(VALLE_GENERATION_DEFAULTS) | GENERATION_CONFIG_FIELDS
    assert settings == set(SETTING_TESTS) | set(SAMPLER_SETTING_CHECKS), settings ^ (set(SETTING_TESTS) |
                                                                                       set(SAMPLER_SETTING_CHECKS))
    for module, name in SETTING_TESTS.values():
        assert callable(getattr(importlib.import_module(module), name, None)), (module, name)


@pytest.mark.parametrize("backend", ["encodec", "vocos"])
def test_a_row_that_stops_at_once_gets_empty_audio(tiny_random, backend):
    from conftest import stop_at

    model, processor = tiny_random
    inputs = processor(["Hello there."], prompt_audio=np.zeros(2400, dtype=np.float32), sampling_rate=24000)
    stopping = stop_at(model, 0, **inputs)
    out = stopping.generate(**inputs, **{**PLAIN_SETTINGS, "temperature": 0.0}, max_new_tokens=5, audio_backend=backend,
                            return_dict_in_generate=True)
    assert out.lengths.tolist() == [0] and out.stopped.tolist() == [True]
    assert [audio.numel() for audio in out.audio] == [0]


@pytest.mark.parametrize("setting, fast_bf16, expected", [
    ("float32", True, None), ("bfloat16", False, torch.bfloat16), ("auto", True, torch.bfloat16),
    ("auto", False, None), ("float16", False, torch.float16),
])
def test_nar_dtype_runs_the_nar_matrix_products_in_the_chosen_precision(tiny_model, monkeypatch, setting, fast_bf16,
                                                                        expected):
    """Each NAR pass runs under autocast to `nar_dtype` ("auto": bfloat16 only where the CPU multiplies it fast), the
    AR in the model's dtype."""
    from valle_hf import hardware

    monkeypatch.setattr(hardware, "cpu_multiplies_fast", lambda dtype: fast_bf16 or dtype == torch.float32)
    seen = []
    handle = tiny_model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append((kwargs.get("level"), torch.is_autocast_enabled("cpu") and
                                                  torch.get_autocast_dtype("cpu"))), with_kwargs=True)
    texts, prompts = _batch_inputs(tiny_model.config)
    try:
        _greedy(tiny_model, input_ids=texts[0][None], prompt_codes=prompts[0][None], max_new_tokens=4,
                min_new_tokens=4, max_levels=2, nar_dtype=setting)
    finally:
        handle.remove()
    assert {precision for level, precision in seen if level == 0} == {False}  # the AR: as loaded
    assert {precision for level, precision in seen if level != 0} == {expected or False}
    assert len([level for level, _ in seen if level != 0]) == 2


def test_the_nar_holds_neither_the_ar_cache_nor_cast_copies_of_the_weights(tiny_model):
    """Peak memory: by the NAR, the AR's KV cache is freed, and its autocast casts each weight where it is used
    instead of keeping a cast copy of the decoder for the whole call (a stream keeps them: its chunks are many)."""
    import gc
    import weakref

    caches, seen = [], []

    def hook(module, args, kwargs):
        if kwargs.get("level") == 0 and kwargs.get(CACHE_KWARG) is not None:
            caches.append(weakref.ref(kwargs[CACHE_KWARG]))
        elif kwargs.get("level"):
            gc.collect()
            seen.append((all(cache() is None for cache in caches), torch.is_autocast_cache_enabled()))

    handle = tiny_model.register_forward_pre_hook(hook, with_kwargs=True)
    texts, prompts = _batch_inputs(tiny_model.config)
    try:
        _greedy(tiny_model, input_ids=texts[0][None], prompt_codes=prompts[0][None], max_new_tokens=4,
                min_new_tokens=4, max_levels=2, nar_dtype="bfloat16")
    finally:
        handle.remove()
    assert caches and seen == [(True, False)] * 2


class _StopAfter(StoppingCriteria):
    """A user's stopping criterion: ends the run after `steps` new tokens."""

    def __init__(self, input_length: int, steps: int):
        self.end = input_length + steps

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), input_ids.shape[1] >= self.end, dtype=torch.bool)


def test_the_position_limit_is_on_each_segment_not_on_the_whole_sequence(tiny_model):
    """Positions restart in every segment: `max_new_tokens` past `max_position_embeddings` is refused, a longer AR
    sequence is not, and transformers' reminder that it "exceeded the model's predefined maximum length" (which read
    as a fault on every long text) is left out, but with `unified_position_ids`, which counts positions through."""
    from transformers.utils import logging as hf_logging

    from valle_hf.configuration import SettingError

    texts, prompts = _batch_inputs(tiny_model.config)
    inputs = dict(input_ids=texts[0][None], prompt_codes=prompts[0][None], output_audio=False)
    limit = tiny_model.config.max_position_embeddings
    with pytest.raises(SettingError, match=f"max_new_tokens={limit + 1} is not allowed.* in \\[1, {limit}\\]"):
        tiny_model.generate(**inputs, max_new_tokens=limit + 1)
    short = copy.deepcopy(tiny_model)
    steps = 4
    short.config.max_position_embeddings = steps  # shorter than the AR sequence, as long as each segment
    inputs = dict(inputs, input_ids=texts[0][None, :steps], prompt_codes=prompts[0][None, :steps])
    hf_logging.warning_once.cache_clear()  # the reminder is logged once per process
    with logged_warnings() as logged:
        out = _greedy(short, **inputs, max_new_tokens=steps, min_new_tokens=steps)
    assert out.sequences.shape[1] > steps and "maximum length" not in logged.out
    short.config.unified_position_ids = True
    with logged_warnings() as logged:
        _greedy(short, **inputs, max_new_tokens=steps, min_new_tokens=steps)
    assert f"exceeded the model's predefined maximum length ({steps})" in logged.out


def test_a_model_of_fewer_positions_than_the_default_step_limit_generates_with_its_own_defaults():
    """The tuned step limit (12 s) was past the positions of a smaller model, which then refused every call that did
    not set max_new_tokens itself, for a value its user never gave."""
    from valle_hf.configuration import MAX_SECONDS

    default = tiny_config()
    model = reactive_model(tiny_config(max_position_embeddings=MAX_SECONDS * default.frame_rate - 1))
    assert model.generation_config.max_new_tokens == model.config.max_position_embeddings
    texts, prompts = _batch_inputs(model.config)
    out = model.generate(input_ids=texts[0][None], prompt_codes=prompts[0][None], output_audio=False,
                         stopping_criteria=StoppingCriteriaList([_StopAfter(0, 1)]), return_dict_in_generate=True)
    assert out.codes.shape[0] == 1


def test_lengths_that_count_the_input_are_refused_where_a_row_would_get_another_limit_than_alone(tiny_model):
    """min_length counts the AR's input padded to the batch's longest row: a row's run was longer alone than in a
    batch, without a word. min_length beyond the input plus max_new_tokens ran to max_new_tokens."""
    from valle_hf.configuration import SettingError

    texts, prompts = _batch_inputs(tiny_model.config)
    (ids, mask), (codes, codes_mask) = pad(texts[:2], 0, side="right"), pad(prompts[:2], 0, side="right")
    batch = dict(input_ids=ids, attention_mask=mask, prompt_codes=codes, prompt_attention_mask=codes_mask)
    unset = copy.deepcopy(tiny_model)
    unset.generation_config.max_new_tokens = None
    for model, setting, instead in ((tiny_model, "min_length", "min_new_tokens"), (unset, "max_length",
                                                                                    "max_new_tokens")):
        with pytest.raises(SettingError, match=f"^{setting}=200 is not allowed: it must be left out for rows of other "
                                               f"input lengths .* give {instead} \\(AR steps\\) instead$"):
            _greedy(model, **batch, **{setting: 200})
    _greedy(tiny_model, **batch, max_new_tokens=2, max_length=200)  # max_new_tokens in force, as in transformers
    # the model's max_new_tokens stays in force under a max_new_tokens=None (the run's limit): this was refused
    tiny_model.generation_config.max_new_tokens, kept = 2, tiny_model.generation_config.max_new_tokens
    try:
        assert _greedy(tiny_model, **batch, max_new_tokens=None, max_length=200).codes[0].shape[0] <= 2
    finally:
        tiny_model.generation_config.max_new_tokens = kept
    _greedy(tiny_model, **batch, max_new_tokens=2, min_length=1)  # within every row's input: no step asked for
    # speech to text: rows of audio of other lengths
    audio, audio_mask = pad(prompts[:2], 0, side="right")
    with pytest.raises(SettingError, match="^min_length=200 is not allowed: it must be left out for rows of other "):
        tiny_model.generate(audio_codes=audio, audio_attention_mask=audio_mask, task="stt", max_new_tokens=2,
                            min_length=200)
    alone = _greedy(unset, input_ids=texts[0][None], prompt_codes=prompts[0][None], max_length=200, min_length=150)
    twice = _greedy(unset, input_ids=texts[0][None].repeat(2, 1), prompt_codes=prompts[0][None].repeat(2, 1, 1),
                    max_length=200, min_length=150)  # rows of one length: the limits hold for each
    assert torch.equal(twice.codes[0], alone.codes[0]) and torch.equal(twice.codes[1], alone.codes[0])
    input_length = alone.sequences.shape[1] - alone.codes.shape[1]
    with pytest.raises(SettingError, match=f"^min_length={input_length + 9} is not allowed: it must be at most the "
                                           f"input \\({input_length} tokens\\) plus max_new_tokens \\(8\\)"):
        _greedy(tiny_model, input_ids=texts[0][None], prompt_codes=prompts[0][None], max_new_tokens=8,
                min_length=input_length + 9)
    _greedy(tiny_model, input_ids=texts[0][None], prompt_codes=prompts[0][None], max_new_tokens=8,
            min_length=input_length + 8)


def test_the_length_warning_fires_only_when_the_length_limit_ended_the_run(tiny_model):
    texts, prompts = _batch_inputs(tiny_model.config)
    # min_new_tokens keeps the stop token away, so no row ever stops by itself
    inputs = dict(input_ids=texts[0][None], prompt_codes=prompts[0][None], min_new_tokens=8)
    with logged_warnings() as logged:
        out = _greedy(tiny_model, **inputs, max_new_tokens=8)
    assert not out.stopped.any() and "row(s) [0] reached the length limit (max_new_tokens=8" in logged.out
    assert "(raise max_new_tokens)" in logged.out and "--" not in logged.out, logged.out  # the API's words
    input_length = out.sequences.shape[1] - 8
    unset = copy.deepcopy(tiny_model)
    unset.generation_config.max_new_tokens = None
    with logged_warnings() as logged:
        _greedy(unset, **{**inputs, "min_new_tokens": 5}, max_length=input_length + 5)
    assert f"(max_length={input_length + 5}: 5 steps)" in logged.out  # the limit that applied, not max_new_tokens=None
    # max_new_tokens=None in a call is unset: transformers takes the model's, and so does the warning
    own = copy.deepcopy(tiny_model)
    own.generation_config.max_new_tokens = 6
    with logged_warnings() as logged:
        out = _greedy(own, **{**inputs, "min_new_tokens": 6}, max_new_tokens=None)
    assert out.sequences.shape[1] == input_length + 6 and "(max_new_tokens=6: 6 steps)" in logged.out, logged.out
    with logged_warnings() as logged:
        cut = _greedy(tiny_model, **inputs, max_new_tokens=8,
                      stopping_criteria=StoppingCriteriaList([_StopAfter(input_length, 3)]))
        timed = _greedy(tiny_model, **inputs, max_new_tokens=8, max_time=0.0)
    assert cut.sequences.shape[1] == input_length + 3 and timed.sequences.shape[1] < input_length + 8
    assert not cut.stopped.any() and logged.out == ""


def test_warnings_name_rows_by_the_names_given_for_as_many_rows(tiny_model):
    from valle_hf.generation import row_names

    texts, prompts = _batch_inputs(tiny_model.config)
    inputs = dict(input_ids=texts[0][None], prompt_codes=prompts[0][None], min_new_tokens=4, max_new_tokens=4)
    with logged_warnings() as logged, row_names(["utterance 7"]):
        _greedy(tiny_model, **inputs)
    assert "row(s) utterance 7 reached the length limit" in logged.out, logged.out
    with logged_warnings() as logged, row_names(["a", "b"]):  # names for other rows than the output's: positions
        _greedy(tiny_model, **inputs)
    with logged_warnings() as after:  # and the names end with their block
        _greedy(tiny_model, **inputs)
    assert "row(s) [0] reached the length limit" in logged.out and "row(s) [0] reached" in after.out


def test_rows_that_come_out_unspoken_are_warned_about(tiny_model):
    """A row that stops at its first step (empty codes and audio) or decodes to NaN is named in a warning: a caller
    joining or saving the rows would miss it otherwise (the pipeline returns the arrays as they are)."""
    model = copy.deepcopy(tiny_model)
    texts, prompts = _batch_inputs(model.config)
    inputs = dict(input_ids=torch.stack([texts[0], texts[0]]), prompt_codes=torch.stack([prompts[0], prompts[0]]),
                  max_new_tokens=6)
    with logged_warnings() as logged:
        _greedy(model, **inputs, output_audio=True)
    assert "stopped at their first step" not in logged.out and "NaN" not in logged.out
    with torch.no_grad():
        model.classifiers[0].bias[model.config.stop_token_id] = 1e4  # every row stops at once
    with logged_warnings() as logged:
        out = _greedy(model, **inputs, output_audio=True)
    assert out.lengths.tolist() == [0, 0] and [len(row) for row in out.audio] == [0, 0]
    assert "row(s) [0, 1] stopped at their first step: their codes and audio are empty" in logged.out
    with torch.no_grad():
        model.classifiers[0].bias[model.config.stop_token_id] = 0.0
        model.codec_model.decoder.layers[-1].conv.bias.fill_(float("nan"))  # EnCodec's last layer
    with logged_warnings() as logged:
        out = _greedy(model, **inputs, output_audio=True, audio_backend="encodec")
    assert "row(s) [0, 1] decoded to NaN or infinite samples" in logged.out


def test_the_processors_prompt_is_checked_once_not_again_by_generate(tiny_random, tmp_path):
    """A float WAV may peak past 1 (the processor takes a file as it is, and an array a little past 1 alike), and a
    silent prompt is warned about once, not once more per row."""
    import soundfile

    model, processor = tiny_random
    tone = np.sin(np.arange(24000) / 24000 * 2 * np.pi * 220).astype(np.float32)
    soundfile.write(tmp_path / "hot.wav", 1.05 * tone, 24000, subtype="FLOAT")
    soundfile.write(tmp_path / "silent.wav", np.zeros(24000, dtype=np.float32), 24000)
    for name, warnings in (("hot.wav", 0), ("silent.wav", 1)):
        with logged_warnings() as logged:
            batch = processor(["Hi.", "Bye."], prompt_audio=str(tmp_path / name), sampling_rate=24000)
            model.generate(**batch, **PLAIN_SETTINGS, max_new_tokens=2, output_audio=False)
        assert logged.out.count("is silent") == warnings, logged.out
    with pytest.raises(ValueError, match="far outside \\[-1, 1\\]"):  # an array of one's own is checked
        model.generate(input_ids=batch["input_ids"], prompt_audio=[3 * tone], sampling_rate=24000, max_new_tokens=2)


def test_package_warnings_follow_transformers_verbosity(tiny_model):
    texts, prompts = _batch_inputs(tiny_model.config)
    inputs = dict(input_ids=texts[0][None], prompt_codes=prompts[0][None], max_new_tokens=4, min_new_tokens=4)
    verbosity = transformers_logging.get_verbosity()
    try:
        with logged_warnings() as default:
            _greedy(tiny_model, **inputs)
        transformers_logging.set_verbosity_error()
        with logged_warnings() as silenced:
            _greedy(tiny_model, **inputs)
    finally:
        transformers_logging.set_verbosity(verbosity)
    assert "without a stop token" in default.out and silenced.out == ""


@pytest.mark.parametrize("task", ["tts", "stt"])
def test_hidden_states_and_attentions_of_every_step_come_back(task):
    from valle_hf.modeling import VallEForConditionalGeneration

    torch.manual_seed(0)
    model = VallEForConditionalGeneration(tiny_config(attn_implementation="eager")).eval()
    texts, prompts = _batch_inputs(model.config)
    inputs = (dict(input_ids=texts[0][None], prompt_codes=prompts[0][None]) if task == "tts"
              else dict(audio_codes=prompts[0][None], task="stt"))
    out = _greedy(model, **inputs, max_new_tokens=3, min_new_tokens=3, output_hidden_states=True,
                  output_attentions=True)
    layers = model.config.num_hidden_layers
    assert len(out.hidden_states) == 3 and all(len(step) == layers + 1 for step in out.hidden_states)
    assert len(out.attentions) == 3 and all(len(step) == layers for step in out.attentions)
    assert out.hidden_states[0][-1].shape[1] == out.sequences.shape[1] - 3  # the first step reads the whole input


@pytest.mark.parametrize("setting", [dict(assistant_model="self"), dict(prompt_lookup_num_tokens=3),
                                     dict(assistant_early_exit=1)])
def test_speculative_decoding_is_refused_in_one_line(tiny_model, setting):
    texts, prompts = _batch_inputs(tiny_model.config)
    setting = {name: tiny_model if value == "self" else value for name, value in setting.items()}
    with pytest.raises(ValueError, match=f"speculative decoding \\({next(iter(setting))}\\)") as raised:
        _greedy(tiny_model, input_ids=texts[0][None], prompt_codes=prompts[0][None], max_new_tokens=4, **setting)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("task, extra, message", [
    ("tts", "audio", "audio is an input of task='stt', not of task='tts': drop it (a voice prompt is prompt_audio"),
    ("tts", "audio_codes", "audio_codes is an input of task='stt'"),
    ("stt", "input_ids", "input_ids is an input of task='tts', not of task='stt'"),
    ("stt", "prompt_audio", "prompt_audio is an input of task='tts'"),
    ("tts", "prompt_audio", "prompt_codes and prompt_audio given together"),
    ("stt", "audio", "audio_codes and audio given together"),
])
def test_inputs_generate_would_ignore_are_refused(tiny_model, prompt_wav, task, extra, message):
    """A TTS voice given as `audio` (STT's input) was ignored: the speech came out in a random voice."""
    texts, codes = _batch_inputs(tiny_model.config)
    inputs = {"input_ids": texts[0][None], "prompt_codes": codes[0][None]} if task == "tts" else {
        "audio_codes": codes[0][None]}
    values = {"audio": str(prompt_wav), "prompt_audio": str(prompt_wav), "audio_codes": codes[0][None],
              "input_ids": texts[0][None]}
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        _greedy(tiny_model, task=task, **inputs, **{extra: values[extra]}, sampling_rate=24000, max_new_tokens=2)
    _greedy(tiny_model, task=task, **inputs, max_new_tokens=2)


@pytest.mark.parametrize("name", ["prompt_codes", "prompt_audio"])
def test_prompts_for_another_number_of_rows_are_refused_naming_the_argument_given(tiny_model, name):
    """Voice prompts given as audio were refused naming prompt_codes, which the call had not given."""
    texts, codes = _batch_inputs(tiny_model.config)
    ids, mask = pad(texts, 0, side="right")
    prompts = {"prompt_codes": pad(codes[:2], 0, side="right")[0], "prompt_audio": [torch.zeros(2400)] * 2}[name]
    rate = {"sampling_rate": tiny_model.config.sampling_rate} if name == "prompt_audio" else {}
    with pytest.raises(ValueError, match=f"^{name}: got 2 rows for a batch of 3$"):
        _greedy(tiny_model, input_ids=ids, attention_mask=mask, **{name: prompts}, **rate, max_new_tokens=2)


@pytest.mark.parametrize("task, name", [("tts", "input_ids"), ("tts", "prompt_codes"), ("tts", "prompt_audio"),
                                        ("stt", "audio_codes"), ("stt", "audio")])
def test_an_input_on_the_meta_device_is_refused_naming_it(tiny_model, task, name):
    """A tensor on the meta device (shapes, no values) failed deep inside the call with torch's "Cannot copy out of
    meta tensor"; a waveform inside a list of them too."""
    texts, codes = _batch_inputs(tiny_model.config)
    real = {"input_ids": texts[0][None], "prompt_codes": codes[0][None], "audio_codes": codes[0][None],
            "prompt_audio": [torch.zeros(2400)], "audio": [torch.zeros(2400)]}
    inputs = {key: real[key] for key in ((name,) if task == "stt" else ("input_ids", "prompt_codes"))}
    if name == "prompt_audio":
        del inputs["prompt_codes"]
    inputs[name] = [value.to("meta") for value in real[name]] if name.endswith("audio") else real[name].to("meta")
    rate = {"sampling_rate": tiny_model.config.sampling_rate} if name.endswith("audio") else {}
    with pytest.raises(ValueError, match=f"^{name} is on the meta device, which holds shapes but no values"):
        _greedy(tiny_model, task=task, **inputs, **rate, max_new_tokens=2)


@pytest.mark.parametrize("call", ["generate", "processor"])
def test_empty_audio_to_transcribe_is_asked_for_as_such(tiny_model, processor, prompt_wav, call):
    """Speech to text given an empty path was told "for a random voice: prompt_audio=None", a TTS remedy."""
    from valle_hf.errors import VallEValueError

    with pytest.raises(VallEValueError, match=r"^no audio to transcribe given \(an empty path.*: give the audio "
                                              r"file to transcribe$") as error:
        if call == "generate":
            tiny_model.generate(audio=[str(prompt_wav), ""], task="stt")
        else:
            processor(audio=[str(prompt_wav), ""])
    assert "voice" not in str(error.value)
    with pytest.raises(VallEValueError, match=r"^no reference audio given .*prompt_audio=None"):  # a voice prompt
        tiny_model.generate(input_ids=torch.tensor([[1, 5, 2]]), prompt_audio="")


@pytest.mark.parametrize("task, name", [("tts", "prompt_audio"), ("stt", "audio")])
def test_an_empty_list_of_audio_is_refused_naming_its_argument(tiny_model, task, name):
    """generate(audio=[], task="stt") failed inside the padding with "max() arg is an empty sequence", and
    prompt_audio=[] was said to give 0 rows of prompt_codes, which the caller never gave."""
    from valle_hf.errors import VallEValueError

    text = {} if task == "stt" else {"input_ids": torch.tensor([[1, 5, 2]])}
    with pytest.raises(VallEValueError, match=f"^{name} is an empty list: give one source for every row"):
        tiny_model.generate(**text, **{name: []}, task=task, sampling_rate=24000, max_new_tokens=2)


@pytest.mark.parametrize("segment", ["text", "voice prompt", "audio to transcribe"])
def test_a_segment_longer_than_the_models_positions_is_refused(segment):
    """Positions restart in every segment, and a text, a whole voice prompt (input_prompt_length 0) or an audio to
    transcribe past the model's last position was spoken as noise without a word; one that fills them runs."""
    from valle_hf.errors import VallEValueError
    from valle_hf.generation import row_names

    model = reactive_model(tiny_config(max_position_embeddings=240))  # above the default 3 s prompt's 225 frames
    limit = model.config.max_position_embeddings

    def inputs(length: int) -> dict:
        codes = torch.full((1, length, model.config.num_rvq_levels), 5)
        if segment == "audio to transcribe":
            return dict(audio_codes=codes, task="stt")
        text, prompt = (length, 4) if segment == "text" else (3, length)
        return dict(input_ids=torch.full((1, text), 5), prompt_codes=codes[:, :prompt], input_prompt_length=0)

    model.generate(**inputs(limit), max_new_tokens=2, output_audio=False)
    with pytest.raises(VallEValueError, match=fr"^the {segment} of row\(s\) \[0\] is {limit + 1} .* long, and this "
                                              f"model has positions for {limit}: "):
        model.generate(**inputs(limit + 1), max_new_tokens=2, output_audio=False)
    with row_names(["id 'long'"]), pytest.raises(VallEValueError, match=fr"^the {segment} of row\(s\) id 'long' is"):
        model.generate(**inputs(limit + 1), max_new_tokens=2, output_audio=False)  # a corpus row, by its id


@pytest.mark.parametrize("prefix", ["voice prompt", "silence"])
def test_the_responses_prefix_and_its_steps_share_its_positions(prefix):
    """The response starts with the voice prompt (input_prompt_prefix) or prefix_silence, then adds up to
    max_new_tokens frames in the same segment: a prefix and steps that fit the positions each, but not together,
    ran past the model's last position without a word."""
    from valle_hf.configuration import SettingError
    from valle_hf.errors import VallEValueError

    model = reactive_model(tiny_config(max_position_embeddings=240))
    limit, frames = model.config.max_position_embeddings, model.config.seconds_to_frames(2)
    codes = torch.full((1, frames, model.config.num_rvq_levels), 5)
    inputs = dict(input_ids=torch.full((1, 3), 5), prompt_codes=codes, input_prompt_length=0, output_audio=False)
    if prefix == "voice prompt":
        inputs["input_prompt_prefix"] = True
        error = (VallEValueError, fr"^the voice prompt of row\(s\) \[0\] is {frames} frames long, and this model has "
                                  fr"positions for {limit} \({frames - 1} of them left for it\): .* or lower "
                                  f"max_new_tokens: with input_prompt_prefix it starts the response, which may add "
                                  f"{limit - frames + 1} frames$")
    else:
        inputs["prefix_silence"] = 2
        error = (SettingError, fr"^prefix_silence=2 is not allowed: it must be a number of seconds in "
                               fr"\[0, {(frames - 1) / model.config.frame_rate:g}\] with max_new_tokens="
                               f"{limit - frames + 1} ")
    model.generate(**inputs, max_new_tokens=limit - frames)
    with pytest.raises(error[0], match=error[1]):
        model.generate(**inputs, max_new_tokens=limit - frames + 1)


def test_a_call_without_its_task_input_is_told_what_is_missing_first(tiny_model, prompt_wav):
    """generate(**processor(["hi."]), task="stt") said to drop attention_mask: the mistake is that no audio was
    given (or the task)."""
    text = dict(input_ids=torch.tensor([[1, 5, 2]]), attention_mask=torch.ones(1, 3, dtype=torch.long))
    cases = [
        (dict(**text, task="stt"), "speech-to-text needs audio or audio_codes: generate(**processor(audio=...), "
                                   "task='stt'); attention_mask, input_ids are inputs of task='tts': for that task "
                                   "pass task='tts'"),
        (dict(audio=str(prompt_wav)), "text-to-speech needs input_ids (phoneme ids): generate(**processor(text, "
                                      "prompt_audio=...)); audio is an input of task='stt': for that task pass "
                                      "task='stt'"),
        ({}, "text-to-speech needs input_ids (phoneme ids): generate(**processor(text, prompt_audio=...))"),
    ]
    for inputs, message in cases:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            tiny_model.generate(**inputs, max_new_tokens=2)


def test_generate_in_training_mode_with_dropout_warns_to_call_eval():
    """After Trainer.train() a model is left in training mode; with attention dropout (examples/finetune.py sets
    0.1) every generate call then gave other output, greedy and seeded, without a word."""
    from valle_hf.training import set_attention_dropout

    model = reactive_model()
    texts, prompts = _batch_inputs(model.config)
    inputs = dict(input_ids=texts[0][None], prompt_codes=prompts[0][None], max_new_tokens=2, max_levels=0)
    message = "generate runs in training mode with dropout 0.1 active, so every call gives other output"
    model.train()
    with logged_warnings() as without_dropout:
        _greedy(model, **inputs)
    set_attention_dropout(model, 0.1)
    with logged_warnings() as training:
        _greedy(model, **inputs)
    model.eval()
    with logged_warnings() as evaluating:
        _greedy(model, **inputs)
    model.model.backbone.train()  # a part in training mode drops out as well
    with logged_warnings() as part:
        _greedy(model, **inputs)
    assert training.out.count(message) == 1 and "call model.eval() first" in training.out
    assert part.out.count(message) == 1
    assert "training mode" not in without_dropout.out + evaluating.out


@pytest.mark.parametrize("setting", [
    dict(guidance_scale=2.0), dict(encoder_repetition_penalty=1.5), dict(encoder_no_repeat_ngram_size=2),
    dict(watermarking_config={"bias": 2.0, "seeding_scheme": "lefthash"}), dict(stop_strings=["a"]),
    # transformers' strategies from the Hub: it asked for trust_remote_code=True, which generate refused as unknown
    dict(penalty_alpha=0.6, top_k=4), dict(num_beam_groups=2, num_beams=4, diversity_penalty=1.0),
    dict(diversity_penalty=1.0), dict(force_words_ids=[[5]], num_beams=2), dict(constraints=[]),
    dict(dola_layers="high"), dict(custom_generate="someone/strategy"), dict(token_healing=True),
    # a chunked prefill gave other codes (each chunk read as a whole input)
    dict(prefill_chunk_size=4),
])
def test_transformers_settings_that_cannot_work_on_valle_are_refused_in_one_line(tiny_model, setting):
    """They failed deep inside transformers (index out of range, no vocab_size) or with a misleading message."""
    texts, prompts = _batch_inputs(tiny_model.config)
    inputs = dict(input_ids=texts[0][None], prompt_codes=prompts[0][None], max_new_tokens=2)
    with pytest.raises(ValueError, match=f"^VALL-E does not support {next(iter(setting))} \\(") as raised:
        _greedy(tiny_model, **inputs, **setting)
    assert "\n" not in str(raised.value)
    off = {"guidance_scale": 1.0, "encoder_repetition_penalty": 1.0, "encoder_no_repeat_ngram_size": 0,
           "watermarking_config": None, "stop_strings": None, "penalty_alpha": 0.0, "top_k": 4, "num_beams": 2,
           "num_beam_groups": 1, "diversity_penalty": 0.0, "force_words_ids": None, "constraints": None,
           "dola_layers": None, "custom_generate": None, "token_healing": False, "prefill_chunk_size": None}
    _greedy(tiny_model, **inputs, **{name: off[name] for name in setting})


@pytest.mark.parametrize("name", ["return_dict_in_generate", "use_cache", "renormalize_logits", "output_scores",
                                  "output_hidden_states"])
def test_an_on_off_setting_of_transformers_takes_a_bool_only(tiny_model, name):
    """A string was taken for True: return_dict_in_generate="no" returned the dict output, output_hidden_states="no"
    failed deep in transformers."""
    from valle_hf.configuration import SettingError

    texts, prompts = _batch_inputs(tiny_model.config)
    inputs = dict(input_ids=texts[0][None], prompt_codes=prompts[0][None], max_new_tokens=2)
    with pytest.raises(SettingError, match=f"^{name}='no' is not allowed: it must be True or False$"):
        tiny_model.generate(**inputs, **{"return_dict_in_generate": True, name: "no"})
    out = tiny_model.generate(**inputs, temperature=0.0, output_audio=False, **{name: False})
    assert isinstance(out, list) if name == "return_dict_in_generate" else out is not None


def test_bad_words_are_refused_where_no_head_has_them(tiny_model):
    """transformers said "the following tokens were being biased", without the setting's name."""
    from valle_hf.configuration import SettingError

    texts, prompts = _batch_inputs(tiny_model.config)
    inputs = dict(input_ids=texts[0][None], prompt_codes=prompts[0][None], max_new_tokens=2)
    classes = max(tiny_model.config.head_size(level) for level in range(tiny_model.config.num_heads))
    with pytest.raises(SettingError, match=rf"^bad_words_ids=\[\[1, {classes}\]\] is not allowed: it must be token "
                                           rf"ids in 0\.\.{classes - 1}"):
        _greedy(tiny_model, **inputs, bad_words_ids=[[1, classes]])
    for value in ("x", [], [[]], [[1, -1]]):
        with pytest.raises(SettingError, match="^bad_words_ids=.* it must be a non-empty list of non-empty lists"):
            _greedy(tiny_model, **inputs, bad_words_ids=value)
    greedy = _greedy(tiny_model, **inputs).sequences[0, -2]
    banned = _greedy(tiny_model, **inputs, bad_words_ids=[[int(greedy)]]).sequences[0, -2]
    assert banned != greedy  # the ban applies


def test_text_to_speech_settings_given_to_speech_to_text_are_warned_about(tiny_model):
    """They were ignored without a word."""
    _, codes = _batch_inputs(tiny_model.config)
    stt = dict(task="stt", audio_codes=codes[0][None], max_new_tokens=2, temperature=0.0)
    with logged_warnings() as given:
        tiny_model.generate(**stt, nar_temperature=0.5, prefix_silence=1.0)
    assert "nar_temperature, prefix_silence: text-to-speech only; task='stt' ignores them" in given.out
    with logged_warnings() as plain:
        tiny_model.generate(**stt, max_levels=None)  # None: not given
    assert "text-to-speech only" not in plain.out


@pytest.mark.parametrize("task", ["tts", "stt"])
def test_a_misspelt_keyword_is_refused_as_a_type_error_naming_the_closest_setting(tiny_model, task):
    """`generate(temprature=0.5)` failed inside transformers' loop, after the prompt was encoded, with a bare
    ValueError about "model_kwargs"; a keyword given as None is not set, as for any setting."""
    from valle_hf.errors import VallETypeError

    texts, codes = _batch_inputs(tiny_model.config)
    inputs = dict(input_ids=texts[0][None], prompt_codes=codes[0][None]) if task == "tts" else dict(
        audio_codes=codes[0][None])
    message = r"^generate got unexpected keyword argument\(s\) temprature \(did you mean temperature\?\), colour: not a"
    with pytest.raises(VallETypeError, match=message) as raised:
        _greedy(tiny_model, task=task, **inputs, max_new_tokens=2, temprature=0.5, colour="blue")
    assert isinstance(raised.value, TypeError) and "\n" not in str(raised.value)
    # transformers' own arguments of generate and the model's inputs are no typos
    _greedy(tiny_model, task=task, **inputs, max_new_tokens=2, temprature=None, use_cache=True,
            stopping_criteria=StoppingCriteriaList())


class _RecordingStreamer:
    """A streamer as transformers' loop calls one (put and end), that keeps what it was given."""

    def __init__(self):
        self.put_calls, self.ended = 0, False

    def put(self, value):
        self.put_calls += 1

    def end(self):
        self.ended = True


@pytest.mark.parametrize("argument, value, got", [
    ("streamer", "x", "str"),
    ("streamer", _RecordingStreamer, "the class _RecordingStreamer"),
    ("stopping_criteria", "x", "str"),
    ("stopping_criteria", MaxLengthCriteria(5), "MaxLengthCriteria"),
    ("stopping_criteria", [MaxLengthCriteria], "a list holding the class MaxLengthCriteria"),
    ("logits_processor", ["x"], "a list holding str"),
    ("logits_processor", LogitsProcessorList([None]), "a list holding NoneType"),
])
@pytest.mark.parametrize("task", ["tts", "stt"])
def test_generation_hooks_that_cannot_be_called_are_refused_by_name(tiny_model, task, argument, value, got):
    """A string, a class or a bare criterion failed deep inside transformers' loop (AttributeError, TypeError), after
    the voice prompt was encoded; instances, lists of them and plain callables are taken, and called."""
    from valle_hf.errors import VallETypeError

    texts, codes = _batch_inputs(tiny_model.config)
    inputs = dict(input_ids=texts[0][None], prompt_codes=codes[0][None]) if task == "tts" else dict(
        audio_codes=codes[0][None])
    with pytest.raises(VallETypeError, match=rf"^{argument} must be .*, got {got}$"):
        _greedy(tiny_model, task=task, **inputs, max_new_tokens=2, **{argument: value})
    streamer, seen = _RecordingStreamer(), []
    _greedy(tiny_model, task=task, **inputs, max_new_tokens=2, streamer=streamer,
            stopping_criteria=[lambda ids, scores, **kwargs: torch.zeros(len(ids), dtype=torch.bool)],
            logits_processor=LogitsProcessorList([lambda ids, scores: seen.append(len(ids)) or scores]))
    assert streamer.put_calls and streamer.ended and seen


@pytest.mark.parametrize("task", ["tts", "stt"])
def test_an_audio_streamer_given_as_streamer_is_refused_naming_audio_streamer(tiny_model, task, tmp_path):
    """`streamer=` is transformers' token streamer: an AudioIteratorStreamer there was handed token ids without a
    word (its reader then found tensors where chunks belong), an AudioFileStreamer failed with an AttributeError."""
    from valle_hf.errors import VallETypeError
    from valle_hf.streaming import AudioFileStreamer, AudioIteratorStreamer

    texts, codes = _batch_inputs(tiny_model.config)
    inputs = dict(input_ids=texts[0][None], prompt_codes=codes[0][None]) if task == "tts" else dict(
        audio_codes=codes[0][None])
    file_streamer = AudioFileStreamer(tmp_path / "out.wav", tiny_model.config.sampling_rate)
    for streamer in (AudioIteratorStreamer(), file_streamer):
        name = type(streamer).__name__
        with pytest.raises(VallETypeError, match=rf"^streamer= .* but {name} streams audio: pass it as audio_streamer"):
            _greedy(tiny_model, task=task, **inputs, max_new_tokens=2, streamer=streamer)
    file_streamer.abort()


def test_a_forced_end_token_past_every_head_is_refused_before_generating(tiny_model):
    """forced_eos_token_id=99999 failed inside transformers' processor with an IndexError."""
    from valle_hf.configuration import SettingError

    texts, codes = _batch_inputs(tiny_model.config)
    with pytest.raises(SettingError, match=r"^forced_eos_token_id=99999 is not allowed: it must be token ids in 0\.\."):
        _greedy(tiny_model, input_ids=texts[0][None], prompt_codes=codes[0][None], max_new_tokens=2,
                forced_eos_token_id=99999)


# --- mutation-run survivors (tests/MUTATION.md) ----------------------------------------------------------------


def test_text_ids_from_the_vocab_size_up_are_refused(tiny_model):
    size = tiny_model.config.text_vocab_size
    for top in (size, size + 1):
        with pytest.raises(ValueError, match=f"^input_ids must be phoneme ids in 0..{size - 1}$"):
            _greedy(tiny_model, input_ids=torch.tensor([[1, top - 1, top]]), max_new_tokens=2)
    _greedy(tiny_model, input_ids=torch.tensor([[1, size - 1]]), max_new_tokens=2)  # the last id is a phoneme


def test_ids_and_codes_outside_their_vocabularies_are_refused(tiny_model):
    """A text id below 0, and a code below 0 or from the codebook size up (the stop token's id), in a voice prompt or
    in audio to transcribe, are refused naming the range: read as embeddings they would index past their table."""
    config = tiny_model.config
    size, levels = config.audio_vocab_size, config.num_rvq_levels
    with pytest.raises(ValueError, match=f"^input_ids must be phoneme ids in 0..{config.text_vocab_size - 1}$"):
        _greedy(tiny_model, input_ids=torch.tensor([[1, -1, 2]]), max_new_tokens=2)
    for code in (-1, size, size + 1):
        codes = torch.full((1, 4, levels), size - 1)
        codes[0, 2, levels - 1] = code
        with pytest.raises(ValueError, match=f"^prompt_codes must be EnCodec codes in 0..{size - 1}$"):
            _greedy(tiny_model, input_ids=torch.tensor([[1, 5, 2]]), prompt_codes=codes, max_new_tokens=2)
        with pytest.raises(ValueError, match=f"^audio_codes must be EnCodec codes in 0..{size - 1}$"):
            _greedy(tiny_model, audio_codes=codes, task="stt", max_new_tokens=2)
    _greedy(tiny_model, input_ids=torch.tensor([[1, 5, 2]]), prompt_codes=torch.full((1, 4, levels), size - 1),
            max_new_tokens=2)  # the last code is a code


def test_codes_returned_without_a_dict_are_each_rows_own_frames(tiny_model):
    """`output_audio=False` without `return_dict_in_generate` returns each row's codes cut to its length, not the
    batch's right-padded tensor row (rows that stopped at different steps)."""
    from valle_hf.layout import pad

    model = copy.deepcopy(tiny_model)
    with torch.no_grad():  # sampled rows stop after a few steps, each at its own (as tests/test_seeding.py's model)
        model.classifiers[0].bias[model.config.stop_token_id] += 6.5
    texts, prompts = _batch_inputs(model.config)
    ids, mask = pad(texts, 0, side="right")
    codes, codes_mask = pad(prompts, 0, side="right")
    inputs = dict(input_ids=ids, attention_mask=mask, prompt_codes=codes, prompt_attention_mask=codes_mask,
                  **PLAIN_SETTINGS, max_new_tokens=30, max_levels=1, output_audio=False, seeds=[5, 6, 7])
    out = model.generate(**inputs, return_dict_in_generate=True)
    assert len(set(out.lengths.tolist())) > 1
    rows = model.generate(**inputs)
    assert len(rows) == len(texts)
    assert all(torch.equal(row, padded[:length]) for row, padded, length in zip(rows, out.codes, out.lengths,
                                                                                  strict=True))


def test_one_unbatched_row_is_a_batch_of_one(tiny_model):
    texts, prompts = _batch_inputs(tiny_model.config)
    kwargs = dict(max_new_tokens=5, min_new_tokens=5)
    batched = _greedy(tiny_model, input_ids=texts[0][None], prompt_codes=prompts[0][None], **kwargs)
    alone = _greedy(tiny_model, input_ids=texts[0], prompt_codes=prompts[0], **kwargs)
    assert torch.equal(alone.codes, batched.codes) and torch.equal(alone.lengths, batched.lengths)


def test_stt_returns_the_logits_it_was_asked_for():
    model = reactive_model(seed=2)
    _, audios = _batch_inputs(model.config, seed=3)
    out = model.generate(audio_codes=audios[0][None], task="stt", temperature=0.0, max_new_tokens=6,
                         min_new_tokens=6, return_dict_in_generate=True, output_logits=True, output_scores=True)
    assert out.logits is not None and len(out.logits) == len(out.scores) == 6
    steps = out.sequences[0, -6:]
    assert torch.equal(torch.stack([step[0].argmax() for step in out.logits]), steps)  # greedy: the argmax of each


def test_a_prompt_shared_by_the_rows_is_encoded_once(tiny_model, monkeypatch):
    from valle_hf import generation

    calls = []

    def counting(codec, waveform, *args, **kwargs):
        calls.append(waveform.shape)
        return encode(codec, waveform, *args, **kwargs)

    monkeypatch.setattr(generation, "encode", counting)
    rate = tiny_model.config.sampling_rate
    wave = np.random.default_rng(0).uniform(-0.5, 0.5, rate).astype(np.float32)
    texts = torch.tensor([[1, 40, 41, 2], [1, 42, 43, 2]])
    shared = _greedy(tiny_model, input_ids=texts, prompt_audio=[wave, wave.copy()], sampling_rate=rate,
                     max_new_tokens=3)
    assert len(calls) == 1
    calls.clear()
    other = wave[::-1].copy()
    different = _greedy(tiny_model, input_ids=texts, prompt_audio=[wave, other], sampling_rate=rate,
                        max_new_tokens=3)
    assert len(calls) == 2
    assert torch.equal(different.codes[0], shared.codes[0])


def test_a_sampling_rate_per_row_must_have_one_value_per_row(tiny_model):
    rate = tiny_model.config.sampling_rate
    wave = np.zeros(rate // 2, dtype=np.float32)
    with pytest.raises(ValueError, match=r"^sampling_rate: got 3 values for 2 rows; give one, or one per row$"):
        _greedy(tiny_model, input_ids=torch.tensor([[1, 40, 2], [1, 41, 2]]), prompt_audio=[wave, wave],
                sampling_rate=[rate] * 3, max_new_tokens=2)


def test_each_row_is_cut_at_its_own_stop_token_or_padding():
    from valle_hf.generation import _cut_at_stop

    vocab, stop = 10, 9
    tokens = torch.tensor([[5, 6, stop, 1], [5, stop, 2, 3], [4, vocab, stop, 1], [1, 2, 3, 4]])
    rows, stopped = _cut_at_stop(tokens, stop, vocab)
    assert [row.tolist() for row in rows] == [[5, 6], [5], [4], [1, 2, 3, 4]]
    assert stopped.tolist() == [True, True, False, False]  # row 2 was padded (ended by a criterion) first


def test_ids_of_the_wrong_rank_are_refused_naming_the_shape(tiny_model):
    with pytest.raises(ValueError, match=r"^input_ids must have 2 dimensions \(\[batch, \.\.\.\]\), got shape "
                                         r"\(1, 1, 3\)$"):
        _greedy(tiny_model, input_ids=torch.tensor([[[1, 40, 2]]]), max_new_tokens=2)


def test_inputs_that_are_not_tensors_are_refused_naming_them(tiny_model):
    """Lists and the processor's numpy output met `.to(device)` deep inside generate (AttributeError)."""
    texts, codes = _batch_inputs(tiny_model.config)
    ids, prompt = texts[0][None], codes[0][None]
    for inputs, name in (
        (dict(input_ids=ids.tolist(), prompt_codes=prompt), "input_ids"),
        (dict(input_ids=ids.numpy(), prompt_codes=prompt), "input_ids"),
        (dict(input_ids=ids, attention_mask=[[1] * ids.shape[1]], prompt_codes=prompt), "the mask of input_ids"),
        (dict(input_ids=ids, prompt_codes=prompt.numpy()), "prompt_codes"),
        (dict(audio_codes=prompt.tolist(), task="stt"), "audio_codes"),
    ):
        with pytest.raises(TypeError, match=f"^{name} must be a torch tensor, got (list|ndarray): call the processor"):
            _greedy(tiny_model, **inputs, max_new_tokens=2)


def _inert_warnings(model, **settings) -> list[str]:
    """The warnings about settings without effect of one short call of `model` with `settings`."""
    texts, prompts = _batch_inputs(model.config)
    with logged_warnings() as logged:
        model.generate(input_ids=texts[0][None], prompt_codes=prompts[0][None], max_new_tokens=2, max_levels=0,
                       output_audio=False, **settings)
    return [line for line in logged.out.splitlines() if "has no effect without" in line]


def test_a_setting_without_its_switch_warns_once_and_with_it_does_not(tiny_model):
    """--dry-base without --dry-multiplier was accepted without a word, as in the original: nothing applied it."""
    assert _inert_warnings(tiny_model, dry_base=2.0, layer_skip_exit_layer=0) == [
        "dry_base has no effect without dry_multiplier > 0: set dry_multiplier, or drop dry_base",
        "layer_skip_exit_layer has no effect without layer_skip=True: set layer_skip, or drop layer_skip_exit_layer"]
    assert _inert_warnings(tiny_model, dry_base=2.0, dry_multiplier=0.5, layer_skip_exit_layer=0, layer_skip=True) == []
    # a setting given as None is not set (a caller passing every flag, unset ones as None), so it asks for nothing
    assert _inert_warnings(tiny_model, dry_base=None, layer_skip_exit_layer=None) == []


def test_a_prompt_length_without_a_prompt_warns_and_with_one_does_not(tiny_model):
    """It was ignored without a word (the command line's --no-prompt --input-prompt-length 5)."""
    texts, prompts = _batch_inputs(tiny_model.config)

    def warnings(**inputs) -> list[str]:
        with logged_warnings() as logged:
            tiny_model.generate(input_ids=texts[0][None], max_new_tokens=2, max_levels=0, output_audio=False, **inputs)
        return [line for line in logged.out.splitlines() if "has no effect without a voice prompt" in line]

    assert warnings(input_prompt_length=2.0) == [
        "input_prompt_length has no effect without a voice prompt: give one, or drop input_prompt_length"]
    assert warnings(input_prompt_length=2.0, prompt_codes=prompts[0][None]) == []
    assert warnings() == []  # the model's own length asks for nothing
    assert warnings(input_prompt_length=[None]) == []  # nor a row's unset one


def test_a_setting_at_its_default_in_the_models_config_is_not_warned_about_but_one_passed_in_a_config_is(tiny_model):
    """The model's generation config carries every setting, at its default: that asks for nothing."""
    assert tiny_model.generation_config.dry_multiplier == 0
    assert _inert_warnings(tiny_model) == []
    config = copy.deepcopy(tiny_model.generation_config)
    config.dry_base = 2.0
    assert len(_inert_warnings(tiny_model, generation_config=config)) == 1


def test_do_sample_false_with_sampler_settings_warns_naming_do_sample(tiny_model):
    """transformers' do_sample=False decodes greedily; the temperature and top-k given with it were dropped without a
    word (the sampler fields are VALL-E's to apply, so transformers' own warning never came)."""
    from transformers import GenerationConfig

    expected = [f"{name} has no effect without do_sample=True: set do_sample, or drop {name}"
                for name in ("top_k", "temperature")]
    assert _inert_warnings(tiny_model, do_sample=False, temperature=0.7, top_k=5) == expected
    config = GenerationConfig(do_sample=False, temperature=0.7, top_k=5)
    assert _inert_warnings(tiny_model, generation_config=config) == expected[:1]  # a config's temperature: its own
    assert _inert_warnings(tiny_model, do_sample=False) == []  # the model's temperature is what it turns off
    assert _inert_warnings(tiny_model, temperature=0.0, top_k=5) == [
        "top_k has no effect without temperature > 0: set temperature, or drop top_k"]
    # a command line has no do_sample (a model saved with do_sample=False): its temperature flag turns sampling on
    from valle_hf.cli import FLAG_NAMES
    from valle_hf.generation import setting_names

    greedy = copy.deepcopy(tiny_model)
    greedy.generation_config.do_sample = False
    with setting_names(FLAG_NAMES):
        assert _inert_warnings(greedy, top_k=5) == [
            "--top-k has no effect without --ar-temp > 0: set --ar-temp, or drop --top-k"]


def test_setting_names_name_the_settings_as_the_caller_does_once_per_context(tiny_model):
    from valle_hf.cli import FLAG_NAMES
    from valle_hf.generation import setting_names

    with setting_names(FLAG_NAMES):
        first = _inert_warnings(tiny_model, temperature=0.0, top_k=5, layer_skip_varentropy_threshold=0.3)
        again = _inert_warnings(tiny_model, temperature=0.0, top_k=5, layer_skip_varentropy_threshold=0.3)
    assert first == ["--top-k has no effect without --ar-temp > 0: set --ar-temp, or drop --top-k",
                     "--layer-skip-varentropy-threshold has no effect without --layer-skip: set --layer-skip, or drop "
                     "--layer-skip-varentropy-threshold"]
    assert again == []  # a corpus spoken in many calls says it once
    assert len(_inert_warnings(tiny_model, temperature=0.0, top_k=5)) == 1  # each call again outside the context


@pytest.mark.parametrize(("floating", "integer"), [(np.float32, np.int64), (torch.tensor, torch.tensor)],
                         ids=["numpy", "torch"])
def test_numpy_and_torch_scalar_settings_work_as_the_python_numbers_they_hold(tiny_model, tmp_path, floating,
                                                                             integer):
    """A temperature from `np.linspace` (or a 0-d tensor) was refused as out of range ("must be ... >= 1e-06"), and
    a config holding one could not be saved (numpy scalars are not JSON)."""
    from valle_hf.configuration import VallEGenerationConfig
    from valle_hf.errors import VallEValueError

    texts, prompts = _batch_inputs(tiny_model.config)
    inputs = dict(input_ids=texts[0][None], prompt_codes=prompts[0][None], output_audio=False,
                  return_dict_in_generate=True, seeds=[5])
    python = tiny_model.generate(**inputs, max_new_tokens=8, temperature=float(np.float32(0.7)), top_k=3,
                                 nar_temperature=0.5, dry_multiplier=0.5, dry_sequence_breakers=[1])
    scalars = tiny_model.generate(**inputs, max_new_tokens=integer(8), temperature=floating(0.7), top_k=integer(3),
                                  nar_temperature=floating(0.5), dry_multiplier=floating(0.5),
                                  dry_sequence_breakers=[integer(1)])
    assert torch.equal(python.codes, scalars.codes)
    config = VallEGenerationConfig(temperature=floating(0.7), top_k=integer(3))
    assert config.do_sample is True and type(config.temperature) is float and type(config.top_k) is int
    config.save_pretrained(tmp_path)
    config.top_p = floating(0.5)
    with pytest.raises(VallEValueError, match=rf"top_p={re.escape(repr(config.top_p))}.*convert with .item\(\)"):
        config.validate()
    config.top_p = floating(2.0)  # out of range: the scalar's type is not what is wrong with it
    with pytest.raises(VallEValueError, match=rf"top_p={re.escape(repr(config.top_p))} is not allowed: it must be a "
                                              r"number in \(0, 1\] \(1 = off\)$"):
        config.validate()


class _CudnnAttentionAtEachStep:
    """A logits processor that records whether cuDNN's attention was on at each decoding step."""

    def __init__(self):
        self.seen = []

    def __call__(self, input_ids, scores):
        self.seen.append(torch.backends.cuda.cudnn_sdp_enabled())
        return scores


@pytest.mark.parametrize("task", ["tts", "stt"])
def test_decoding_steps_run_without_cudnn_attention(tiny_model, task):
    """cuDNN's attention builds an execution plan for each new key length, that is at every cached step: 16-bit
    steps of the released model took 42-48 ms on an H200 instead of 8-9 ms. The steps run without it, and the
    switch is back on after the call."""
    before = torch.backends.cuda.cudnn_sdp_enabled()
    torch.backends.cuda.enable_cudnn_sdp(True)
    try:
        recorder = _CudnnAttentionAtEachStep()
        if task == "tts":
            text, prompt = _batch_inputs(tiny_model.config)
            _greedy(tiny_model, input_ids=text[0][None], prompt_codes=prompt[0][None], max_new_tokens=4,
                    min_new_tokens=4, max_levels=0, logits_processor=[recorder])
        else:
            tiny_model.generate(audio_codes=_batch_inputs(tiny_model.config)[1][0][None], task="stt",
                                temperature=0.0, max_new_tokens=4, min_new_tokens=4, logits_processor=[recorder])
        assert recorder.seen == [False] * 4
        assert torch.backends.cuda.cudnn_sdp_enabled()
    finally:
        torch.backends.cuda.enable_cudnn_sdp(before)
