"""VallEConfig: validation that names the field, the unified id space, head sizes, sub-configs, the backbone."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from conftest import tiny_config
from transformers import EncodecConfig, LlamaConfig

from valle_hf.configuration import CODEC_CODEBOOK_SIZE, VallEConfig, VallEGenerationConfig
from valle_hf.errors import VallEValueError
from valle_hf.vocos import VocosConfig


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(hidden_size=0), "hidden_size"),
        (dict(hidden_size=30, num_attention_heads=4), "hidden_size"),  # not divisible by the heads
        (dict(num_hidden_layers=0), "num_hidden_layers"),
        (dict(num_attention_heads=-2), "num_attention_heads"),
        (dict(intermediate_size=0), "intermediate_size"),
        (dict(text_vocab_size=0), "text_vocab_size"),
        (dict(audio_vocab_size=-1), "audio_vocab_size"),
        (dict(codec_config=dict(sampling_rate=16000)), "codec_config"),  # VALL-E reads EnCodec 24 kHz codes
        (dict(codec_config=dict(codebook_size=512)), "codec_config"),  # one code per audio vocabulary entry
        (dict(codec_config=dict(upsampling_ratios=[8, 5, 4, 4])), "codec_config"),  # 640 samples a frame, not 320
        (dict(codec_config=dict(audio_channels=2)), "codec_config"),  # stereo codes
        (dict(num_rvq_levels=1, silence_codes=[0]), "num_rvq_levels"),
        (dict(num_rvq_levels=2, silence_codes=[0, 0]), "num_rvq_levels"),  # the last level below 3 accepted
        (dict(version=4), "version"),
        (dict(capabilities=["ar", "nar", "len"]), "capabilities"),
        (dict(capabilities=["nar"]), "capabilities"),
        (dict(audio_embedding_sums=False), "audio_embedding_sums"),
        (dict(split_classifiers=False), "split_classifiers"),
        (dict(rms_norm_eps=0.0), "rms_norm_eps"),
        (dict(rope_theta=-1.0), "rope_theta"),
        (dict(audio_backend="griffin-lim"), "audio_backend"),
        (dict(audio_backend="vocos"), "audio_backend"),  # no vocoder_config to decode with
        (dict(silence_codes=[62, 424]), "silence_codes"),
        # values of the wrong type or range, accepted until torch failed on them (or never)
        (dict(num_rvq_levels=8.0), "num_rvq_levels"),
        (dict(num_rvq_levels="8"), "num_rvq_levels"),
        (dict(version="5"), "version"),
        (dict(rms_norm_eps="x"), "rms_norm_eps"),
        (dict(hidden_act="bogus"), "hidden_act"),
        (dict(max_position_embeddings=0), "max_position_embeddings"),
        (dict(num_tasks=0), "num_tasks"),
        (dict(attention_dropout=2.0), "attention_dropout"),
        (dict(attention_dropout=1.0), "attention_dropout"),  # every attention weight dropped: [0, 1) is open at 1
        (dict(silence_codes=[5000] * 8), "silence_codes"),
        (dict(silence_codes=[CODEC_CODEBOOK_SIZE] * 8), "silence_codes"),  # the stop token's id, one past the codes
        (dict(capabilities=["ar"]), "capabilities"),  # the NAR levels ran all the same
        (dict(text_vocab_size=4, text_bos_token_id=4), "text_bos_token_id"),  # one past the last phoneme id
        (dict(text_vocab_size=4, text_eos_token_id=4), "text_eos_token_id"),
    ],
)
def test_invalid_values_are_refused_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=rf"VallEConfig\.?.*{field}") as raised:
        VallEConfig(**overrides)
    assert "\n" not in str(raised.value)


def test_a_model_of_fewer_rvq_levels_takes_the_silence_codes_of_its_levels():
    """A yaml with resp_levels: 4 was refused for silence_codes, a setting no yaml holds: EnCodec's silence at each
    level does not depend on how many levels the model reads."""
    from valle_hf.configuration import SILENCE_CODES

    for levels in (3, 4):
        assert VallEConfig(num_rvq_levels=levels).silence_codes == list(SILENCE_CODES[:levels])


@pytest.mark.parametrize("sizes", [{}, dict(text_vocab_size=130, audio_vocab_size=64, num_rvq_levels=4,
                                            silence_codes=[1, 2, 3, 4], codec_config=dict(codebook_size=64))])
def test_the_unified_id_space_tiles_its_vocabulary(sizes):
    """Response ids, the stop token, text, separator, level tokens, prompt and audio frames, padding: consecutive
    ranges that cover the unified vocabulary exactly once, whatever the sizes."""
    config = VallEConfig(**sizes)
    audio, text, levels = config.audio_vocab_size, config.text_vocab_size, config.num_rvq_levels
    ranges = [
        (0, audio),  # audio codes (or STT text ids) of the response
        (config.stop_token_id, 1),
        (config.text_token_offset, text),
        (config.separator_token_id, 1),
        (config.level_token_offset, levels),
        (config.prompt_frame_token_id, 1),
        (config.audio_frame_token_id, 1),
        (config.pad_token_id, 1),
    ]
    ids = [first + offset for first, count in ranges for offset in range(count)]
    assert ids == list(range(config.pad_token_id + 1))  # padding is the last id
    assert config.stop_token_id == audio and config.eos_token_id == config.stop_token_id


@pytest.mark.parametrize("text_head", [True, False])
def test_head_sizes_match_the_classifiers(text_head):
    from conftest import reactive_model

    config = tiny_config(text_head=text_head, num_rvq_levels=4, silence_codes=[0, 0, 0, 0])
    expected = [config.audio_vocab_size + 1] + [config.audio_vocab_size] * 3 + [config.text_vocab_size] * text_head
    assert config.num_heads == len(expected)
    assert [config.head_size(level) for level in range(config.num_heads)] == expected
    model = reactive_model(config)
    assert [head.out_features for head in model.classifiers] == expected


def test_a_config_saved_with_the_fields_now_read_from_its_codec_loads_with_the_codecs_values(tmp_path):
    """frame_rate, sampling_rate and codec_bandwidth are read from codec_config: a config.json that still holds them
    (as earlier versions saved them) must load, not fail on setting a property, and the codec's values win."""
    config = tiny_config()
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    stale = dict(frame_rate=2 * config.frame_rate, sampling_rate=config.sampling_rate // 2,
                 codec_bandwidth=config.codec_bandwidth / 2)
    (tmp_path / "config.json").write_text(json.dumps({**saved, **stale}))
    loaded = VallEConfig.from_pretrained(tmp_path)
    assert (loaded.frame_rate, loaded.sampling_rate, loaded.codec_bandwidth) == (
        config.frame_rate, config.sampling_rate, config.codec_bandwidth)
    assert not set(stale) & set(loaded.to_dict())


