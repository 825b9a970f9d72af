"""model.generate(): the original's end-to-end greedy runs, cache/batch/static-cache equivalences, STT, options."""

from __future__ import annotations

import pytest
import torch
from conftest import PLAIN_SETTINGS, original_generate_kwargs, tiny_config


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
    with pytest.warns(UserWarning, match="without a stop token") if not case["stop_token_emitted"] else _no_warning():
        out = fixture_model.generate(**tts_inputs(fixtures, case), **original_generate_kwargs(case), output_audio=False,
                                     return_dict_in_generate=True)
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


class _no_warning:
    def __enter__(self):
        import warnings

        self._context = warnings.catch_warnings()
        self._context.__enter__()
        warnings.simplefilter("error", UserWarning)

    def __exit__(self, *exc):
        return self._context.__exit__(*exc)


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
    from valle_hf.layout import pad, segment_position_ids

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
    case = e2e_case(fixtures, "tts_e2e_greedy")
    inputs = tts_inputs(fixtures, case)
    steps = case["ar_kwargs"]["max_steps"]
    expected = _greedy(fixture_model, **inputs, max_new_tokens=steps)
    torch._dynamo.reset()
    original_forward = fixture_model.forward
    fixture_model.forward = torch.compile(original_forward, backend="aot_eager")
    try:
        compiled = _greedy(fixture_model, **inputs, max_new_tokens=steps, cache_implementation="static")
    finally:
        fixture_model.forward = original_forward
    assert torch.equal(expected.codes, compiled.codes)


def test_tts_batch_equals_items_alone():
    from valle_hf.modeling import VallEForConditionalGeneration

    torch.manual_seed(1)
    model = VallEForConditionalGeneration(tiny_config()).eval()
    texts, prompts = _batch_inputs(model.config)
    from valle_hf.layout import pad

    ids, mask = pad(texts, 0, side="right")
    codes, codes_mask = pad(prompts, 0, side="right")
    batch = _greedy(model, input_ids=ids, attention_mask=mask, prompt_codes=codes, prompt_attention_mask=codes_mask,
                    max_new_tokens=15)
    for row, (text, prompt) in enumerate(zip(texts, prompts, strict=True)):
        alone = _greedy(model, input_ids=text[None], prompt_codes=prompt[None], max_new_tokens=15)
        assert batch.lengths[row] == alone.lengths[0]
        assert torch.equal(batch.codes[row, : batch.lengths[row]], alone.codes[0, : alone.lengths[0]])


def test_stt_batch_equals_items_alone():
    from valle_hf.layout import pad
    from valle_hf.modeling import VallEForConditionalGeneration

    torch.manual_seed(2)
    model = VallEForConditionalGeneration(tiny_config()).eval()
    _, audios = _batch_inputs(model.config, seed=3)
    codes, mask = pad(audios, 0, side="right")
    batch = model.generate(audio_codes=codes, audio_attention_mask=mask, task="stt", temperature=0.0,
                           max_new_tokens=12)
    for row, audio in enumerate(audios):
        alone = model.generate(audio_codes=audio[None], task="stt", temperature=0.0, max_new_tokens=12)
        assert torch.equal(batch[row], alone[0])


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


def test_input_prompt_prefix_and_no_prompt(tiny_model):
    texts, prompts = _batch_inputs(tiny_model.config)
    out = _greedy(tiny_model, input_ids=texts[0][None], prompt_codes=prompts[0][None], input_prompt_prefix=True,
                  max_new_tokens=5, min_new_tokens=5)
    assert out.lengths.tolist() == [5]  # the prompt prefix is not part of the output
    out = _greedy(tiny_model, input_ids=texts[0][None], max_new_tokens=5, min_new_tokens=5)
    assert out.codes.shape == (1, 5, tiny_model.config.num_rvq_levels)


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
    ],
)
def test_bad_inputs_give_clear_errors(tiny_model, kwargs, message):
    from valle_hf.errors import VallEValueError

    with pytest.raises(VallEValueError, match=message):
        tiny_model.generate(max_new_tokens=2, output_audio=False, **kwargs)


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
    with pytest.raises(ValueError, match="input_prompt_length"):
        _greedy(tiny_model, input_ids=texts[0][None], prompt_codes=prompt[None], max_new_tokens=2,
                input_prompt_length=-1.0)


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

    from valle_hf.audio import load_audio
    from valle_hf.codec import encode

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
    with pytest.raises(ValueError, match="no Vocos|has none"):
        _greedy(tiny_model, **inputs, audio_backend="vocos")
    with pytest.raises(ValueError, match="audio_backend=.griffin-lim. is not allowed"):
        _greedy(tiny_model, **inputs, audio_backend="griffin-lim")
