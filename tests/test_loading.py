"""Where models come from: the released model through the real download path (a local Hub on 127.0.0.1), the
embedded tiny-random model, directories, original checkpoints, and one-line errors when nothing can be loaded."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile
import torch
from conftest import logged_warnings
from hub_server import LocalHub
from transformers import LlamaConfig

from valle_hf.loading import RELEASED_CHECKPOINT, RELEASED_REPO, load_model_and_processor

REPO = Path(__file__).resolve().parents[1]
# The README's default commands, word for word.
README_TTS = ["The birch canoe slid on the smooth planks.", "reference.wav", "out.wav"]
README_STT = ["", "speech.wav", "--task", "stt"]


def _cli(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "valle_hf", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def _environment(home: Path, endpoint: str) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "VALLE_HF_"))}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(home), PYTHONPATH=str(REPO / "src"), HF_HUB_DISABLE_TELEMETRY="1")
    return env


@pytest.fixture(scope="module")
def local_hub(tmp_path_factory, fixtures, vocos_checkpoint_dir):
    """The Hub repositories the default command reads: the fixture checkpoint as ecker/vall-e's release, the Vocos
    fixture as charactr/vocos-encodec-24khz, and a tiny EnCodec as facebook/encodec_24khz."""
    from valle_hf.codec import tiny_random_codec

    encodec = tmp_path_factory.mktemp("encodec")
    tiny_random_codec().save_pretrained(encodec)
    repos = {
        RELEASED_REPO: {RELEASED_CHECKPOINT: fixtures.checkpoint},
        "charactr/vocos-encodec-24khz": {name: vocos_checkpoint_dir / name
                                         for name in ("config.yaml", "pytorch_model.bin")},
        "facebook/encodec_24khz": {path.name: path for path in encodec.iterdir()},
    }
    with LocalHub(repos) as hub:
        yield hub


@pytest.mark.subprocess
def test_readme_default_commands_download_convert_once_cache_and_speak(tmp_path, local_hub, prompt_wav):
    home, work = tmp_path / "hf", tmp_path / "work"
    work.mkdir()
    shutil.copy(prompt_wav, work / "reference.wav")
    shutil.copy(prompt_wav, work / "speech.wav")
    env = _environment(home, local_hub.endpoint)

    first = _cli(README_TTS, work, env)
    assert first.returncode == 0, first.stderr
    audio, rate = soundfile.read(work / "out.wav")
    # whole frames, at most the 12 s default (a random model may also stop at once: no length is promised)
    assert rate == 24000 and len(audio) % 320 == 0 and len(audio) <= 12 * rate
    downloaded = {path.split("/resolve/main/")[-1] for path in local_hub.downloads()}
    assert {RELEASED_CHECKPOINT, "config.yaml", "pytorch_model.bin", "model.safetensors"} <= downloaded
    converted = home / "valle_hf" / "ar+nar-llama-8"
    assert (converted / "config.json").is_file() and (converted / "tokenizer.json").is_file()

    requests = len(local_hub.file_requests())
    stt = _cli(README_STT, work, env)
    assert stt.returncode == 0, stt.stderr
    assert len(stt.stdout.splitlines()) == 1  # one line of IPA (noise from a random model; empty if it stops at once)
    again = _cli(README_TTS, work, env)
    assert again.returncode == 0, again.stderr
    assert local_hub.file_requests()[requests:] == []  # converted once: later runs ask the Hub for no file


def test_each_codec_and_vocoder_pair_has_its_own_cached_directory(tmp_path, fixtures, monkeypatch):
    """A run with another decoder (tiny-random's noise, say) converts into a directory of its own: it must never be
    what a later run with the defaults (or another pair) finds in the cache."""
    import valle_hf.conversion
    import valle_hf.loading
    from valle_hf.configuration import DEFAULT_CODEC
    from valle_hf.loading import released_model_directory
    from valle_hf.vocos import DEFAULT_VOCODER

    converted = []

    def convert(checkpoint, *args, codec, vocoder, **kwargs):  # the defaults would download: all pairs convert tiny
        converted.append((codec, vocoder))
        return real_convert(checkpoint, *args, codec="tiny-random", vocoder="tiny-random", **kwargs)

    real_convert = valle_hf.conversion.convert_checkpoint
    monkeypatch.setattr(valle_hf.conversion, "convert_checkpoint", convert)
    monkeypatch.setattr(valle_hf.loading, "hub_file", lambda *args, **kwargs: fixtures.checkpoint)
    pairs = [("tiny-random", "tiny-random"), (DEFAULT_CODEC, DEFAULT_VOCODER), ("tiny-random", None)]
    folders = [released_model_directory(tmp_path, codec, vocoder) for codec, vocoder in pairs]
    assert converted == pairs and len(set(folders)) == 3
    assert folders[1] == tmp_path / "ar+nar-llama-8"  # the defaults' directory, as the README names it
    assert [released_model_directory(tmp_path, codec, vocoder) for codec, vocoder in pairs] == folders
    assert len(converted) == 3  # each pair converted once
    (folders[0] / "config.json").unlink()  # a cache left incomplete is made again
    assert released_model_directory(tmp_path, *pairs[0]) == folders[0] and (folders[0] / "config.json").is_file()


@pytest.mark.parametrize("other_run_saves", ["while_this_one_converts", "just_before_this_one_saves"])
def test_a_cache_another_run_made_meanwhile_is_used_as_it_is(tmp_path, fixtures, converted, monkeypatch,
                                                             other_run_saves):
    """Two first runs at once share one cache: the second to finish deleted the first's directory (which that run
    may be reading), or failed when the first moved its directory in just before its own."""
    import valle_hf.conversion
    import valle_hf.loading
    from valle_hf.loading import released_model_directory

    target = tmp_path / "ar+nar-llama-8"
    real_save = valle_hf.conversion.save_converted

    def other_run():
        real_save(*converted, target)
        (target / "read by the other run").touch()  # gone if this run replaces the directory

    def convert(*args, **kwargs):
        if other_run_saves == "while_this_one_converts":
            other_run()
        return converted

    def save(*args, **kwargs):
        if other_run_saves == "just_before_this_one_saves":
            other_run()
        return real_save(*args, **kwargs)

    monkeypatch.setattr(valle_hf.conversion, "convert_checkpoint", convert)
    monkeypatch.setattr(valle_hf.conversion, "save_converted", save)
    monkeypatch.setattr(valle_hf.loading, "hub_file", lambda *args, **kwargs: fixtures.checkpoint)
    assert released_model_directory(tmp_path) == target
    assert (target / "read by the other run").is_file()
    assert [path.name for path in tmp_path.iterdir()] == [target.name]  # and no leftover of this run's


def test_a_cache_that_cannot_be_written_is_refused_before_downloading(tmp_path, converted_dir, monkeypatch):
    """Its error came after the download and the conversion, and named an --output-dir no one gave; a cache that
    already holds the converted model is only read, so it may be read-only."""
    import valle_hf.loading
    from valle_hf.errors import UsageError
    from valle_hf.loading import RELEASED_FOLDER, released_model_directory

    def download(*args, **kwargs):
        raise AssertionError("downloaded into a cache that cannot keep the conversion")

    monkeypatch.setattr(valle_hf.loading, "hub_file", download)
    access = os.access  # the tests may run as root, who may write anywhere: the folder is read-only for os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path and access(path, mode))
    with pytest.raises(UsageError, match=f"{tmp_path} cannot take a file \\(Permission denied\\); set VALLE_HF_CACHE"):
        released_model_directory(tmp_path)
    shutil.copytree(converted_dir, tmp_path / RELEASED_FOLDER)
    assert released_model_directory(tmp_path) == tmp_path / RELEASED_FOLDER
    monkeypatch.setenv("HOME", str(tmp_path))  # a "~" no shell expanded: the home folder, not a folder named "~"
    assert released_model_directory("~") == tmp_path / RELEASED_FOLDER


@pytest.mark.subprocess
def test_with_the_hub_unreachable_one_line_names_the_offline_choices(tmp_path, prompt_wav):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(prompt_wav, work / "reference.wav")
    result = _cli(README_TTS, work, _environment(tmp_path / "hf", f"http://127.0.0.1:{port}"))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert RELEASED_REPO in errors[0] and "--model tiny-random" in errors[0] and "--model DIR" in errors[0]
    assert not (work / "out.wav").exists()


# ---------------------------------------------------------------------------------------------------- tiny-random


def test_tiny_random_is_deterministic_and_leaves_the_global_rng_alone():
    from valle_hf.loading import tiny_random_model

    torch.manual_seed(5)
    state = torch.get_rng_state()
    first = tiny_random_model().state_dict()
    assert torch.equal(torch.get_rng_state(), state)  # neither reseeded nor advanced
    torch.manual_seed(6)  # another global state: the same model
    again = tiny_random_model().state_dict()
    assert all(torch.equal(value, again[key]) for key, value in first.items())
    other = tiny_random_model(seed=1).state_dict()
    assert not torch.equal(first["model.embeddings.text.weight"], other["model.embeddings.text.weight"])
    assert not torch.equal(first["classifiers.0.weight"], other["classifiers.0.weight"])


def test_tiny_random_model_and_processor_fit_each_other(tiny_random):
    model, processor = tiny_random
    assert len(processor.tokenizer) == model.config.text_vocab_size  # every id the model makes decodes
    ipa = "həlˈoʊ wˈɜːld."
    ids = processor(ipa)["input_ids"][0]
    assert ids[0] == model.config.text_bos_token_id and ids[-1] == model.config.text_eos_token_id
    assert processor.decode(ids) == ipa
    assert model.vocoder is not None and model.config.audio_backend == "vocos"
    assert model.generation_config.max_new_tokens == 2 * model.config.frame_rate
    half, _ = load_model_and_processor("tiny-random", dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    state, half_state = model.state_dict(), half.state_dict()
    assert all(torch.equal(half_state[key], value.to(half_state[key].dtype)) for key, value in state.items())


# ---------------------------------------------------------------------------------------------------- other sources


def _same_weights(model, expected, ignore=("model.backbone.embed_tokens.weight",)) -> bool:
    """Equal state dicts (bar the backbone's unused token table, random at every conversion)."""
    state, reference = model.state_dict(), expected.state_dict()
    return set(state) == set(reference) and all(torch.equal(state[key], reference[key]) for key in reference
                                                 if key not in ignore)


def test_a_converted_directory_loads_with_its_processor_or_the_same_tokenizer(converted_dir, fixture_model, tmp_path,
                                                                              tiny_random, tokenizer_file):
    """--tokenizer with a converted folder: one with the folder's vocabulary is taken, another one is refused (its
    ids would stand for other phonemes), and so is any with tiny-random, which has its own."""
    from valle_hf.errors import VallEValueError
    from valle_hf.processing import VallEProcessor

    model, processor = load_model_and_processor(str(converted_dir))
    assert not model.training and _same_weights(model, fixture_model)
    text = "ðə bˈɜːtʃ"
    packaged = VallEProcessor.from_tokenizer_file(tokenizer_file)  # what the directory was converted with
    assert processor(text)["input_ids"].tolist() == packaged(text)["input_ids"].tolist()
    _, same = load_model_and_processor(str(converted_dir), tokenizer=str(tokenizer_file))
    assert same(text)["input_ids"].tolist() == processor(text)["input_ids"].tolist()
    tiny_random[1].save_pretrained(tmp_path / "tiny")  # another vocabulary
    other = str(tmp_path / "tiny" / "tokenizer.json")
    assert tiny_random[1](text)["input_ids"].tolist() != processor(text)["input_ids"].tolist()
    with pytest.raises(VallEValueError, match="is not the tokenizer .* was converted with"):
        load_model_and_processor(str(converted_dir), tokenizer=other)
    with pytest.raises(VallEValueError, match="does not apply to tiny-random"):
        load_model_and_processor("tiny-random", tokenizer=str(tokenizer_file))


@pytest.mark.parametrize("suffix", [".sft", ".PTH"])
def test_a_converted_directory_named_like_a_checkpoint_file_loads_as_one(converted_dir, fixture_model, tmp_path,
                                                                        prompt_wav, capsys, suffix):
    """The converter writes `--output-dir model.sft`, and its folder was then refused as "a directory, not a checkpoint
    file" by every command (the suffix picked the route); --codec with it is refused as with any converted folder."""
    from valle_hf.cli import main
    from valle_hf.errors import VallEValueError

    named = tmp_path / f"model{suffix}"
    shutil.copytree(converted_dir, named)
    model, _ = load_model_and_processor(str(named))
    assert _same_weights(model, fixture_model)
    with pytest.raises(VallEValueError, match="applies to original checkpoints"):
        load_model_and_processor(str(named), config_yaml=str(tmp_path / "config.yaml"))
    argv = ["Hi.", str(prompt_wav), str(tmp_path / "out.wav"), "--model", str(named), "--codec", "tiny-random"]
    assert main(argv) == 1
    assert "--codec applies when a checkpoint is converted" in capsys.readouterr().err


def test_a_directory_without_tokenizer_config_json_pads_and_decodes_as_a_whole_one(converted_dir, tmp_path):
    """A folder (or Hub upload) with tokenizer.json but not tokenizer_config.json gave a tokenizer with no special
    tokens: a batch of texts failed with a traceback (no pad token), and decoding printed <bos> and </eos>."""
    partial = tmp_path / "without-tokenizer-config"
    shutil.copytree(converted_dir, partial, ignore=shutil.ignore_patterns("tokenizer_config.json"))
    whole, processor = (load_model_and_processor(str(folder))[1] for folder in (converted_dir, partial))
    texts = ["ðə", "ðə bˈɜːtʃ"]
    expected = whole(texts)
    assert {key: value.tolist() for key, value in processor(texts).items()} == {
        key: value.tolist() for key, value in expected.items()}
    assert [processor.decode(ids) for ids in expected["input_ids"]] == texts
    assert processor.tokenizer.special_tokens_map == whole.tokenizer.special_tokens_map  # <unk>, <bos>, </eos> named


def test_an_original_checkpoint_is_converted_on_the_fly(fixtures, fixture_model):
    model, processor = load_model_and_processor(str(fixtures.checkpoint), codec="tiny-random", vocoder="tiny-random")
    assert not model.training and _same_weights(model, fixture_model)
    assert processor("ðə")["input_ids"].tolist() == load_model_and_processor(
        str(fixtures.checkpoint), codec="tiny-random", vocoder="tiny-random")[1]("ðə")["input_ids"].tolist()
    half, _ = load_model_and_processor(str(fixtures.checkpoint), codec="tiny-random", vocoder=None,
                                       dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and half.vocoder is None and half.config.audio_backend == "encodec"
    assert half.model.backbone.rotary_emb.inv_freq.dtype == torch.float32  # as from_pretrained(dtype=...) keeps it


def _assert_same_tensors(ours, theirs):
    for mine, other in ((ours.named_parameters(), theirs.named_parameters()),
                        (ours.named_buffers(), theirs.named_buffers())):
        mine, other = dict(mine), dict(other)
        assert mine.keys() == other.keys()
        for name, tensor in mine.items():
            assert tensor.dtype == other[name].dtype and torch.equal(tensor, other[name]), name


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_16bit_model_built_in_memory_is_the_same_model_loaded_from_a_directory(tmp_path, dtype):
    """tiny-random (like an original checkpoint) is built in memory: in a 16-bit dtype it must be exactly what
    `from_pretrained(dtype=...)` makes of the same weights, where the rotary frequencies stay float32."""
    from valle_hf.modeling import VallEForConditionalGeneration

    built = load_model_and_processor("tiny-random", dtype=dtype)[0]
    load_model_and_processor("tiny-random")[0].save_pretrained(tmp_path)
    _assert_same_tensors(built, VallEForConditionalGeneration.from_pretrained(tmp_path, dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_model_cast_by_its_user_is_the_model_loaded_in_that_dtype(tmp_path, dtype):
    """`model.to(dtype)`, `.half()` and `.bfloat16()` in a notebook keep the codec and the rotary frequencies float32,
    as `from_pretrained(dtype=...)` does (they rounded both: a voice prompt encoded to wrong codes)."""
    from valle_hf.modeling import VallEForConditionalGeneration, VallEModel

    load_model_and_processor("tiny-random")[0].save_pretrained(tmp_path)
    loaded = VallEForConditionalGeneration.from_pretrained(tmp_path, dtype=dtype)
    cast = VallEForConditionalGeneration.from_pretrained(tmp_path)
    shortcut = cast.half if dtype == torch.float16 else cast.bfloat16
    for model in (VallEForConditionalGeneration.from_pretrained(tmp_path).to(dtype),
                  VallEForConditionalGeneration.from_pretrained(tmp_path).to("cpu", dtype=dtype), shortcut()):
        _assert_same_tensors(model, loaded)
    decoder = VallEModel.from_pretrained(tmp_path).to(dtype)  # the decoder alone keeps its rotary frequencies too
    _assert_same_tensors(decoder, VallEModel.from_pretrained(tmp_path, dtype=dtype))
    assert cast.to(torch.float32).codec_model.dtype == torch.float32 and cast.dtype == torch.float32
    moved = VallEForConditionalGeneration.from_pretrained(tmp_path).to("meta", dtype)
    assert {tensor.device.type for tensor in [*moved.parameters(), *moved.buffers()]} == {"meta"}
    assert moved.dtype == dtype and moved.codec_model.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_16bit_model_encodes_a_voice_prompt_as_the_float32_model_does(tmp_path, prompt_wav, dtype):
    """EnCodec's quantizer picks each code by distances that 16 bits round to ties: the codec stays float32, built in
    memory or loaded."""
    from valle_hf.codec import encode
    from valle_hf.modeling import VallEForConditionalGeneration

    full = load_model_and_processor("tiny-random")[0]
    full.save_pretrained(tmp_path)
    waveform = torch.from_numpy(soundfile.read(prompt_wav, dtype="float32")[0])
    expected = encode(full.codec_model, waveform)
    for model in (load_model_and_processor("tiny-random", dtype=dtype)[0],
                  VallEForConditionalGeneration.from_pretrained(tmp_path, dtype=dtype)):
        assert model.dtype == dtype and model.model.backbone.layers[0].mlp.up_proj.weight.dtype == dtype
        assert torch.equal(encode(model.codec_model, waveform), expected)


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="reads the process's memory map (Linux)")
def test_a_16bit_model_keeps_no_mapping_of_its_checkpoint_file(tmp_path):
    """The float32 codec was read from the file without a copy, so the whole file stayed mapped (a 16-bit model
    of the released size held 1 GB more than it needs, the int8 one 1.8 GB instead of 0.7)."""
    import gc

    from valle_hf.modeling import VallEForConditionalGeneration

    load_model_and_processor("tiny-random")[0].save_pretrained(tmp_path)
    (weights,) = tmp_path.glob("*.safetensors")
    model = VallEForConditionalGeneration.from_pretrained(tmp_path, dtype=torch.bfloat16)
    gc.collect()
    assert model.codec_model.dtype == torch.float32 and not any(
        param.requires_grad for param in model.codec_model.parameters())
    assert str(weights) not in Path("/proc/self/maps").read_text()


@pytest.mark.parametrize("name", ["no-such-model", "./missing", "/no/such/dir", "a/b/c"])
def test_a_model_that_does_not_exist_names_the_offline_choices(name):
    """In Python the choices are calls: they named the command line's --model to a caller who has none."""
    from valle_hf.errors import ModelNotFoundError
    from valle_hf.loading import PYTHON_CHOICES

    with pytest.raises(ModelNotFoundError, match="model not found") as raised:
        load_model_and_processor(name)
    assert name in str(raised.value) and PYTHON_CHOICES in str(raised.value) and "\n" not in str(raised.value)
    assert "--model" not in str(raised.value)
    assert isinstance(raised.value, OSError)


def _loader(name: str):
    """A loader of the package by its name ("VallEProcessor.from_pretrained", "load_model"): parametrized tests keep
    their ids readable, and import nothing at collection."""
    import valle_hf
    from valle_hf import loading

    owner, _, method = name.rpartition(".")
    return getattr(getattr(valle_hf, owner), method) if owner else getattr(loading, name)


FROM_PRETRAINED = ["VallEForConditionalGeneration.from_pretrained", "VallEModel.from_pretrained",
                   "VallEProcessor.from_pretrained", "VallEConfig.from_pretrained"]


@pytest.mark.parametrize("name", ["/no/such/dir", "./missing", "../missing", "~/missing", "a/b/c"])
@pytest.mark.parametrize("loader", FROM_PRETRAINED)
def test_from_pretrained_names_a_local_path_that_does_not_exist(name, loader, hub_unreachable):
    """transformers read such a path as a Hub id of the wrong form ("Repo id must be in the form ...")."""
    from valle_hf.errors import ModelNotFoundError

    what, looked = "processor" if "Processor" in loader else "model", re.escape(os.path.expanduser(name))
    with pytest.raises(ModelNotFoundError, match=f"^the {what} {looked} cannot be found: {looked} is no folder here"):
        _loader(loader)(name)


@pytest.mark.parametrize("loader", [*FROM_PRETRAINED, "load_model", "load_model_and_processor"])
def test_a_models_folder_under_the_home_folder_is_found_by_its_tilde(converted_dir, tmp_path, monkeypatch, loader):
    """A "~" in a Python string (or in quotes on a command line) is no shell's to expand: "~/model" was looked for in
    a folder named "~" here."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "model").symlink_to(converted_dir)
    assert _loader(loader)("~/model") is not None


# None is the released model to load_model_and_processor
@pytest.mark.parametrize("loader, name", [(loader, name) for loader in [*FROM_PRETRAINED, "load_model"]
                                          for name in (None, 5, b"folder")]
                         + [("load_model_and_processor", 5), ("load_model_and_processor", b"folder")])
def test_a_name_that_is_no_str_or_path_is_refused_at_once(loader, name, hub_unreachable):
    """transformers asked the Hub for None or 5, retrying for half a minute, then raised an OSError; load_model
    failed inside pathlib."""
    from valle_hf.errors import VallETypeError

    what = "processor" if "Processor" in loader else "model"
    with pytest.raises(VallETypeError, match=f"^the {what}'s name must be a folder's path or a Hub id, as a str or "
                       f"os.PathLike, got {type(name).__name__}$"):
        _loader(loader)(name)


def test_from_pretrained_takes_a_path_object_and_none_with_a_state_dict(converted_dir, fixture_model):
    """None is transformers' "no files" for weights given in memory; a Path is a folder's name as a str is. Weights
    in memory that the config does not fit are refused as a folder's are."""
    from valle_hf import VallEForConditionalGeneration, VallEProcessor
    from valle_hf.errors import CheckpointError

    from_memory = VallEForConditionalGeneration.from_pretrained(None, config=fixture_model.config,
                                                                state_dict=fixture_model.state_dict())
    assert torch.equal(from_memory.classifiers[0].weight, fixture_model.classifiers[0].weight)
    other = type(fixture_model.config).from_dict({**fixture_model.config.to_dict(), "text_vocab_size": 7})
    with pytest.raises(CheckpointError, match="^None: the config passed to from_pretrained does not fit its weights"):
        VallEForConditionalGeneration.from_pretrained(None, config=other, state_dict=fixture_model.state_dict())
    assert VallEProcessor.from_pretrained(converted_dir).tokenizer is not None
    model = load_model_and_processor(converted_dir)[0]
    assert torch.equal(model.classifiers[0].weight, fixture_model.classifiers[0].weight)


def test_unloadable_sources_give_one_line_errors(tmp_path, monkeypatch, converted_dir):
    import huggingface_hub.constants

    from valle_hf.errors import CheckpointError, ModelNotFoundError
    from valle_hf.loading import PYTHON_CHOICES

    # a converted model's weights file: "no embedded config; give the original config.yaml", after a warning
    weights = converted_dir / "model.safetensors"
    with logged_warnings() as logged, pytest.raises(CheckpointError, match=rf"^{re.escape(str(weights))} is the "
                                                    rf"weights file of a converted model.*its folder "
                                                    rf"{re.escape(str(converted_dir))} is the converted model "
                                                    rf"\(from_pretrained\({re.escape(repr(str(converted_dir)))}\) in "
                                                    rf"Python, --model {re.escape(str(converted_dir))} on the "
                                                    r"command line\)$"):
        load_model_and_processor(str(weights))
    assert not logged.out

    with pytest.raises(FileNotFoundError, match="missing.sft"):
        load_model_and_processor(str(tmp_path / "missing.sft"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="is a directory but not a converted model"):
        load_model_and_processor(str(empty))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # a Hub id, offline and not cached
    with pytest.raises(ModelNotFoundError, match=r"^the model someone/not-cached \(someone/not-cached/config\.json\) "
                       "is not in the Hugging Face cache, and HF_HUB_OFFLINE is set") as raised:
        load_model_and_processor("someone/not-cached")
    assert PYTHON_CHOICES in str(raised.value) and "\n" not in str(raised.value)


def _edited_copy(source: Path, target: Path, name: str, edit) -> Path:
    """A copy of the model directory `source` whose file `name` holds `edit(its JSON)` (or `edit` itself, text)."""
    import json

    shutil.copytree(source, target)
    file = target / name
    file.write_text(edit if isinstance(edit, str) else json.dumps(edit(json.loads(file.read_text()))))
    return target


@pytest.mark.parametrize("name, edit, message", [
    ("config.json", lambda c: {**c, "num_hidden_layers": c["num_hidden_layers"] + 1}, r"\d+ missing, e\.g\. "),
    ("config.json", lambda c: {**c, "num_hidden_layers": c["num_hidden_layers"] - 1}, r"\d+ unused, e\.g\. "),
    ("config.json", lambda c: {**c, "intermediate_size": c["intermediate_size"] * 2}, r"\d+ of another shape"),
    ("config.json", lambda c: {**c, "hidden_size": str(c["hidden_size"])}, "hidden_size must be a positive integer"),
    ("config.json", lambda c: {**c, "text_eos_token_id": c["text_vocab_size"]}, "text_eos_token_id must be a phoneme"),
    ("config.json", "[]", "config.json cannot be read \\(a JSON list, not an object"),
    ("generation_config.json", "[]", "generation_config.json cannot be read \\(a JSON list"),
    ("generation_config.json", "{not json", "generation_config.json cannot be read \\(Expecting property name"),
    ("generation_config.json", lambda g: {**g, "max_new_tokens": "10"}, "max_new_tokens='10' is not allowed"),
    ("generation_config.json", lambda g: {**g, "cache_implementation": "nope"},
     "cache_implementation='nope' is not allowed: it must be None"),
    ("generation_config.json", lambda g: {**g, "pad_token_id": "x"}, "generation_config.json: pad_token_id='x'"),
    # a setting the model cannot generate with: refused at generate, as if passed there (the CLI named a flag)
    ("generation_config.json", lambda g: {**g, "pad_token_id": 0}, "generation_config.json: pad_token_id=0 is not "
     "allowed: .*; fix or remove pad_token_id there"),
    # transformers' reader calls a method of the setting: an AttributeError
    ("generation_config.json", lambda g: {**g, "watermarking_config": 5}, "generation_config.json cannot be read"),
    # the processor's own files: read after the model, by transformers' loaders (a JSONDecodeError, a ValueError)
    ("tokenizer_config.json", "{not json", "could not load the processor of .* \\(Expecting property name"),
])
def test_a_directory_whose_files_were_edited_is_refused_not_loaded_at_random(converted_dir, tmp_path, name, edit,
                                                                             message):
    """transformers starts weights that config.json does not fit at random (the model speaks noise, with only a
    load report printed) and fails on files that are not JSON objects with bare TypeErrors."""
    from valle_hf.errors import CheckpointError

    edited = _edited_copy(converted_dir, tmp_path / "edited", name, edit)
    with pytest.raises(CheckpointError, match=message) as raised, logged_warnings() as logged:
        load_model_and_processor(str(edited))
    assert "\n" not in str(raised.value) and "LOAD REPORT" not in logged.out  # one line, not after its table
    assert " cannot be loaded (" not in str(raised.value)  # from_pretrained's refusal as it is, not wrapped in another


def _llama_config(config: dict) -> dict:
    """The config.json of a plain Llama checkpoint of the sizes of VALL-E model `config` (a small one: transformers
    would build it)."""
    sizes = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
    return LlamaConfig(**{name: config[name] for name in sizes}, vocab_size=config["text_vocab_size"]).to_dict()


# A hand-edited file of a saved model, and how from_pretrained names it: transformers replaced a generation_config.json
# that is not JSON by defaults without a word, failed with a bare TypeError on one that is no object, and took a setting
# out of range or one the model cannot generate with, which generate refused later without naming the file.
_EDITED_FILES = [
    ("generation_config.json", "", " cannot be read \\(Expecting value"),
    ("generation_config.json", "\ufeff{}", " cannot be read \\(it starts with a byte-order mark, which "
     "transformers' reader refuses: save it as UTF-8 without one"),
    ("generation_config.json", "[]", " cannot be read \\(a JSON list"),
    ("generation_config.json", lambda g: {**g, "temperature": -1}, ": temperature=-1 is not allowed"),
    ("generation_config.json", lambda g: {**g, "pad_token_id": 0}, ": pad_token_id=0 is not allowed"),
    ("generation_config.json", lambda g: {**g, "max_new_tokens": 10**9}, ": max_new_tokens=1000000000 is not allowed: "
     "it must be an integer in \\[1, \\d+\\]: this model has positions"),
    ("config.json", "[]", " cannot be read \\(a JSON list"),
    # transformers' reader: "It looks like the config file at '...' is not a valid JSON file."
    ("config.json", "", " cannot be read \\(Expecting value"),
    ("config.json", "\ufeff{}", " cannot be read \\(it starts with a byte-order mark"),
    ("config.json", lambda c: {**c, "num_hidden_layers": -1},
     " cannot be read \\(VallEConfig.num_hidden_layers must be a positive integer, got -1"),
    # transformers looked the name up in torch: an AttributeError
    ("config.json", lambda c: {**c, "dtype": "float8"}, " cannot be read \\(VallEConfig.dtype 'float8' is no floating"),
    ("config.json", lambda c: {**{k: v for k, v in c.items() if k != "dtype"}, "torch_dtype": "float8"},
     " cannot be read \\(VallEConfig.dtype 'float8' is no floating"),
    # another model's config, or none of any model: transformers loaded both (the first with a warning)
    ("config.json", lambda c: {k: v for k, v in c.items() if k != "model_type"}, " has no model_type, and a VALL-E "
     "model's is 'valle': it is no converted VALL-E model; convert an original VALL-E checkpoint with python -m "
     "valle_hf.convert"),
    ("config.json", lambda c: {**c, "model_type": "llama"}, " has model_type 'llama', and a VALL-E model's is 'valle'"),
    ("config.json", _llama_config, " has model_type 'llama', and a VALL-E model's is 'valle'"),
]


@pytest.mark.parametrize("mismatched", [False, True])
def test_from_pretrained_and_the_pipeline_name_weights_cut_short(converted_dir, tmp_path, mismatched):
    """A model.safetensors cut short (a download or a copy stopped) raised safetensors' own SafetensorError from deep
    in transformers, naming neither the model nor the fix (the commands wrapped it; the Python API did not)."""
    from transformers import pipeline

    from valle_hf.errors import DamagedWeightsError
    from valle_hf.modeling import VallEForConditionalGeneration, VallEModel

    cut = tmp_path / "cut"
    shutil.copytree(converted_dir, cut)
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    refused = f"^the weights of {re.escape(str(cut))} cannot be read \\(.*\\): the file is damaged or cut short"
    for model_class in (VallEForConditionalGeneration, VallEModel):
        with pytest.raises(DamagedWeightsError, match=refused):
            model_class.from_pretrained(cut, ignore_mismatched_sizes=mismatched)
    with pytest.raises(DamagedWeightsError, match=refused) as raised:  # not under a traceback per model class
        pipeline("text-to-speech", model=str(cut))
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("name, edit, message", _EDITED_FILES)
def test_from_pretrained_refuses_an_edited_file_naming_it(converted_dir, tmp_path, name, edit, message):
    import re

    from valle_hf.errors import CheckpointError
    from valle_hf.modeling import VallEForConditionalGeneration

    edited = _edited_copy(converted_dir, tmp_path / "edited", name, edit)
    with pytest.raises(CheckpointError, match="^" + re.escape(str(edited / name)) + message):
        VallEForConditionalGeneration.from_pretrained(edited)


@pytest.mark.parametrize("name, edit, message", [
    ("config.json", _llama_config, " has model_type 'llama', and a VALL-E model's is 'valle'"),
    ("generation_config.json", lambda g: {**g, "temperature": -1}, ": temperature=-1 is not allowed"),
])
def test_from_pretrained_refuses_an_edited_file_in_a_subfolder_naming_it(converted_dir, tmp_path, name, edit, message):
    """subfolder= reads the files there, and they are checked as a folder's: another model's config.json was loaded
    (with transformers' warning), a setting out of range refused without naming the file."""
    import re

    from valle_hf.errors import CheckpointError
    from valle_hf.modeling import VallEForConditionalGeneration

    edited = _edited_copy(converted_dir, tmp_path / "parent" / "model", name, edit)
    with pytest.raises(CheckpointError, match="^" + re.escape(str(edited / name)) + message):
        VallEForConditionalGeneration.from_pretrained(edited.parent, subfolder="model")


def test_a_config_alone_refuses_another_models_config_json(converted_dir, tmp_path):
    """VallEConfig.from_pretrained(folder) checks the folder's config.json as a model's load does: a Llama
    checkpoint's made a VallEConfig, with transformers' warning only. (AutoConfig gives that model's own config.)"""
    import re

    from valle_hf.configuration import VallEConfig
    from valle_hf.errors import CheckpointError

    edited = _edited_copy(converted_dir, tmp_path / "edited", "config.json", _llama_config)
    with pytest.raises(CheckpointError, match="^" + re.escape(str(edited / "config.json")) + " has model_type 'llama'"):
        VallEConfig.from_pretrained(edited)


def test_a_folder_or_repository_without_config_json_is_refused_naming_the_file(converted_dir, tmp_path,
                                                                               monkeypatch):
    """transformers reads a config.json that is not there as no settings: VallEConfig.from_pretrained gave the
    default config (no model's), and a model's load blamed "its config.json" for not fitting its weights."""
    import re

    from conftest import served_hub
    from huggingface_hub import constants

    from valle_hf.configuration import VallEConfig
    from valle_hf.errors import CheckpointError
    from valle_hf.modeling import VallEForConditionalGeneration

    without = shutil.copytree(converted_dir, tmp_path / "parent" / "model")
    (without / "config.json").unlink()
    for load in (VallEConfig.from_pretrained, VallEForConditionalGeneration.from_pretrained,
                 lambda folder: VallEConfig.from_pretrained(folder.parent, subfolder="model")):
        with pytest.raises(CheckpointError, match="^" + re.escape(str(without / "config.json")) + " not found"):
            load(without)
    repos = {"someone/without": {path.name: path for path in without.iterdir() if path.is_file()}}
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with served_hub(monkeypatch, repos, {"someone/without": {"v1"}}), pytest.raises(
            CheckpointError, match="^" + re.escape("someone/without/config.json at revision v1 not found")):
        VallEConfig.from_pretrained("someone/without", revision="v1")


@pytest.mark.parametrize("name, edit, message", _EDITED_FILES)
def test_from_pretrained_refuses_an_edited_hub_file_naming_it(converted_dir, tmp_path, monkeypatch, name, edit,
                                                              message):
    """A Hub model's config.json and generation_config.json are refused as a folder's are, naming the repository and
    the revision, online and from the cache offline (read where transformers fetched them, at the revision given);
    config.json before any weights are fetched. (transformers' reader failed on a config.json that is no JSON object
    with its own message or a bare error, and took one of another model type.)"""
    import re

    from conftest import served_hub
    from huggingface_hub import constants

    from valle_hf.errors import CheckpointError
    from valle_hf.modeling import VallEForConditionalGeneration

    edited = _edited_copy(converted_dir, tmp_path / "edited", name, edit)
    repos = {"someone/edited": {path.name: path for path in edited.iterdir() if path.is_file()}}
    refusal = "^" + re.escape(f"someone/edited/{name} at revision v1") + message
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with served_hub(monkeypatch, repos, {"someone/edited": {"v1"}}), pytest.raises(CheckpointError, match=refusal):
        VallEForConditionalGeneration.from_pretrained("someone/edited", revision="v1")
    if name == "config.json":  # refused before the weights were fetched
        assert not list((tmp_path / "cache").rglob("model.safetensors"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match=refusal):
        VallEForConditionalGeneration.from_pretrained("someone/edited", revision="v1")


@pytest.mark.parametrize("revision", [None, "main"])
def test_a_hub_files_refusal_names_no_revision_on_the_default_branch(converted_dir, tmp_path, monkeypatch, revision):
    from conftest import served_hub
    from huggingface_hub import constants

    from valle_hf.errors import CheckpointError
    from valle_hf.modeling import VallEForConditionalGeneration

    edited = _edited_copy(converted_dir, tmp_path / "edited", "config.json", "[]")
    repos = {"someone/edited": {path.name: path for path in edited.iterdir() if path.is_file()}}
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with served_hub(monkeypatch, repos), pytest.raises(CheckpointError, match="^someone/edited/config.json cannot be "
                                                       "read"):
        VallEForConditionalGeneration.from_pretrained("someone/edited", revision=revision)


@pytest.mark.parametrize("edit, found", [
    (lambda c: {**c, "num_hidden_layers": c["num_hidden_layers"] + 1}, r"\d+ missing"),
    (lambda c: {**c, "num_hidden_layers": c["num_hidden_layers"] - 1}, r"\d+ unused"),
    (lambda c: {**c, "text_vocab_size": c["text_vocab_size"] + 1}, r"\d+ of another shape"),
])
def test_from_pretrained_refuses_weights_that_config_json_does_not_fit(converted_dir, tmp_path, edit, found):
    """transformers started such weights at random (or left them out) under its LOAD REPORT table, and raised a
    RuntimeError pointing at that table for those of another shape; asked for with ignore_mismatched_sizes, they
    load as in transformers."""
    from valle_hf.errors import CheckpointError
    from valle_hf.modeling import VallEForConditionalGeneration

    model, info = VallEForConditionalGeneration.from_pretrained(converted_dir, output_loading_info=True)
    assert not any(info[key] for key in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    edited = _edited_copy(converted_dir, tmp_path / "edited", "config.json", edit)
    with pytest.raises(CheckpointError, match=f"{edited}: its config.json does not fit its weights \\({found}"), \
            logged_warnings() as logged:
        VallEForConditionalGeneration.from_pretrained(edited)
    assert "LOAD REPORT" not in logged.out


def test_from_pretrained_names_the_keyword_that_does_not_fit_the_weights_not_the_file(converted_dir, tmp_path):
    """transformers sets every keyword of from_pretrained that names a config field on the config it reads: a size
    given so (`num_hidden_layers=1`) was refused as an edited config.json, and was also warned about as a setting of
    generation_config.json. A keyword that changes no weight (output_attentions) does not hide an edited file."""
    from valle_hf.configuration import VallEConfig
    from valle_hf.errors import CheckpointError
    from valle_hf.modeling import VallEForConditionalGeneration

    layers = VallEConfig.from_pretrained(converted_dir).num_hidden_layers
    with pytest.raises(CheckpointError, match=f"{converted_dir}: its config.json with num_hidden_layers={layers - 1} "
                       f"given to from_pretrained does not fit its weights \\(.*\\): drop num_hidden_layers="
                       f"{layers - 1}$"), logged_warnings() as logged:
        VallEForConditionalGeneration.from_pretrained(converted_dir, num_hidden_layers=layers - 1,
                                                      output_attentions=True)
    assert "generation_config.json" not in logged.out
    config = VallEConfig.from_pretrained(converted_dir, num_hidden_layers=layers - 1)
    with pytest.raises(CheckpointError, match=f"the config passed to from_pretrained \\(with num_hidden_layers="
                       f"{layers - 1}\\) does not fit its weights .*: drop num_hidden_layers={layers - 1}$"):
        VallEForConditionalGeneration.from_pretrained(converted_dir, config=config)
    edited = _edited_copy(converted_dir, tmp_path / "edited", "config.json",
                          lambda c: {**c, "num_hidden_layers": layers + 1})
    with pytest.raises(CheckpointError, match=f"{edited}: its config.json does not fit its weights .*: the config was "
                       "edited"):
        VallEForConditionalGeneration.from_pretrained(edited, output_attentions=True)


@pytest.mark.parametrize("loader", ["VallEModel", "AutoModel"])
def test_the_base_model_loads_from_a_whole_models_folder_and_refuses_a_keyword_that_does_not_fit(converted_dir,
                                                                                                  loader):
    """The base model (AutoModel's class) loaded other sizes under transformers' LOAD REPORT table (or raised the
    RuntimeError pointing at it), and from a whole model's folder listed every weight of the heads, the codec and the
    vocoder in that table as unexpected. AutoModel passes the keyword on inside the config it gives the class."""
    from transformers import AutoModel

    from valle_hf.configuration import VallEConfig
    from valle_hf.errors import CheckpointError
    from valle_hf.modeling import VallEForConditionalGeneration, VallEModel

    load = {"VallEModel": VallEModel, "AutoModel": AutoModel}[loader].from_pretrained
    with logged_warnings() as logged:
        model, info = load(converted_dir, output_loading_info=True)
    assert type(model) is VallEModel and not any(info[key] for key in ("missing_keys", "unexpected_keys",
                                                                         "mismatched_keys"))
    assert "LOAD REPORT" not in logged.out
    whole = VallEForConditionalGeneration.from_pretrained(converted_dir).model.state_dict()
    assert all(torch.equal(tensor, whole[key]) for key, tensor in model.state_dict().items())
    layers = VallEConfig.from_pretrained(converted_dir).num_hidden_layers
    with pytest.raises(CheckpointError, match=f"^{converted_dir}: .*num_hidden_layers={layers - 1}.* does not fit "
                       f"its weights \\(.*\\): drop num_hidden_layers={layers - 1}$"), logged_warnings() as logged:
        load(converted_dir, num_hidden_layers=layers - 1)
    assert "LOAD REPORT" not in logged.out


def test_from_pretrained_refuses_a_head_count_keyword(converted_dir):
    """The weights' shapes do not show the head count (q_proj is hidden_size square whatever it is): another count
    loaded without a word and the model spoke noise; one that does not divide hidden_size failed inside transformers'
    LlamaConfig."""
    from valle_hf.configuration import VallEConfig
    from valle_hf.errors import VallEValueError
    from valle_hf.modeling import VallEForConditionalGeneration

    heads = VallEConfig.from_pretrained(converted_dir).num_attention_heads
    for wrong in (heads // 2, heads - 1):
        with pytest.raises(VallEValueError, match=f"^from_pretrained got num_attention_heads={wrong}: a model's head "
                           "count is its config.json's .*: drop it$"):
            VallEForConditionalGeneration.from_pretrained(converted_dir, num_attention_heads=wrong)


def test_from_pretrained_with_ignore_mismatched_sizes_starts_such_weights_at_random(converted_dir, tmp_path):
    from valle_hf.modeling import VallEForConditionalGeneration

    edited = _edited_copy(converted_dir, tmp_path / "edited", "config.json",
                          lambda c: {**c, "text_vocab_size": c["text_vocab_size"] + 1})
    model = VallEForConditionalGeneration.from_pretrained(edited, ignore_mismatched_sizes=True)
    assert model.classifiers[-1].out_features == model.config.text_vocab_size


@pytest.mark.parametrize("task", ["text-to-speech", "automatic-speech-recognition"])
@pytest.mark.parametrize("name, edit, message", [
    ("generation_config.json", lambda g: {**g, "pad_token_id": 0}, ": pad_token_id=0 is not allowed"),
    ("generation_config.json", "[]", " cannot be read \\(a JSON list"),
    ("config.json", lambda c: {**c, "num_hidden_layers": -1}, " cannot be read \\(VallEConfig.num_hidden_layers"),
])
def test_a_pipeline_refuses_an_edited_config_file_in_one_line_naming_it(converted_dir, tmp_path, task, name, edit,
                                                                        message):
    """The pipeline reads config.json itself and passes it to from_pretrained: generation_config.json is still read,
    and its settings must fit that config. transformers wrapped the model's refusal in its "Could not load model ...
    with any of the following classes" message, with a traceback for each class, and its own reading of config.json
    refused a field without naming the file."""
    import re

    from transformers import pipeline

    from valle_hf.errors import CheckpointError

    edited = _edited_copy(converted_dir, tmp_path / "edited", name, edit)
    with pytest.raises(CheckpointError, match="^" + re.escape(str(edited / name)) + message) as raised:
        pipeline(task, model=str(edited))
    assert "\n" not in str(raised.value)


def test_a_misspelt_setting_in_generation_config_json_is_warned_about_by_name(converted_dir, tmp_path):
    """transformers keeps any name of generation_config.json as an attribute, which generate never reads: a
    misspelt setting was ignored without a word."""
    from valle_hf.modeling import VallEForConditionalGeneration

    with logged_warnings() as logged:
        VallEForConditionalGeneration.from_pretrained(converted_dir)
    assert "generation_config.json" not in logged.out, logged.out  # the names it saves itself are all read
    edited = _edited_copy(converted_dir, tmp_path / "edited", "generation_config.json",
                          lambda g: {**g, "temprature": g["temperature"]})
    with logged_warnings() as logged:
        VallEForConditionalGeneration.from_pretrained(edited)
    assert ("generation_config.json has setting(s) temprature (did you mean temperature?) that no generation reads"
            in logged.out), logged.out


def test_a_saved_generation_config_flagged_as_derived_keeps_its_settings(converted_dir, tmp_path):
    """transformers flags a GenerationConfig made by from_model_config, also once a user set its samplers and saved
    it: only one that sets none stands for a missing file (a temperature without a max_new_tokens is kept)."""
    import json

    edited = _edited_copy(converted_dir, tmp_path / "model", "generation_config.json",
                          lambda g: {**{key: value for key, value in g.items() if key != "max_new_tokens"},
                                     "_from_model_config": True, "temperature": 0.8})
    model, _ = load_model_and_processor(str(edited))
    assert model.generation_config.temperature == 0.8
    assert json.loads((edited / "generation_config.json").read_text())["temperature"] == 0.8


def test_without_generation_config_json_the_tuned_settings_apply_and_streaming_works(converted_dir, tmp_path,
                                                                                      prompt_wav):
    from valle_hf.configuration import VallEGenerationConfig
    from valle_hf.streaming import AudioIteratorStreamer

    shutil.copytree(converted_dir, tmp_path / "model")
    (tmp_path / "model" / "generation_config.json").unlink()
    model, processor = load_model_and_processor(str(tmp_path / "model"))
    tuned = VallEGenerationConfig.tuned(model.config).to_diff_dict()
    assert model.generation_config.to_diff_dict() == tuned  # not every setting None, nor transformers' 20 tokens
    inputs = processor("Hello.", prompt_audio=str(prompt_wav), return_tensors="pt")
    streamer = AudioIteratorStreamer(chunk_seconds=0.1)
    limit = inputs["input_ids"].shape[1] + 300  # the step limit from max_length
    model.generate(**inputs, audio_streamer=streamer, max_new_tokens=None, max_length=limit, min_new_tokens=3)
    assert list(streamer)


def test_int8_of_a_model_in_memory_shows_no_progress_bars_of_its_temporary_round_trip(capsys):
    """tiny-random (and an original checkpoint) gets its int8 weights through a save and a load in a temporary
    folder: transformers' "Writing model shards" and "Loading weights" bars would report work the user did not ask
    for. Other loads keep their bars."""
    from transformers.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

    enabled = is_progress_bar_enabled()
    enable_progress_bar()
    try:
        model, _ = load_model_and_processor("tiny-random", quantize="int8")
        assert is_progress_bar_enabled()
    finally:
        enable_progress_bar() if enabled else disable_progress_bar()
    assert type(model.model.backbone.layers[0].mlp.up_proj.weight).__name__ == "Int8Tensor"
    err = capsys.readouterr().err
    assert "model shards" not in err and "Loading weights" not in err


def test_dtype_is_a_torch_dtype_or_its_name_or_auto(converted_dir):
    """A dtype's name worked for a converted folder (from_pretrained reads names) and failed deep inside torch for
    tiny-random (`Invalid device string`)."""
    from valle_hf.errors import VallEValueError
    from valle_hf.loading import load_model

    assert load_model_and_processor("tiny-random", dtype="bfloat16")[0].dtype == torch.bfloat16
    assert load_model_and_processor("tiny-random", dtype="auto")[0].dtype == torch.float32  # as it is built
    assert load_model_and_processor("tiny-random", dtype=None)[0].dtype == torch.float32  # transformers' None
    assert load_model(str(converted_dir), dtype=torch.float64).dtype == torch.float64
    assert load_model(str(converted_dir), dtype="float16").dtype == torch.float16
    for wrong in ("bf16", "int8", torch.int8, 16, torch.complex64):
        with pytest.raises(VallEValueError, match=r"^dtype must be one of float32, bfloat16, float16, float64 .* or "):
            load_model_and_processor("tiny-random", dtype=wrong)
        with pytest.raises(VallEValueError, match="^dtype must be one of"):
            load_model(str(converted_dir), dtype=wrong)


def test_an_empty_model_name_is_refused_not_read_as_the_current_folder(tmp_path, monkeypatch):
    from valle_hf.errors import VallEValueError

    monkeypatch.chdir(tmp_path)
    for name in ("", " "):
        with pytest.raises(VallEValueError, match="^the model's name is empty \\(an unset variable\\?\\)"):
            load_model_and_processor(name)


def test_a_quantization_other_than_int8_is_refused_not_ignored():
    """Any other `quantize` loaded the model with its float weights without a word."""
    from valle_hf.errors import VallEValueError

    with pytest.raises(VallEValueError, match="^quantize must be 'int8' \\(or None\\), got 'int4'$"):
        load_model_and_processor("tiny-random", quantize="int4")
    with pytest.raises(VallEValueError, match="^int8 weights run with 16- or 32-bit activations, not float64"):
        load_model_and_processor("tiny-random", dtype="float64", quantize="int8")  # a report transformers hides


def test_int8_without_torchao_names_the_install_the_readme_gives(monkeypatch):
    from valle_hf.errors import MissingDependencyError
    from valle_hf.loading import int8_quantization_config

    monkeypatch.setitem(sys.modules, "torchao.quantization", None)  # as where torchao is not installed
    with pytest.raises(MissingDependencyError, match=r'^int8 weights need torchao: pip install -e "\.\[int8\]" in '
                                                     r"valle-hf's folder \(or pip install torchao\)$"):
        int8_quantization_config()
    assert 'pip install -e ".[int8]"' in (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


def test_a_cache_dir_that_would_be_ignored_is_refused(converted_dir, tmp_path):
    """cache_dir is where the released model is converted: with a Hub id the files went to the Hugging Face cache,
    without a word (from_pretrained's own cache_dir is another thing)."""
    from valle_hf.errors import VallEValueError

    for name in ("someone/valle", str(converted_dir), "tiny-random"):
        with pytest.raises(VallEValueError, match=f"^cache_dir is where the released model is converted .* {name}:"):
            load_model_and_processor(name, cache_dir=tmp_path)


def test_a_saved_int8_model_without_torchao_names_the_install(tmp_path, monkeypatch):
    """transformers' import of torchao for the saved quantization config failed with a traceback."""
    from valle_hf.errors import MissingDependencyError
    from valle_hf.modeling import VallEForConditionalGeneration

    load_model_and_processor("tiny-random", quantize="int8")[0].save_pretrained(tmp_path / "int8")
    for name in [name for name in sys.modules if name.split(".")[0] == "torchao"]:
        monkeypatch.setitem(sys.modules, name, None)  # as where torchao is not installed
    with pytest.raises(MissingDependencyError, match=r"^this model's weights are int8, which needs torchao: pip "):
        VallEForConditionalGeneration.from_pretrained(tmp_path / "int8")


def test_a_temporary_round_trip_leaves_the_progress_bars_as_they_were():
    """Bars a user turned off stay off after an int8 load of a model built in memory (they were turned on)."""
    from transformers.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

    from valle_hf.loading import no_progress_bars

    enabled = is_progress_bar_enabled()
    try:
        for before in (True, False):
            enable_progress_bar() if before else disable_progress_bar()
            with no_progress_bars():
                assert not is_progress_bar_enabled()
            assert is_progress_bar_enabled() == before
    finally:
        enable_progress_bar() if enabled else disable_progress_bar()


def test_dtype_none_loads_float32_whatever_the_checkpoint_holds_and_auto_keeps_the_checkpoints(tmp_path):
    """None means float32, as the default does; only "auto" takes the dtype a directory was saved in."""
    from valle_hf.loading import load_model

    load_model_and_processor("tiny-random", dtype=torch.bfloat16)[0].save_pretrained(tmp_path)
    assert load_model(str(tmp_path), dtype="auto").dtype == torch.bfloat16
    assert load_model(str(tmp_path), dtype=None).dtype == torch.float32


def test_tiny_random_weights_have_the_scales_reactive_init_gives_them(tiny_random):
    """Embeddings and separator ~ N(0, 1), backbone linears ~ N(0, 1/fan_in), heads ~ N(0, 4/hidden) without bias,
    RMSNorm weights ~ 1 + 0.1 N(0, 1): the heads' larger scale spreads the logits over a few units."""
    model = tiny_random[0]

    def near(value, expected, tolerance=0.05):
        return abs(value.item() - expected) <= tolerance * expected

    for head in model.classifiers:
        assert near(head.weight.std(), 2 / head.in_features ** 0.5) and not head.bias.any()
    linears = [module for module in model.model.backbone.modules() if isinstance(module, torch.nn.Linear)]
    assert linears and all(near(linear.weight.std(), 1 / linear.in_features ** 0.5) for linear in linears)
    assert near(model.model.embeddings.text.weight.std(), 1.0)
    assert near(model.model.embeddings.separator.std(), 1.0, tolerance=0.3)  # one vector: few samples
    norms = torch.cat([param.flatten() for name, param in model.model.backbone.named_parameters() if "norm" in name])
    assert near(norms.mean(), 1.0) and near(norms.std(), 0.1, tolerance=0.2)


def test_int8_asked_of_a_model_saved_int8_loads_without_a_warning(tmp_path, recwarn):
    """transformers warned that the model's own quantization config wins over the one given: for the same int8 that
    is what was asked, and `--quantize int8` printed the raw UserWarning."""
    from valle_hf.loading import load_model

    load_model_and_processor("tiny-random", quantize="int8")[0].save_pretrained(tmp_path / "int8")
    recwarn.clear()
    model = load_model(str(tmp_path / "int8"), dtype=torch.bfloat16, quantize="int8")
    assert type(model.model.backbone.layers[0].mlp.up_proj.weight).__name__ == "Int8Tensor"
    assert not [str(warning.message) for warning in recwarn]
    # another quantization saved (int8 activations too) is not what was asked: transformers' warning stays
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig
    from transformers import TorchAoConfig

    from valle_hf.modeling import VallEForConditionalGeneration

    load_model_and_processor("tiny-random")[0].save_pretrained(tmp_path / "plain")
    VallEForConditionalGeneration.from_pretrained(
        tmp_path / "plain", quantization_config=TorchAoConfig(Int8DynamicActivationInt8WeightConfig()),
    ).save_pretrained(tmp_path / "dynamic")
    recwarn.clear()
    load_model(str(tmp_path / "dynamic"), dtype=torch.bfloat16, quantize="int8")
    assert any("already has a `quantization_config`" in str(warning.message) for warning in recwarn)


def test_from_pretrained_of_a_file_and_save_pretrained_into_one_say_what_to_give(converted_dir, fixtures, tmp_path):
    """from_pretrained of an original checkpoint (or of a converted model's weights file) failed with transformers'
    "Repo id must be in the form 'repo_name'"; save_pretrained into a file logged a line and saved nothing, and the
    processor's raised a bare FileExistsError."""
    from valle_hf.errors import CheckpointError, UsageError
    from valle_hf.modeling import VallEForConditionalGeneration

    with pytest.raises(CheckpointError, match=f"^{re.escape(str(fixtures.checkpoint))} is a file, and from_pretrained "
                                              r"takes .*\.load_model_and_processor\(path\), which converts it"):
        VallEForConditionalGeneration.from_pretrained(fixtures.checkpoint)
    weights = converted_dir / "model.safetensors"
    with pytest.raises(CheckpointError, match=f"^{weights} is a file of the converted model in {converted_dir}: give "
                                              "that folder$"):
        VallEForConditionalGeneration.from_pretrained(str(weights))
    model, processor = load_model_and_processor("tiny-random")
    (tmp_path / "afile").write_text("x")
    for saved in (model, processor):
        with pytest.raises(UsageError, match=f"^save_directory {tmp_path / 'afile'} is a file: give a folder"):
            saved.save_pretrained(tmp_path / "afile")
    assert (tmp_path / "afile").read_text() == "x"


def test_from_pretrained_of_tiny_random_says_how_it_is_made(hub_unreachable, tmp_path, monkeypatch):
    """`from_pretrained("tiny-random")` asked the Hub for a repository of that name, and failed with transformers'
    connection error; a folder of that name is still a folder."""
    from valle_hf.errors import ModelNotFoundError
    from valle_hf.modeling import VallEForConditionalGeneration
    from valle_hf.processing import VallEProcessor

    monkeypatch.chdir(tmp_path)
    for loader in (VallEForConditionalGeneration, VallEProcessor):
        with pytest.raises(ModelNotFoundError, match=r"^tiny-random is built in memory, not loaded from a folder or "
                                                     r"the Hub: valle_hf\.loading\.load_model_and_processor\('tiny-"):
            loader.from_pretrained("tiny-random")
    model, processor = load_model_and_processor("tiny-random")
    model.save_pretrained(tmp_path / "tiny-random")
    processor.save_pretrained(tmp_path / "tiny-random")
    assert VallEForConditionalGeneration.from_pretrained("tiny-random").config.hidden_size == model.config.hidden_size