def test_sub_configs_round_trip_through_save_and_load(tmp_path):
    from valle_hf.codec import tiny_random_codec

    codec = tiny_random_codec().config
    vocoder = VocosConfig(hidden_size=32, intermediate_size=64, num_layers=2)
    config = VallEConfig(hidden_size=64, num_attention_heads=4, num_hidden_layers=2, codec_config=codec.to_dict(),
                         vocoder_config=vocoder.to_dict(), silence_codes=list(range(8)))
    assert isinstance(config.codec_config, EncodecConfig) and isinstance(config.vocoder_config, VocosConfig)
    assert config.audio_backend == "vocos"  # a model with a Vocos decodes with it, as the original
    config.save_pretrained(tmp_path)
    loaded = VallEConfig.from_pretrained(tmp_path)
    assert isinstance(loaded.codec_config, EncodecConfig) and isinstance(loaded.vocoder_config, VocosConfig)
    assert loaded.codec_config.to_dict() == config.codec_config.to_dict()
    assert loaded.vocoder_config.to_dict() == config.vocoder_config.to_dict()
    assert loaded.to_dict() == config.to_dict()
    assert loaded.silence_codes == list(range(8)) and loaded.audio_backend == "vocos"
    without = VallEConfig(hidden_size=64, num_attention_heads=4)
    assert without.vocoder_config is None and without.audio_backend == "encodec"
    assert isinstance(without.codec_config, EncodecConfig)


def test_every_field_round_trips_through_save_and_load(tmp_path):
    """Every argument of `VallEConfig`, each at a value other than its default, comes back from config.json as given:
    a field that is not saved, or not read back, would load its default and go unseen where the defaults are used."""
    import inspect

    from valle_hf.codec import tiny_random_codec

    defaults = {name: parameter.default for name, parameter in inspect.signature(VallEConfig).parameters.items()
                if parameter.kind is parameter.POSITIONAL_OR_KEYWORD}
    given = dict(hidden_size=96, num_hidden_layers=3, num_attention_heads=4, intermediate_size=100, hidden_act="silu",
                 rms_norm_eps=1e-5, rope_theta=500.0, max_position_embeddings=1000, attention_dropout=0.25,
                 initializer_range=0.05, text_vocab_size=300, num_rvq_levels=4, num_tasks=3, num_languages=2,
                 num_tones=2, version=6, capabilities=["nar", "ar"], unified_position_ids=True, text_bos_token_id=3,
                 text_eos_token_id=4, silence_codes=[5, 6, 7, 8], codec_config=tiny_random_codec().config.to_dict(),
                 vocoder_config=VocosConfig(hidden_size=32, intermediate_size=64, num_layers=2).to_dict(),
                 audio_backend="encodec", text_head=False)
    # the codec fixes the audio vocabulary; only these two values are supported
    kept = {"audio_vocab_size", "audio_embedding_sums", "split_classifiers"}
    assert set(given) == set(defaults) - kept  # a new field needs a value here
    assert all(given[name] != defaults[name] for name in given)
    config = VallEConfig(**given)
    config.save_pretrained(tmp_path)
    loaded = VallEConfig.from_pretrained(tmp_path)
    for name, expected in given.items():
        values = [getattr(config, name), getattr(loaded, name)]
        if name.endswith("_config"):
            values, expected = [value.to_dict() for value in values], values[0].to_dict()
        assert values == [expected, expected], name


@pytest.mark.parametrize("levels", [4, 8])
def test_the_codec_bandwidth_gives_the_models_rvq_levels(levels):
    """Voice prompts are encoded at `codec_bandwidth`: EnCodec's quantizer must give one code per RVQ level the model
    reads at it."""
    from valle_hf.codec import tiny_random_codec

    config = VallEConfig(num_rvq_levels=levels, silence_codes=[0] * levels)
    assert tiny_random_codec().quantizer.get_num_quantizers_for_bandwidth(config.codec_bandwidth) == levels


def test_backbone_config_is_the_stock_llama_the_original_builds():
    config = tiny_config(hidden_size=48, num_attention_heads=3, num_hidden_layers=5, intermediate_size=100,
                         rms_norm_eps=1e-5, rope_theta=500.0, hidden_act="gelu", max_position_embeddings=4096)
    backbone = config.backbone_config()
    assert isinstance(backbone, LlamaConfig)
    values = {name: getattr(backbone, name) for name in (
        "hidden_size", "num_attention_heads", "num_key_value_heads", "num_hidden_layers", "intermediate_size",
        "rms_norm_eps", "hidden_act", "max_position_embeddings", "attention_bias", "mlp_bias", "head_dim")}
    assert values == dict(hidden_size=48, num_attention_heads=3, num_key_value_heads=3, num_hidden_layers=5,
                          intermediate_size=100, rms_norm_eps=1e-5, hidden_act="gelu", max_position_embeddings=4096,
                          attention_bias=False, mlp_bias=False, head_dim=16)
    assert backbone.rope_parameters["rope_theta"] == 500.0
    assert tiny_config(hidden_size=48, num_attention_heads=3).intermediate_size == 4 * 48  # the original's FFN


def test_length_and_temperature_settings_take_their_whole_range_and_nothing_past_it():
    """A prompt length shorter than a frame (0.001 s) passed every check before the model loaded: refused by
    generate, in its own words."""
    from valle_hf.configuration import FRAME_RATE, SettingError, check_settings

    frame = 1 / FRAME_RATE
    check_settings({"prefix_silence": 3600, "input_prompt_length": [30.0, None, 0, frame], "temperature": 1e-6,
                    "nar_temperature": 0, "dry_allowed_length": 65536})
    for name, value in [("prefix_silence", 3600.5), ("input_prompt_length", 1e308), ("temperature", 9e-7),
                        ("input_prompt_length", 0.99 * frame), ("input_prompt_length", [None, frame / 2]),
                        ("nar_temperature", 1e-45), ("dry_allowed_length", 65537),
                        ("mirostat_tau", 1e39), ("dry_multiplier", 1e39), ("stop_length_penalty", -1e39),
                        ("num_return_sequences", 0), ("num_return_sequences", -1), ("do_sample", "yes")]:
        with pytest.raises(SettingError, match=name):  # 1e39 overflowed the samplers' float32
            check_settings({name: value})
    check_settings({"mirostat_tau": 3.4e38, "stop_length_penalty": -3.4e38})
    # a finite number past float32 is refused for that, not for being infinite ("a finite number >= 1")
    bound = re.escape(", at most 3.4e+38 in magnitude (the samplers compute in float32)") + "$"
    for name, value in [("repetition_penalty", 1e300), ("stop_length_penalty", -1e39), ("mirostat_tau", 10**400)]:
        with pytest.raises(SettingError, match=bound):
            check_settings({name: value})
    for name, value in [("repetition_penalty", 0.5), ("input_prompt_length", 1e308), ("mirostat_tau", -1e39)]:
        with pytest.raises(SettingError) as raised:  # refused by the rule's own words
            check_settings({name: value})
        assert "float32" not in str(raised.value)


@pytest.mark.parametrize("digits", [17, 5000])
def test_a_huge_integer_setting_is_refused_in_its_exponent_form(digits):
    """An integer of over 4,300 digits has no repr (Python refuses to write it): the refusal must still name it,
    rather than fail with Python's own error while writing its message."""
    from valle_hf.configuration import SettingError, VallEConfig, check_settings

    with pytest.raises(SettingError, match=rf"^dry_allowed_length=1e\+{digits - 1} is not allowed: it must be "):
        check_settings({"dry_allowed_length": 10 ** (digits - 1)})
    with pytest.raises(VallEValueError, match=rf"hidden_size must be a positive integer, got -1e\+{digits - 1}$"):
        VallEConfig(hidden_size=-(10 ** (digits - 1)))


@pytest.mark.parametrize(("settings", "most"), [
    ({"do_sample": True, "temperature": 0.0}, 1), ({"do_sample": False, "temperature": 1.0}, 1), ({}, 1),
    ({"num_beams": 3}, 3), ({"do_sample": True}, None), ({"do_sample": True, "temperature": 0.5}, None),
])
def test_takes_per_row_are_those_the_decoding_gives(settings, most):
    """Temperature 0 is greedy decoding here, `do_sample=True` or not: one take per row; beam search gives its beams,
    sampling any number."""
    from valle_hf.configuration import SettingError, check_settings

    check_settings({**settings, "num_return_sequences": most or 64})
    if most is not None:
        with pytest.raises(SettingError, match=f"num_return_sequences={most + 1} is not allowed"):
            check_settings({**settings, "num_return_sequences": most + 1})


@pytest.mark.parametrize(("temperature", "sampling"), [(0.8, True), (0.0, False)])
def test_a_temperature_without_do_sample_says_which_decoding(temperature, sampling):
    """transformers warned that temperature=0.8 without do_sample "may be ignored", while generate sampled with it."""
    from conftest import logged_warnings

    with logged_warnings() as logged:
        config = VallEGenerationConfig(temperature=temperature)
        config.validate()
    assert config.do_sample is sampling and config.is_sampling is sampling
    assert "not valid" not in logged.out and "temperature" not in logged.out, logged.out
    assert VallEGenerationConfig(temperature=temperature, do_sample=not sampling).do_sample is (not sampling)


def test_a_dry_sequence_breaker_past_every_head_is_refused_by_name():
    """An id past int64 failed inside the DRY processor ("Overflow when unpacking long long"): a traceback from the
    CLI, a bare "Error" on the web page; an id past the heads' classes breaks nothing, silently."""
    from valle_hf.configuration import SettingError, check_settings_fit

    config = tiny_config()
    classes = max(config.head_size(level) for level in range(config.num_heads))
    check_settings_fit({"dry_sequence_breakers": [0, classes - 1]}, config)
    for breakers in ([classes], [0, 2**70]):
        with pytest.raises(SettingError, match=rf"dry_sequence_breakers=.* token ids in 0\.\.{classes - 1}"):
            check_settings_fit({"dry_sequence_breakers": breakers}, config)


@pytest.mark.parametrize("tokens", [lambda classes: classes, lambda classes: [0, classes], lambda classes: 2**70])
def test_a_forced_end_token_past_every_head_is_refused_by_name(tokens):
    """transformers' ForcedEOSTokenLogitsProcessor indexed the scores with it: an IndexError, deep in the loop."""
    from valle_hf.configuration import SettingError, check_settings_fit

    config = tiny_config()
    classes = max(config.head_size(level) for level in range(config.num_heads))
    check_settings_fit({"forced_eos_token_id": classes - 1}, config)
    check_settings_fit({"forced_eos_token_id": [0, classes - 1]}, config)
    with pytest.raises(SettingError, match=rf"^forced_eos_token_id=.* token ids in 0\.\.{classes - 1}: "):
        check_settings_fit({"forced_eos_token_id": tokens(classes)}, config)


@pytest.mark.parametrize("name", ["suppress_tokens", "begin_suppress_tokens"])
def test_a_token_to_suppress_past_every_head_is_refused_by_name(tiny_model, name):
    """transformers' processors compare the scores' columns with the ids: one past every head suppressed nothing,
    without a word."""
    from valle_hf.configuration import SettingError, check_settings_fit

    config = tiny_model.config
    classes = max(config.head_size(level) for level in range(config.num_heads))
    check_settings_fit({name: [0, classes - 1]}, config)
    with pytest.raises(SettingError, match=rf"^{name}=\[{classes}\] is not allowed: it must be token ids in "
                                           rf"0\.\.{classes - 1}"):
        tiny_model.generate(input_ids=torch.tensor([[1, 5, 2]]), max_new_tokens=2, **{name: [classes]})


def test_speech_to_texts_forced_end_token_is_one_of_its_text_heads_classes(tiny_model):
    """Speech to text reads the text head, narrower than the audio heads: an id between the two was accepted, then
    an IndexError in transformers' processor."""
    from valle_hf.configuration import SettingError, check_settings_fit

    config = tiny_model.config
    check_settings_fit({"forced_eos_token_id": config.text_vocab_size - 1}, config, "stt")
    check_settings_fit({"forced_eos_token_id": config.text_vocab_size}, config, "tts")
    with pytest.raises(SettingError, match=rf"^forced_eos_token_id={config.text_vocab_size} .* token ids in "
                                           rf"0\.\.{config.text_vocab_size - 1}: this model's text head"):
        tiny_model.generate(audio_codes=torch.zeros(1, 5, config.num_rvq_levels, dtype=torch.long), task="stt",
                            max_new_tokens=2, forced_eos_token_id=config.text_vocab_size)


@pytest.mark.parametrize("name", ["forced_eos_token_id", "eos_token_id"])
@pytest.mark.parametrize("value", [-1, [], [0, -1], True, "2", 2.0])
def test_an_end_token_that_is_no_token_id_is_refused(value, name):
    """A forced end token of -1 indexed the scores from their end (forcing another token, silently); [] left every
    score at -inf. transformers read an eos_token_id of -1 as "never stop" (a warning, then a run to the length
    limit), 2.0 and True as the ids 2 and 1, and [] failed in the sampler chain as an IndexError."""
    from valle_hf.configuration import SettingError, VallEGenerationConfig, check_settings

    with pytest.raises(SettingError, match=rf"{name}=.* it must be a token id \(an integer >= 0\) or a "
                       "non-empty list of them$"):
        check_settings({name: value})
    with pytest.raises(SettingError):
        VallEGenerationConfig(**{name: value})


def test_an_end_token_past_the_heads_is_refused_and_speech_to_text_reads_its_own(tiny_model):
    """An eos_token_id past every head's classes never comes: the run went on to its length limit. Speech to text
    ends on its text head's end token, so the model's own (an audio head's stop token, past the text head) does not
    stop it, and one given to it is refused."""
    from valle_hf.configuration import SettingError, check_settings_fit

    config = tiny_model.config
    classes = max(config.head_size(level) for level in range(config.num_heads))
    check_settings_fit({"eos_token_id": [config.stop_token_id, classes - 1]}, config)
    check_settings_fit({"eos_token_id": config.stop_token_id}, config, "stt")
    audio = torch.zeros(1, 5, config.num_rvq_levels, dtype=torch.long)
    tiny_model.generate(audio_codes=audio, task="stt", max_new_tokens=2, eos_token_id=config.text_eos_token_id)
    with pytest.raises(SettingError, match=rf"^eos_token_id=\[{config.text_eos_token_id}, 0\] is not allowed: it must "
                                           rf"be left out \(or {config.text_eos_token_id}\) with task='stt'"):
        tiny_model.generate(audio_codes=audio, task="stt", max_new_tokens=2,
                            eos_token_id=[config.text_eos_token_id, 0])  # was ignored, without a word
    # another id in the heads ended a TTS row that kept it as an audio code, and was said not to have stopped
    with pytest.raises(SettingError, match=rf"^eos_token_id={config.stop_token_id - 1} is not allowed: it must be "
                                           rf"left out \(or {config.stop_token_id}\) with task='tts', whose AR ends "
                                           "each row on its stop token$"):
        tiny_model.generate(input_ids=torch.tensor([[config.text_bos_token_id, config.text_eos_token_id]]),
                            max_new_tokens=2, eos_token_id=config.stop_token_id - 1)
    for stop in (config.stop_token_id, [config.stop_token_id], (config.stop_token_id,), [config.stop_token_id] * 2,
                 torch.tensor(config.stop_token_id)):
        tiny_model.generate(input_ids=torch.tensor([[config.text_bos_token_id, config.text_eos_token_id]]),
                            max_new_tokens=2, eos_token_id=stop, output_audio=False)
    with pytest.raises(SettingError, match=rf"^eos_token_id={classes} is not allowed: it must be token ids in "
                                           rf"0\.\.{classes - 1}: this model's largest head"):
        tiny_model.generate(input_ids=torch.tensor([[config.text_bos_token_id, config.text_eos_token_id]]),
                            max_new_tokens=2, eos_token_id=classes)


@pytest.mark.parametrize("task", ["tts", "stt"])
def test_a_pad_token_is_the_end_token_or_past_the_heads_classes(tiny_model, task):
    """transformers fills the rows that end early with pad_token_id, and the response is read up to its first id
    past the head's classes: a pad of 0 (a tokenizer's) made such a row's rest audio code 0, silently, and -1 failed
    in the model's embedding."""
    from valle_hf.configuration import SettingError, check_settings, check_settings_fit

    config = tiny_model.config
    stt = task == "stt"
    classes = config.text_vocab_size if stt else config.head_size(0)
    stop = config.text_eos_token_id if stt else config.stop_token_id
    for pad in (stop, classes, config.pad_token_id, None):
        check_settings_fit({"pad_token_id": pad}, config, task)
    last = classes - 2 if stop == classes - 1 else classes - 1  # the last class other than the end token
    for pad in (0, last, config.pad_token_id + 1):
        with pytest.raises(SettingError, match=rf"^pad_token_id={pad} is not allowed: it must be {stop} \(the end "
                                               rf"token\) or an id in {classes}\.\.{config.pad_token_id}, "):
            check_settings_fit({"pad_token_id": pad}, config, task)
    for pad in (-1, 1.5, True, [config.pad_token_id]):
        with pytest.raises(SettingError, match=r"^pad_token_id=.* it must be a token id \(an integer >= 0\)$"):
            check_settings({"pad_token_id": pad})
    with pytest.raises(SettingError, match="^pad_token_id=0 is not allowed"):
        tiny_model.generate(input_ids=torch.tensor([[config.text_bos_token_id, config.text_eos_token_id]]),
                            max_new_tokens=2, pad_token_id=0)


def test_a_least_length_above_the_most_in_force_is_refused(tiny_model):
    """min_new_tokens above max_new_tokens ran to max_new_tokens after a warning that named max_length; max_length
    (and so min_length against it) is in force only without max_new_tokens, as in transformers."""
    from valle_hf.configuration import SettingError, check_settings

    check_settings({"min_new_tokens": 4, "max_new_tokens": 4, "min_length": 9, "max_length": 8})
    check_settings({"min_length": 8, "max_length": 8})
    with pytest.raises(SettingError, match=r"^min_length=9 is not allowed: it must be at most max_length \(8\)"):
        check_settings({"min_length": 9, "max_length": 8})
    most = tiny_model.generation_config.max_new_tokens  # the model's own, in force when a call gives none
    with pytest.raises(SettingError, match=rf"^min_new_tokens={most + 1} is not allowed: it must be at most "
                                           rf"max_new_tokens \({most}\)"):
        tiny_model.generate(input_ids=torch.tensor([[tiny_model.config.text_bos_token_id, 5,
                                                     tiny_model.config.text_eos_token_id]]), min_new_tokens=most + 1)


@pytest.mark.parametrize(("name", "works", "refused"), [
    ("typical_p", [1e-9, 1.0], [0, 1.5]),  # 0 failed deep in transformers' processor; 1.5 was ignored, silently
    ("top_h", [1e-9, 1.0], [0, 1.5]),  # both failed deep in transformers' processor
    ("epsilon_cutoff", [0, 0.999], [1.0, -0.1]),  # ignored outside (0, 1), silently
    ("eta_cutoff", [0, 0.999], [1.0, -0.1]),
])
def test_transformers_own_samplers_take_their_range_and_nothing_past_it(name, works, refused):
    from valle_hf.configuration import SettingError, check_settings

    for value in works:
        check_settings({name: value})
    for value in refused:
        with pytest.raises(SettingError, match=rf"^{name}={value} is not allowed: it must be a number in "):
            check_settings({name: value})


def test_an_exponential_length_penalty_is_a_start_step_and_a_factor(tiny_model):
    """A string failed deep in transformers' processor as a TypeError ("can only concatenate str"); NaN passed."""
    from valle_hf.configuration import SettingError, check_settings

    for value in ((0, 1.5), [3, 0.9]):  # as given, and as generation_config.json saves it
        check_settings({"exponential_decay_length_penalty": value})
    for value in ((-1, 1.5), (1, math.nan), (1.5, 2.0), (1, 2.0, 3)):
        with pytest.raises(SettingError, match=r"^exponential_decay_length_penalty=.* is not allowed: it must be a "
                                               r"pair \(the AR step it starts at, an integer >= 0; "):
            check_settings({"exponential_decay_length_penalty": value})
    with pytest.raises(SettingError, match="^exponential_decay_length_penalty='x' is not allowed"):
        tiny_model.generate(input_ids=torch.tensor([[tiny_model.config.text_bos_token_id,
                                                     tiny_model.config.text_eos_token_id]]),
                            max_new_tokens=2, exponential_decay_length_penalty="x")


def test_the_models_last_level_layer_and_position_are_the_limits_of_its_settings():
    """check_settings_fit's bounds are inclusive of the model's last RVQ level, last layer and last position (in
    frames, or in seconds for the prompt and the silence prefix), and refuse the next one naming the setting; a list
    of prompt lengths (one per row) is read item by item. The silence prefix and the steps share the response's
    positions."""
    from valle_hf.configuration import SettingError, check_settings_fit

    config = tiny_config()
    seconds = config.max_position_embeddings / config.frame_rate
    limits = {"max_levels": config.num_rvq_levels - 1, "layer_skip_exit_layer": config.num_hidden_layers - 1,
              "max_new_tokens": config.max_position_embeddings, "prefix_silence": seconds,
              "input_prompt_length": seconds}
    for name, value in limits.items():
        check_settings_fit({name: value}, config)
        with pytest.raises(SettingError, match=rf"^{name}={value + 1} is not allowed: it must be "):
            check_settings_fit({name: value + 1}, config)
    check_settings_fit({"input_prompt_length": [None, seconds]}, config)
    with pytest.raises(SettingError, match=r"^input_prompt_length=.* is not allowed: it must be "):
        check_settings_fit({"input_prompt_length": [None, seconds + 1]}, config)
    shared = {"prefix_silence": 1, "max_new_tokens": config.max_position_embeddings - config.seconds_to_frames(1)}
    check_settings_fit(shared, config)
    with pytest.raises(SettingError, match=r"^prefix_silence=1 is not allowed: it must be a number of seconds in "
                                           r"\[0, .*\] with max_new_tokens=.* \(or fewer steps\): the silence starts "):
        check_settings_fit({**shared, "max_new_tokens": shared["max_new_tokens"] + 1}, config)


def test_a_dynamic_temperature_floor_of_zero_fights_entropix_and_is_refused():
    """min_temperature 0 is a floor (only < 0 is off), so entropix, which sets each step's temperature, refuses it."""
    from valle_hf.configuration import SettingError, check_settings

    check_settings({"entropix": True, "temperature": 1.0, "min_temperature": -1.0})
    with pytest.raises(SettingError, match=r"^min_temperature=0\.0 is not allowed: it must be < 0 \(off\) with "
                                           "entropix"):
        check_settings({"entropix": True, "temperature": 1.0, "min_temperature": 0.0})


# Each setting that needs a switch: the settings that leave it without effect, and the same with its switch on.
SAMPLING = dict(temperature=0.5, do_sample=True, repetition_penalty=1.5)
INERT_CASES = {
    "dry_base": (dict(dry_base=2.0), dict(dry_base=2.0, dry_multiplier=0.5)),
    "dry_allowed_length": (dict(dry_allowed_length=4), dict(dry_allowed_length=4, dry_multiplier=0.5)),
    "dry_sequence_breakers": (dict(dry_sequence_breakers=[3]), dict(dry_sequence_breakers=[3], dry_multiplier=0.5)),
    "mirostat_eta": (dict(mirostat_eta=0.5), dict(mirostat_eta=0.5, mirostat_tau=3.0)),
    "repetition_penalty_decay": (dict(repetition_penalty=1.0, repetition_penalty_decay=0.5),
                                 dict(repetition_penalty=1.5, repetition_penalty_decay=0.5)),
    "repetition_penalty_mode": (dict(repetition_penalty=1.0, repetition_penalty_mode="per_token"),
                                dict(repetition_penalty=1.5, repetition_penalty_mode="per_token")),
    "repetition_penalty_decay_mode": (dict(repetition_penalty_decay_mode="original"),
                                      dict(repetition_penalty_decay_mode="original", repetition_penalty_decay=0.5)),
    "min_p_keep": (dict(min_p_keep=32), dict(min_p_keep=32, min_p=0.1)),
    "min_temperature": (dict(temperature=0.0, min_temperature=0.1), dict(min_temperature=0.1)),
    "top_k": (dict(temperature=0.0, top_k=5), dict(top_k=5)),
    "top_p": (dict(temperature=0.0, top_p=0.5), dict(top_p=0.5)),
    "min_p": (dict(temperature=0.0, min_p=0.1), dict(min_p=0.1)),
    "mirostat_tau": (dict(temperature=0.0, mirostat_tau=3.0), dict(mirostat_tau=3.0)),
    "entropix": (dict(temperature=0.0, entropix=True), dict(entropix=True)),
    "temperature": (dict(do_sample=False, temperature=0.7), dict(temperature=0.7)),
    "nar_min_temperature": (dict(nar_min_temperature=0.1), dict(nar_min_temperature=0.1, nar_temperature=0.5)),
    "layer_skip_exit_layer": (dict(layer_skip_exit_layer=1), dict(layer_skip_exit_layer=1, layer_skip=True)),
    "layer_skip_entropy_threshold": (dict(layer_skip_entropy_threshold=0.3),
                                     dict(layer_skip_entropy_threshold=0.3, layer_skip=True)),
    "layer_skip_varentropy_threshold": (dict(layer_skip_varentropy_threshold=0.3),
                                        dict(layer_skip_varentropy_threshold=0.3, layer_skip=True)),
}


@pytest.mark.parametrize("setting", sorted(INERT_CASES))
def test_a_setting_without_its_switch_is_inert_and_with_it_is_not(setting):
    from valle_hf.configuration import INERT_WITHOUT, inert_settings

    switch, condition = next((switch, condition) for name, switch, condition, _ in INERT_WITHOUT if name == setting)
    inert, active = (VallEGenerationConfig(**{**SAMPLING, **settings}) for settings in INERT_CASES[setting])
    assert inert_settings(inert, INERT_CASES[setting][0]) == [(setting, switch, condition)]
    assert inert_settings(active, INERT_CASES[setting][1]) == []
    assert inert_settings(inert, set(INERT_CASES[setting][0]) - {setting}) == []  # only a setting asked for


def test_every_setting_that_needs_a_switch_has_a_case():
    from valle_hf.configuration import INERT_WITHOUT

    assert {setting for setting, *_ in INERT_WITHOUT} == set(INERT_CASES)


@pytest.mark.parametrize("setting, off", [("top_k", 0), ("top_p", 1.0), ("min_p", 0.0), ("mirostat_tau", 0.0),
                                          ("min_temperature", -1.0), ("dry_sequence_breakers", []),
                                          ("layer_skip_exit_layer", -1), ("nar_min_temperature", -1.0)])
def test_a_setting_at_its_off_value_is_never_inert(setting, off):
    from valle_hf.configuration import inert_settings

    greedy = VallEGenerationConfig(temperature=0.0, **{setting: off})
    assert inert_settings(greedy, {setting}) == []


@pytest.mark.parametrize("temperature, floor", [("temperature", "min_temperature"),
                                                ("nar_temperature", "nar_min_temperature")])
def test_a_dynamic_temperature_floor_may_reach_its_temperature_and_no_further(temperature, floor):
    from valle_hf.configuration import SettingError, check_settings

    check_settings({temperature: 0.5, floor: 0.5})
    with pytest.raises(SettingError, match=rf"^{floor}=0\.6 is not allowed: it must be at most {temperature} \(0\.5\)"):
        check_settings({temperature: 0.5, floor: 0.6})
