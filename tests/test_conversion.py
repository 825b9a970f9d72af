"""Conversion of the original's checkpoints: formats, key checks, the command line."""

from __future__ import annotations

import copy
import json
import os
import pickle
import re
import shutil
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from conftest import logged_warnings
from safetensors import safe_open
from safetensors.torch import save_file

from valle_hf.conversion import (
    CheckpointError,
    checkpoint_of_yaml,
    convert_checkpoint,
    load_original_checkpoint,
    main,
)
from valle_hf.loading import load_model_and_processor


def original_tensors(fixtures):
    original = load_original_checkpoint(fixtures.checkpoint)
    return original.tensors, original.config


def write_sft(path, tensors, config, symmap=None, **entries):
    """An original `.sft` checkpoint: `config`, `userdata.symmap` and any other `entries` as JSON metadata."""
    metadata = {"config": config} if symmap is None else {"config": config, "userdata": {"symmap": symmap}}
    save_file(tensors, str(path), metadata={key: json.dumps(value) for key, value in {**metadata, **entries}.items()})
    return path


def write_yaml(path, config):
    """An original config.yaml whose one model is `config`."""
    path.write_text(yaml.safe_dump({"models": [config]}), encoding="utf-8")
    return path


def convert(path, **kwargs):
    """The model converted from `path` with the test codec and vocoder."""
    return convert_checkpoint(path, codec="tiny-random", vocoder="tiny-random", **kwargs)[0]


def assert_refused(path, expected, capsys, config_yaml=None):
    """Converting `path` raises a `CheckpointError` that says `expected`, and the command line says it in one `error:`
    line with status 1."""
    with pytest.raises(CheckpointError, match=re.escape(expected)):
        convert(path, config_yaml=config_yaml)
    argv = ["--checkpoint", str(path), "--output-dir", str(path.parent / "converted"), "--codec", "tiny-random",
            "--vocoder", "tiny-random"]
    assert main(argv if config_yaml is None else [*argv, "--config", str(config_yaml)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err, err


def test_embedded_config_is_honoured(fixtures, fixture_model):
    _, original = original_tensors(fixtures)
    config = fixture_model.config
    size = original["size"]
    if isinstance(size, dict):
        assert (config.hidden_size, config.num_attention_heads, config.num_hidden_layers) == (
            size["dim"], size["heads"], size["layers"])
    assert config.num_rvq_levels == original["resp_levels"]
    assert config.unified_position_ids == original["experimental"]["unified_position_ids"]


def test_every_tensor_is_used_or_known_unused(fixtures, fixture_model):
    """The converted weights are exactly the stored (float16) values, in float32."""
    tensors, _ = original_tensors(fixtures)
    state = fixture_model.state_dict()
    assert torch.equal(state["model.embeddings.separator"], tensors["sep"].float())
    assert torch.equal(state["classifiers.8.weight"], tensors["classifiers.proj.8.weight"].float())
    layers = fixture_model.config.num_hidden_layers
    key = f"model.layers.{layers - 1}.mlp.down_proj.weight"
    assert torch.equal(state[f"model.backbone.layers.{layers - 1}.mlp.down_proj.weight"], tensors[key].float())
    assert all(value.dtype == torch.float32 for key, value in state.items() if value.is_floating_point())


def test_the_model_has_a_place_for_every_module_the_original_reads_and_none_other(fixtures, fixture_model):
    """The original's tables and heads that some pass reads (recorded beside the fixture checkpoint) are those the
    conversion maps, one for one: one it never reads (the last prompt tables, the last response table) would give
    the model a table no pass reaches."""
    from valle_hf.conversion import key_map

    mapping = key_map(fixture_model.config)
    modules = {key.rpartition(".")[0] for key in mapping if not key.startswith("model.") and key != "sep"}
    assert modules == set(fixtures.meta["modules_used"])
    assert not modules & set(fixtures.meta["modules_never_used"])
    assert set(mapping.values()) <= set(fixture_model.state_dict())


def test_pth_checkpoint_loads_with_weights_only(tmp_path, fixtures, fixture_model):
    tensors, original = original_tensors(fixtures)
    path = tmp_path / "fp32.pth"
    torch.save({"module": tensors, "config": original, "stats": {"global_step": 0}}, path)
    model = convert(path)
    for key, value in model.state_dict().items():
        # the codec and vocoder are random test ones; embed_tokens is the backbone's unused table
        if not key.startswith(("codec_model.", "vocoder.")) and "embed_tokens" not in key:
            assert torch.equal(value, fixture_model.state_dict()[key]), key


def test_a_checkpoints_suffix_is_read_in_either_case_and_a_safetensors_pth_is_named_as_one(tmp_path, fixtures,
                                                                                            fixture_model, capsys):
    """"FP32.SFT" was an unknown format; a safetensors file named .pth was refused as a pickle that could run code."""
    shouted = tmp_path / "FP32.SFT"
    shutil.copy(fixtures.checkpoint, shouted)
    key = "model.embeddings.text.weight"
    for model in (convert(shouted), load_model_and_processor(str(shouted), codec="tiny-random",
                                                             vocoder="tiny-random")[0]):
        assert torch.equal(model.state_dict()[key], fixture_model.state_dict()[key])
    misnamed = tmp_path / "fp32.pth"
    shutil.copy(fixtures.checkpoint, misnamed)
    assert_refused(misnamed, f"{misnamed} is a safetensors file, not a pickle: rename it to end in .sft", capsys)


class _RunsCode:
    """A pickle payload that runs code when loaded (a file named `marker` is made)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("damage", ["code", "plain pickle", "truncated"])
def test_a_pth_that_would_run_code_or_is_damaged_is_refused_saying_which(tmp_path, fixtures, capsys, damage):
    """A pickle that runs code must never be loaded (weights_only=True); the error said 'cannot be read safely' for a
    merely truncated file too, and passed on torch's advice to load with weights_only=False. A plain pickle (not
    torch's format) is refused by the same reader, without torch's warning about its protocol before the error."""
    tensors, original = original_tensors(fixtures)
    marker, path = tmp_path / "code-ran", tmp_path / "fp32.pth"
    torch.save({"module": tensors, "config": original, "stats": _RunsCode(marker)}, path)
    if damage == "plain pickle":
        path.write_bytes(pickle.dumps({"module": tensors, "config": original}, protocol=4))
    if damage == "truncated":
        torch.save({"module": tensors, "config": original}, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    expected = "is not a readable .pth checkpoint" if damage == "truncated" else "holds objects other than tensors"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning printed before the error line fails the test
        assert_refused(path, expected, capsys)
    assert not marker.exists()
    with pytest.raises(CheckpointError) as refused:
        load_original_checkpoint(path)
    assert "weights_only" not in str(refused.value)


def test_a_pth_whose_weights_hold_a_key_that_is_no_name_is_refused_in_one_line(tmp_path, fixtures, capsys):
    """A key that is not text (a dict saved by hand) was a TypeError traceback from the renaming of the keys."""
    tensors, original = original_tensors(fixtures)
    path = tmp_path / "fp32.pth"
    torch.save({"module": {**tensors, 0: torch.zeros(1)}, "config": original}, path)
    assert_refused(path, "its weights hold a key 0 that is no weight's name (text): export the checkpoint again",
                   capsys)


def test_yaml_config_overrides_metadata(tmp_path, fixtures):
    tensors, original = original_tensors(fixtures)
    yaml_file = fixtures.root / "config.yaml"
    if not yaml_file.is_file():
        pytest.skip("fixture set has no config.yaml")
    path = tmp_path / "bare.safetensors"
    save_file(tensors, str(path))  # no metadata at all
    with pytest.raises(CheckpointError, match="no embedded config; .*config_yaml= in Python\\)$"), \
            logged_warnings() as logged:
        convert(path)
    assert "symmap" in logged.out
    with logged_warnings() as logged:
        model = convert(path, config_yaml=yaml_file)
    assert "could not be checked" in logged.out
    assert model.config.num_rvq_levels == original["resp_levels"]


@pytest.mark.parametrize("problem", ["missing", "unexpected", "shape", "lora"])
def test_wrong_checkpoints_name_the_key(tmp_path, fixtures, problem):
    tensors, original = original_tensors(fixtures)
    tensors = dict(tensors)
    if problem == "missing":
        del tensors["classifiers.proj.3.bias"]
        match = "classifiers.proj.3.bias"
    elif problem == "unexpected":
        tensors["extra.weight"] = torch.zeros(2)
        match = "extra.weight"
    elif problem == "shape":
        tensors["text_emb.weight"] = tensors["text_emb.weight"][:10]
        match = "text_emb.weight"
    else:
        tensors["model.layers.0.self_attn.q_proj.lora_A"] = torch.zeros(2, 2)
        match = "LoRA"
    with pytest.raises(CheckpointError, match=match):
        convert(write_sft(tmp_path / "bad.sft", tensors, original, packaged_vocab()))


# Checkpoints whose entries are not the dicts the original's exporter writes: (format, entry, its value, what the
# error says).
MALFORMED_ENTRIES = {
    "userdata_a_list": (".sft", "userdata", [1, 2], "'userdata' entry is a list"),
    "userdata_a_string": (".pth", "userdata", "symmap", "'userdata' entry is a str"),
    "symmap_a_list": (".sft", "userdata", {"symmap": [1, 2]}, "'userdata.symmap' entry is a list"),
    "config_a_string": (".pth", "config", "{}", "'config' entry is a str"),
    "module_a_list": (".pth", "module", [torch.zeros(2)], "'module' entry is a list"),
    "symmap_ids_strings": (".sft", "userdata", {"symmap": {"a": "x"}}, "userdata.symmap maps 'a' to 'x'"),
}


@pytest.mark.parametrize("case", MALFORMED_ENTRIES)
def test_malformed_checkpoint_entries_are_refused_naming_them(tmp_path, fixtures, capsys, case):
    suffix, entry, value, expected = MALFORMED_ENTRIES[case]
    tensors, original = original_tensors(fixtures)
    path = tmp_path / f"fp32{suffix}"
    if suffix == ".sft":
        write_sft(path, tensors, original, **{entry: value})
    else:
        torch.save({"module": tensors, "config": original, entry: value}, path)
    assert_refused(path, expected, capsys)


def with_setting(config: dict, name: str, value) -> dict:
    """A copy of the original's `config` with its setting `name` (dotted for a nested one: "size.dim") set to
    `value`."""
    config = copy.deepcopy(config)
    *sections, key = name.split(".")
    settings = config
    for section in sections:
        if not isinstance(settings.get(section), dict):
            settings[section] = {}
        settings = settings[section]
    settings[key] = value
    return config


# Settings of the original's config with a value of the wrong type: each once failed with a traceback (or, for the
# flag, converted silently as true).
MALFORMED_SETTINGS = [
    ("size.dim", "abc"), ("size.dim", None), ("size", "0.5"), ("size", float("nan")), ("size", [1]),
    ("resp_levels", "eight"), ("resp_levels", None), ("experts", "x"), ("tasks", 9.7), ("langs", -1),
    ("experimental", "abc"), ("experimental", [1, 2]), ("experimental.causal_size", "1"),
    ("experimental.unified_position_ids", "False"), ("experimental.hf", "no"), ("capabilities", "ar"),
]


@pytest.mark.parametrize("source", ["metadata", "yaml"])
@pytest.mark.parametrize(("name", "value"), MALFORMED_SETTINGS, ids=[f"{n}={v!r}" for n, v in MALFORMED_SETTINGS])
def test_malformed_config_settings_are_refused_naming_them(tmp_path, fixtures, capsys, source, name, value):
    tensors, original = original_tensors(fixtures)
    config = with_setting(original, name, value)
    expected = f"sets {name} to {value!r}: it must be"
    if source == "metadata":
        path = write_sft(tmp_path / "fp32.sft", tensors, config, packaged_vocab())
        assert_refused(path, f"the config embedded in {path} {expected}", capsys)
    else:
        config_yaml = write_yaml(tmp_path / "config.yaml", config)
        assert_refused(fixtures.checkpoint, f"{config_yaml} {expected}", capsys, config_yaml)


# Well-formed settings of a model this package cannot run: refused naming the config they were read from (the
# message was VallEConfig's alone, which says neither which file nor that it is the original's config).
UNSUPPORTED_SETTINGS = [("version", 4), ("resp_levels", 2), ("capabilities", ["ar"]),
                        ("experimental.split_classifiers", False)]


@pytest.mark.parametrize(("name", "value"), UNSUPPORTED_SETTINGS, ids=[f"{n}={v!r}" for n, v in UNSUPPORTED_SETTINGS])
def test_unsupported_config_settings_are_refused_naming_the_config(tmp_path, fixtures, capsys, name, value):
    _, original = original_tensors(fixtures)
    config_yaml = write_yaml(tmp_path / "config.yaml", with_setting(original, name, value))
    assert_refused(fixtures.checkpoint, f"{config_yaml} describes a model valle-hf cannot run", capsys, config_yaml)


def test_settings_the_original_reads_as_plain_values_convert_to_the_same_model(fixtures):
    """Whole numbers written as floats, and flags as 0, 1 or null (read by truth value, as the original does):
    accepted, and the same model as their plain spelling."""
    from valle_hf.conversion import config_from_original

    _, original = original_tensors(fixtures)
    plain = config_from_original(original)
    spelled = with_setting(original, "version", float(plain.version))
    for flag in ("split_classifiers", "audio_embedding_sums", "unified_position_ids"):
        spelled = with_setting(spelled, f"experimental.{flag}", int(getattr(plain, flag)))
    assert config_from_original(spelled).to_dict() == plain.to_dict()
    assert config_from_original(with_setting(original, "experimental.hf", None)).to_dict() == plain.to_dict()


def test_the_checkpoint_a_yaml_names_needs_a_well_formed_config(tmp_path, fixtures):
    _, original = original_tensors(fixtures)
    for name, value in (("experts", "x"), ("resp_levels", None)):
        config_yaml = write_yaml(tmp_path / "config.yaml", with_setting(original, name, value))
        with pytest.raises(CheckpointError, match=re.escape(f"{config_yaml} sets {name} to {value!r}")):
            checkpoint_of_yaml(config_yaml)


def packaged_vocab() -> dict[str, int]:
    """The symmap a checkpoint records for the packaged tokenizer (its vocabulary, aliases included)."""
    from valle_hf.tokenization import packaged_tokenizer_file

    return json.loads(packaged_tokenizer_file().read_text(encoding="utf-8"))["model"]["vocab"]


def test_the_tokenizer_is_checked_against_the_checkpoints_symmap(tmp_path, fixtures, tokenizer_file):
    original = load_original_checkpoint(fixtures.checkpoint)
    if original.symmap is None:
        pytest.skip("the fixture checkpoint records no symmap")
    assert original.symmap == packaged_vocab()
    # a tokenizer that maps one symbol to another id is refused, naming the symbol
    data = json.loads(tokenizer_file.read_text(encoding="utf-8"))
    symbol = sorted(data["model"]["vocab"], key=data["model"]["vocab"].get)[40]
    data["model"]["vocab"][symbol] = (data["model"]["vocab"][symbol] + 1) % 256
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(CheckpointError, match=f"symbol {symbol!r} has id"):
        convert(fixtures.checkpoint, tokenizer=other)
    # a symbol the checkpoint lacks is named too
    symmap = dict(original.symmap)
    extra = sorted(symmap, key=symmap.get)[-1]
    del symmap[extra]
    with pytest.raises(CheckpointError, match=f"symbol {extra!r}"):
        convert(write_sft(tmp_path / "fewer.sft", original.tensors, original.config, symmap))
    # without a symmap the packaged tokenizer is used, with a warning that it could not be checked
    with logged_warnings() as logged:
        model = convert(write_sft(tmp_path / "bare.sft", original.tensors, original.config))
    assert "could not be checked" in logged.out
    assert model.config.text_head


def test_a_checkpoint_without_the_text_head_refuses_stt(tmp_path, fixtures):
    original = load_original_checkpoint(fixtures.checkpoint)
    levels = original.config.get("resp_levels", 8)
    text_head = f"classifiers.proj.{levels}."
    tensors = {key: value for key, value in original.tensors.items() if not key.startswith(text_head)}
    model = convert(write_sft(tmp_path / "tts_only.sft", tensors, original.config, original.symmap))
    assert not model.config.text_head and len(model.classifiers) == levels
    with pytest.raises(ValueError, match="no text head"):
        model.generate(audio_codes=torch.zeros(1, 5, levels, dtype=torch.long), task="stt", max_new_tokens=2)


def converter_argv(fixtures, out) -> list[str]:
    return ["--checkpoint", str(fixtures.checkpoint), "--output-dir", str(out), "--codec", "tiny-random",
            "--vocoder", "tiny-random"]


# Folders that are no converted model: a user's files, another model, a config.json that is not JSON, not a JSON
# object, or not text.
NOT_CONVERTED = {
    "notes": {"thesis.txt": b"keep me"},
    "another_model": {"config.json": b'{"model_type": "bert"}', "model.safetensors": b"weights"},
    "broken_config": {"config.json": b"{"},
    "config_a_list": {"config.json": b"[]"},
    "config_not_utf8": {"config.json": b"\xff\xfe{}"},
}


@pytest.mark.parametrize("contents", NOT_CONVERTED)
def test_an_existing_output_directory_is_refused_and_kept_even_with_overwrite(tmp_path, fixtures, capsys, contents):
    out = tmp_path / "converted"
    out.mkdir()
    files = NOT_CONVERTED[contents]
    for name, text in files.items():
        (out / name).write_bytes(text)
    argv = converter_argv(fixtures, out)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" not in err, err  # it would refuse this folder: no such advice
    assert main([*argv, "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: --overwrite replaces only a converted model, and {out} is not one"), err
    assert err.count("\n") == 1, err
    assert {path.name: path.read_bytes() for path in out.iterdir()} == files


def test_overwrite_replaces_a_converted_model(tmp_path, fixtures, capsys):
    out = tmp_path / "converted"
    out.mkdir()  # an empty folder is written into without --overwrite
    argv = converter_argv(fixtures, out)
    assert main(argv) == 0
    (out / "notes.txt").write_text("old")
    assert main(argv) == 1  # a converted model: --overwrite is the way to replace it
    assert "choose another --output-dir, or pass --overwrite to replace the model it holds" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    assert (out / "config.json").is_file() and not (out / "notes.txt").exists()


def test_overwrite_through_a_symbolic_link_replaces_the_folder_it_points_to(tmp_path, fixtures):
    """The link was moved aside and left behind as `.NAME.XXXX.previous`, a real folder took its place, and the model
    it pointed to stayed where it was: now the link stays and points to the new model, and nothing is left over."""
    disk, links = tmp_path / "disk", tmp_path / "links"
    links.mkdir()
    assert main(converter_argv(fixtures, disk / "model")) == 0
    (disk / "model" / "notes.txt").write_text("old")
    (links / "model").symlink_to(disk / "model", target_is_directory=True)
    assert main([*converter_argv(fixtures, links / "model"), "--overwrite"]) == 0
    assert (links / "model").is_symlink() and (links / "model").resolve() == (disk / "model").resolve()
    assert (disk / "model" / "config.json").is_file() and not (disk / "model" / "notes.txt").exists()
    assert [path.name for path in links.iterdir()] == ["model"] and [path.name for path in disk.iterdir()] == ["model"]


@pytest.mark.parametrize("case", ["name_too_long_for_the_staging_folder", "symbolic_link_loop", "mount_point",
                                  "working_folder", "above_the_working_folder"])
def test_an_output_directory_that_cannot_be_replaced_is_refused_before_converting(tmp_path, fixtures, capsys,
                                                                                monkeypatch, case):
    """Each was found only after the whole conversion (a traceback for the first two): a name that fits but whose
    staging folder beside it (.NAME.XXXXXXXX) does not; a link to itself; an empty mount point (a Docker volume),
    which cannot be renamed; the working folder ("--output-dir ." in an empty one), which cannot be renamed away
    either ("Device or resource busy") or leaves the shell in a deleted folder."""
    import valle_hf.conversion

    monkeypatch.setattr(valle_hf.conversion, "convert_checkpoint", lambda *args, **kwargs: pytest.fail("converted"))
    out = tmp_path / "converted"
    if case == "name_too_long_for_the_staging_folder":
        out = tmp_path / ("d" * (os.pathconf(tmp_path, "PC_NAME_MAX") - 4))
        expected = "the model is written to a directory made beside it first, and .* cannot take one \\(File name"
    elif case == "symbolic_link_loop":
        out.symlink_to(out)
        expected = "symbolic link"
    elif case.endswith("working_folder"):
        (out / "inner").mkdir(parents=True)
        monkeypatch.chdir(out if case == "working_folder" else out / "inner")
        out = Path("." if case == "working_folder" else "..")
        expected = (f"--output-dir {out} is the working folder or holds it, which cannot be replaced .*: give a new "
                    f"folder's name, such as {out / 'model'}")
    else:
        out.mkdir()
        mount_point = os.path.ismount
        monkeypatch.setattr(os.path, "ismount", lambda path: Path(path) == out or mount_point(path))
        expected = f"--output-dir {out} is a mount point, .*: give a folder inside it, such as {out / 'model'}"
    assert main(converter_argv(fixtures, out)) == 1
    err = capsys.readouterr().err
    assert re.match(f"error: .*{expected}", err) and err.count("\n") == 1, err
    kept = [] if "name" in case else ["converted"]
    assert sorted(path.name for path in tmp_path.iterdir()) == kept


def test_an_output_directory_name_longer_than_the_file_system_takes_is_refused_in_one_line(tmp_path):
    """Asking whether such a name is a symbolic link raised OSError (File name too long): a traceback."""
    from valle_hf.conversion import check_output_dir
    from valle_hf.errors import UsageError

    out = tmp_path / ("d" * (os.pathconf(tmp_path, "PC_NAME_MAX") + 1))
    with pytest.raises(UsageError, match=r"^cannot write --output-dir .* \(File name too long\): choose another path$"):
        check_output_dir(out)


@pytest.mark.parametrize(("existing", "overwrite"), [("empty", []), ("converted", ["--overwrite"])])
def test_an_existing_output_directory_in_a_folder_that_cannot_be_written_is_refused_first(
    tmp_path, fixtures, converted_dir, capsys, monkeypatch, existing, overwrite
):
    """The new directory is made beside the old one and renamed over it: with the folder around them not writable,
    the converter failed with a traceback after the whole conversion."""
    parent = tmp_path / "read-only"
    out = parent / "converted"
    if existing == "empty":
        out.mkdir(parents=True)
    else:
        shutil.copytree(converted_dir, out)
    access = os.access  # the tests may run as root, who may write anywhere: the folder is read-only for os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != parent and access(path, mode))
    assert main([*converter_argv(fixtures, out), *overwrite]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write --output-dir {out}") and f"{parent} cannot take one" in err, err
    assert err.count("\n") == 1, err


@pytest.mark.parametrize("output", ["folder", "checkpoint", "folder_of_the_config"])
def test_an_output_directory_that_holds_an_input_is_refused_even_with_overwrite(tmp_path, fixtures, capsys, output):
    folder = tmp_path / "models"
    folder.mkdir()
    checkpoint = folder / "fp32.sft"
    shutil.copyfile(fixtures.checkpoint, checkpoint)
    out = folder if output == "folder" else checkpoint
    read = [checkpoint]
    if output == "folder_of_the_config":  # the checkpoint elsewhere, the --config in the output directory
        out = tmp_path / "configs"
        out.mkdir()
        read = [fixtures.checkpoint, write_yaml(out / "config.yaml", original_tensors(fixtures)[1])]
    argv = ["--checkpoint", str(read[0]), "--output-dir", str(out), "--overwrite", "--codec", "tiny-random",
            "--vocoder", "tiny-random"]
    assert main(argv if len(read) == 1 else [*argv, "--config", str(read[1])]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: --output-dir {out} is or holds {read[-1]}") and err.count("\n") == 1, err
    assert checkpoint.read_bytes() == fixtures.checkpoint.read_bytes() and read[-1].is_file()


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_original_checkpoint(tmp_path / "nope.sft")
    other = tmp_path / "model.bin"
    other.write_bytes(b"xx")
    with pytest.raises(CheckpointError, match="unknown checkpoint format"):
        load_original_checkpoint(other)


def test_unsupported_architecture(tmp_path, fixtures):
    tensors, original = original_tensors(fixtures)
    original = dict(original, arch_type="retnet")
    with pytest.raises(CheckpointError, match="architecture"):
        convert(write_sft(tmp_path / "r.sft", tensors, original, packaged_vocab()))


def test_command_line_writes_a_loadable_directory(tmp_path, fixtures, fixture_model, tokenizer_file, capsys):
    from transformers import AutoModelForTextToWaveform

    import valle_hf  # noqa: F401

    out = tmp_path / "converted"
    assert main(["--checkpoint", str(fixtures.checkpoint), "--output-dir", str(out), "--codec", "tiny-random",
                 "--vocoder", "tiny-random", "--tokenizer", str(tokenizer_file)]) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["converted"]  # no staging directory left behind
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json"):
        assert (out / name).is_file(), name
    umask = os.umask(0o022)
    os.umask(umask)
    # a model folder is shared: the umask's modes, though its staging folder and the weights are made owner-only
    assert {path.stat().st_mode & 0o777 for path in out.iterdir()} == {0o666 & ~umask}
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask
    generation = json.loads((out / "generation_config.json").read_text())
    # the original CLI's tuned defaults, so that generate and the pipeline speak as the CLI does
    assert generation["max_new_tokens"] == 12 * fixture_model.config.frame_rate and generation["top_k"] == 0
    assert (generation["temperature"], generation["nar_temperature"], generation["repetition_penalty"],
            generation["input_prompt_length"], generation["do_sample"]) == (0.5, 0.0, 1.5, 3.0, True)
    config = json.loads((out / "config.json").read_text())
    assert config["audio_backend"] == "vocos" and config["vocoder_config"]["model_type"] == "valle_vocos"
    with safe_open(str(out / "model.safetensors"), "pt") as handle:
        assert "model.embeddings.separator" in handle.keys()
    model = AutoModelForTextToWaveform.from_pretrained(out)
    key = "model.embeddings.separator"
    assert torch.equal(model.state_dict()[key], fixture_model.state_dict()[key])


def test_command_line_reads_a_tilde_in_its_paths_as_the_home_folder(tmp_path, fixtures, tokenizer_file, monkeypatch):
    """--checkpoint=~/... and --output-dir=~/... reach the converter as they are (no shell expands "~" after "="): the
    checkpoint was not found, and an output folder named "~" was made."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    shutil.copy(fixtures.checkpoint, tmp_path / fixtures.checkpoint.name)
    shutil.copy(tokenizer_file, tmp_path / "tokenizer.json")
    assert main([f"--checkpoint=~/{fixtures.checkpoint.name}", "--output-dir=~/converted", "--codec", "tiny-random",
                 "--vocoder", "tiny-random", "--tokenizer=~/tokenizer.json"]) == 0
    assert (tmp_path / "converted" / "config.json").is_file() and not (tmp_path / "~").exists()


def test_command_line_dtype_and_vocoder_none_reach_the_saved_model(tmp_path, fixtures, fixture_model):
    """--dtype is the dtype the decoder's weights are saved in (the codec stays float32), and --vocoder none saves a
    model that decodes with EnCodec ("none" was looked up as a Hub repository)."""
    out = tmp_path / "converted"
    assert main(["--checkpoint", str(fixtures.checkpoint), "--output-dir", str(out), "--codec", "tiny-random",
                 "--vocoder", "none", "--dtype", "bfloat16"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["audio_backend"] == "encodec" and config.get("vocoder_config") is None
    key = "model.embeddings.separator"
    with safe_open(str(out / "model.safetensors"), "pt") as handle:
        assert not any(name.startswith("vocoder.") for name in handle.keys())
        saved = handle.get_tensor(key)
        codec = [handle.get_tensor(name) for name in handle.keys() if name.startswith("codec_model.")]
        assert codec and all(tensor.dtype == torch.float32 for tensor in codec if tensor.is_floating_point())
        assert saved.dtype == torch.bfloat16
    assert torch.equal(saved, fixture_model.state_dict()[key].bfloat16())


def test_a_converted_models_folder_gives_the_codec_and_vocoder_saved_in_it(tmp_path, fixtures, converted_dir):
    """A converted model is a local copy of its codec and decoder, for converting another checkpoint offline: as
    --codec or --vocoder it was refused (not an EnCodec checkpoint, not the Vocos layout)."""
    from valle_hf.codec import tiny_random_codec
    from valle_hf.vocos import tiny_random_vocos

    source = tmp_path / "source"
    shutil.copytree(converted_dir, source)
    model = load_model_and_processor(str(source))[0]
    model.codec_model.load_state_dict(tiny_random_codec(seed=5).state_dict())  # parts of its own, not tiny-random's
    model.vocoder.load_state_dict(tiny_random_vocos(seed=5).state_dict())
    model.save_pretrained(source)
    out = tmp_path / "converted"
    assert main(["--checkpoint", str(fixtures.checkpoint), "--output-dir", str(out), "--codec", str(source),
                 "--vocoder", str(source)]) == 0
    with safe_open(str(source / "model.safetensors"), "pt") as want, safe_open(str(out / "model.safetensors"),
                                                                                "pt") as got:
        parts = [name for name in want.keys() if name.startswith(("codec_model.", "vocoder."))]
        assert any(name.startswith("vocoder.") for name in parts)
        assert all(torch.equal(got.get_tensor(name), want.get_tensor(name)) for name in parts)
    # the model card names the codec's own source, which the folder records, not the folder
    recorded = json.loads((source / "config.json").read_text())["codec_config"]["_name_or_path"]
    assert json.loads((out / "config.json").read_text())["codec_config"]["_name_or_path"] == recorded != str(source)


def test_a_converted_model_without_a_decoder_as_vocoder_and_a_file_as_codec_are_refused(tmp_path, fixtures,
                                                                                         converted_dir, capsys):
    """The file was looked up in the Hub cache as "<file>/config.json"."""
    without = tmp_path / "without"
    assert main(["--checkpoint", str(fixtures.checkpoint), "--output-dir", str(without), "--codec", "tiny-random",
                 "--vocoder", "none"]) == 0
    capsys.readouterr()
    common = ["--checkpoint", str(fixtures.checkpoint), "--output-dir", str(tmp_path / "out")]
    assert main([*common, "--codec", "tiny-random", "--vocoder", str(without)]) == 1
    assert capsys.readouterr().err.strip() == (f"error: the converted model {without} holds no Vocos decoder (it was "
                                                "converted with --vocoder none): give another, or none to decode "
                                                "with EnCodec")
    narrow = tmp_path / "narrow"  # its decoder's weights rounded to bfloat16: copied as float32 without a word
    assert main(["--checkpoint", str(fixtures.checkpoint), "--output-dir", str(narrow), "--codec", "tiny-random",
                 "--vocoder", "tiny-random", "--dtype", "bfloat16"]) == 0
    capsys.readouterr()
    assert main([*common, "--codec", "tiny-random", "--vocoder", str(narrow)]) == 1
    assert f"the converted model {narrow} holds its Vocos decoder in bfloat16" in capsys.readouterr().err
    weights = converted_dir / "model.safetensors"
    assert main([*common, "--codec", str(weights), "--vocoder", "tiny-random"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {weights} is a file: give the EnCodec codec's folder"), err
    assert not (tmp_path / "out").exists()


def test_command_line_reports_errors_in_one_line(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "missing.sft"), "--output-dir", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "missing.sft" in err and "\n" not in err


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_nan_weights_are_refused_naming_the_tensor(tmp_path, fixtures, value):
    tensors, original = original_tensors(fixtures)
    tensors = dict(tensors)
    name = sorted(key for key in tensors if key.startswith("model.layers."))[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = value
    with pytest.raises(CheckpointError, match=f"{name!r} holds NaN or infinite values"):
        convert(write_sft(tmp_path / "nan.sft", tensors, original, packaged_vocab()))


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.bool])
def test_integer_weights_are_refused_naming_the_tensor(tmp_path, fixtures, dtype):
    """They converted, cut to whole numbers, without a word."""
    tensors, original = original_tensors(fixtures)
    tensors = dict(tensors)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].to(dtype)
    kind = str(dtype).removeprefix("torch.")
    with pytest.raises(CheckpointError, match=f"{name!r} is {kind}, where weights are floating point: the file is "
                                              "damaged"):
        convert(write_sft(tmp_path / "integer.sft", tensors, original, packaged_vocab()))


def test_a_failed_save_keeps_the_previous_directory_whole(tmp_path, converted, monkeypatch):
    import os

    from valle_hf import conversion
    from valle_hf.errors import OutputError

    model, processor = converted
    out = conversion.save_converted(model, processor, tmp_path / "converted")
    before = {path.name: path.read_bytes() for path in out.iterdir()}

    def disk_full(directory, *args, **kwargs):
        (Path(directory) / "tokenizer.json").write_text("{")  # half of what it meant to write
        raise OSError(28, "No space left on device")

    replace = os.replace

    def move_fails(source, target):  # the last step, once the previous directory has been moved aside
        if Path(source).name.startswith(".converted.") and not Path(source).name.endswith(".previous"):
            raise OSError(5, "Input/output error")
        replace(source, target)

    with monkeypatch.context() as patch:
        patch.setattr(processor, "save_pretrained", disk_full)
        with pytest.raises(OutputError, match="No space left on device.*left as it was"):
            conversion.save_converted(model, processor, out, overwrite=True)
    with monkeypatch.context() as patch:
        patch.setattr(conversion.os, "replace", move_fails)
        with pytest.raises(OutputError, match="Input/output error.*left as it was"):
            conversion.save_converted(model, processor, out, overwrite=True)
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before

    def interrupted(source, target):  # Ctrl-C (a SIGTERM too) between the two moves: both models were deleted
        replace(source, target)
        if Path(target).name.endswith(".previous"):
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(conversion.os, "replace", interrupted)
        with pytest.raises(KeyboardInterrupt):
            conversion.save_converted(model, processor, out, overwrite=True)
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    assert [path.name for path in tmp_path.iterdir()] == ["converted"]  # no staging directory left


def test_a_killed_conversions_staging_folder_is_named_on_the_next_one(tmp_path, converted):
    """kill -9 leaves the hidden staging folder (a model's size): the next conversion to that folder names it, and
    removes nothing (it may be a conversion running now)."""
    from valle_hf import conversion

    model, processor = converted
    with logged_warnings() as logged:
        conversion.save_converted(model, processor, tmp_path / "converted")
    assert "killed" not in logged.out
    left = tmp_path / ".converted.k1ll3d"
    left.mkdir()
    (tmp_path / ".other.k1ll3d").mkdir()  # another output's
    with logged_warnings() as logged:
        conversion.save_converted(model, processor, tmp_path / "converted", overwrite=True)
    assert str(left) in logged.out and "killed" in logged.out and "other" not in logged.out and left.is_dir()


def test_the_staging_folders_of_an_output_named_like_a_pattern_are_found(tmp_path):
    """`model[1]` was read as a glob pattern: its leftovers went unnamed, and those of `model1` were named instead."""
    from valle_hf.files import leftovers_beside, temporary_folder_beside

    output = tmp_path / "model[1]"
    left = temporary_folder_beside(output)
    temporary_folder_beside(tmp_path / "model1")  # another output's
    assert leftovers_beside(output) == [left]


def assert_same_decoder(model, expected):
    """`model` has `expected`'s decoder weights (the codec and vocoder are the random test ones, and embed_tokens is
    the backbone's unused table)."""
    state = model.state_dict()
    for key, value in expected.state_dict().items():
        if not key.startswith(("codec_model.", "vocoder.")) and "embed_tokens" not in key:
            assert torch.equal(state[key], value), key


def test_backbone_keys_spelt_retnet_convert_to_the_same_model(tmp_path, fixtures, fixture_model):
    """Exports whose backbone is named `retnet.` (as the original's older ones) are read as `model.`."""
    original = load_original_checkpoint(fixtures.checkpoint)
    renamed = {re.sub(r"^model\.", "retnet.", key): value for key, value in original.tensors.items()}
    assert renamed.keys() != original.tensors.keys()
    assert_same_decoder(convert(write_sft(tmp_path / "retnet.sft", renamed, original.config, original.symmap)),
                        fixture_model)


def test_metadata_other_than_config_and_userdata_is_not_read(tmp_path, fixtures, fixture_model):
    """A safetensors writer may add entries of its own that are no JSON ({"format": "pt"}): the original reads only
    its config and userdata."""
    original = load_original_checkpoint(fixtures.checkpoint)
    path = tmp_path / "fp32.sft"
    metadata = {"config": json.dumps(original.config), "format": "pt"}
    if original.symmap is not None:
        metadata["userdata"] = json.dumps({"symmap": original.symmap})
    save_file(original.tensors, str(path), metadata=metadata)
    assert load_original_checkpoint(path).config == original.config
    assert_same_decoder(convert(path), fixture_model)


def test_a_yaml_of_several_models_describes_the_one_it_trains(tmp_path):
    from valle_hf.conversion import original_config_from_yaml

    path = tmp_path / "config.yaml"
    models = [{"name": "ar"}, {"name": "ar+nar", "training": True}, {"name": "nar", "training": True}]
    path.write_text(yaml.safe_dump({"models": models}), encoding="utf-8")
    assert original_config_from_yaml(path)["name"] == "ar+nar"
    path.write_text(yaml.safe_dump({"models": [{**model, "training": False} for model in models]}), encoding="utf-8")
    assert original_config_from_yaml(path)["name"] == "ar"  # none trains: the first


@pytest.mark.parametrize(("content", "message"), [
    ({"models": []}, "its `models:` list is empty: add the model's entry"),  # was "no `models:` list"
    ({"models": None}, "no `models:` list"), ({"models": ["ar+nar"]}, "no `models:` list"), ({}, "no `models:` list"),
])
def test_a_yaml_without_a_model_says_what_is_missing(tmp_path, content, message):
    from valle_hf.conversion import original_config_from_yaml
    from valle_hf.errors import CheckpointError

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(content), encoding="utf-8")
    with pytest.raises(CheckpointError, match=f"config.yaml: {re.escape(message)}"):
        original_config_from_yaml(path)


@pytest.mark.parametrize(("model", "folder"), [
    ({}, "ar+nar-llama-8"),
    ({"name": "nar", "resp_levels": 4}, "nar-llama-4"),
    ({"size": "half"}, "ar+nar-half-llama-8"),
    ({"size": "full"}, "ar+nar-llama-8"),
    ({"size": {"dim": 64, "heads": 4, "layers": 2}}, "ar+nar-llama-8"),
    ({"experts": 1}, "ar+nar-llama-8"),
    ({"experts": 4, "arch_type": "mixtral"}, "ar+nar-4xmixtral-8"),
    ({"arch_type": "a/b"}, "ar+nar-a-b-8"),
])
def test_a_yaml_names_its_checkpoints_folder_as_the_originals_full_name(tmp_path, model, folder):
    """`Model.full_name`: the name, a size preset other than full, the architecture (with the expert count when more
    than one) and the RVQ levels."""
    yaml_file = write_yaml(tmp_path / "config.yaml", model)
    with pytest.raises(FileNotFoundError, match=re.escape(f"no checkpoint at {tmp_path / 'ckpt' / folder}/fp32.sft")):
        checkpoint_of_yaml(yaml_file)
    (tmp_path / "ckpt" / folder).mkdir(parents=True)
    for suffix in (".pth", ".pt", ".safetensors", ".sft"):  # each found before those written earlier
        (tmp_path / "ckpt" / folder / f"fp32{suffix}").touch()
        assert checkpoint_of_yaml(yaml_file) == tmp_path / "ckpt" / folder / f"fp32{suffix}"


@pytest.mark.parametrize("setting", ["size.dim", "size.layers"])
def test_a_config_of_other_sizes_is_refused_before_a_model_of_its_size_is_built(fixtures, tmp_path, monkeypatch,
                                                                                  capsys, setting):
    """A config.yaml of a width or a layer count the checkpoint does not have built a model of that size first, and
    only then compared the weights: a width of millions ran the machine out of memory, a million layers for minutes."""
    from valle_hf.modeling import VallEForConditionalGeneration

    tensors, original = original_tensors(fixtures)
    size = original["size"]
    twice = with_setting(original, setting, 2 * size[setting.split(".")[1]])
    built, init = [], VallEForConditionalGeneration.__init__

    def recording(self, *args, **kwargs):
        init(self, *args, **kwargs)
        built.append(next(self.parameters()).device.type)

    monkeypatch.setattr(VallEForConditionalGeneration, "__init__", recording)
    message = "shape mismatch for" if setting == "size.dim" else "tensor(s) its config calls for"
    assert_refused(write_sft(tmp_path / "fp32.sft", tensors, twice), message, capsys)
    assert set(built) <= {"meta"}, built


@pytest.mark.parametrize(("size", "expected"), [(0.5, (512, 8, 12)), (2, (2048, 32, 12)), ("quarter", (256, 4, 12))])
def test_a_size_given_as_a_scale_scales_the_full_models_width_and_heads(fixtures, size, expected):
    """The original's `Model.dim`, `heads` and `layers` for a size that is a number: 1024 and 16 scaled, 12 layers."""
    from valle_hf.conversion import config_from_original

    _, original = original_tensors(fixtures)
    config = config_from_original(with_setting(original, "size", size))
    assert (config.hidden_size, config.num_attention_heads, config.num_hidden_layers) == expected


@pytest.mark.parametrize(("size", "expected"), [({"dim": 64}, (64, 16, 12)), ({"heads": 4, "layers": 2}, (1024, 4, 2))])
def test_a_size_mapping_takes_the_full_models_value_for_what_it_leaves_out(fixtures, size, expected):
    """The original reads no size mapping at all (every one builds the full model: 1024 wide, 16 heads, 12 layers);
    what a mapping gives is honoured here, and what it leaves out is the full model's."""
    from valle_hf.conversion import config_from_original

    _, original = original_tensors(fixtures)
    config = config_from_original(with_setting(original, "size", size))
    assert (config.hidden_size, config.num_attention_heads, config.num_hidden_layers) == expected


@pytest.mark.parametrize(("name", "value"), [
    ("experimental.interleave", True), ("experimental.hf", True), ("experimental.layerskip", True),
    ("experimental.causal_size", 2), ("experimental.audio_embedding_mode", "exclusive"), ("experts", 2),
    ("arch_type", "retnet"),
])
def test_settings_of_a_model_this_package_does_not_build_are_refused_naming_them(fixtures, name, value):
    from valle_hf.conversion import config_from_original

    _, original = original_tensors(fixtures)
    key = name.rpartition(".")[2]
    expected = {"experts": "with 2 experts", "arch_type": "unsupported architecture 'retnet'",
                "causal_size": "causal_size / audio_embedding_mode", "audio_embedding_mode":
                "causal_size / audio_embedding_mode"}.get(key, f"unsupported experimental setting {key}=True")
    with pytest.raises(CheckpointError, match=re.escape(expected)):
        config_from_original(with_setting(original, name, value))
    config_from_original(original)  # the fixture's own settings are taken


@pytest.mark.parametrize(("name", "attribute", "default"), [
    ("experimental.unified_position_ids", "unified_position_ids", True), ("tasks", "num_tasks", 8),
    ("langs", "num_languages", 1), ("tones", "num_tones", 1), ("version", "version", 5),
    ("resp_levels", "num_rvq_levels", 8),
])
def test_a_setting_the_config_leaves_out_takes_the_originals_default(fixtures, name, attribute, default):
    """The defaults of the original's `Model` dataclass, which a config written by hand may rely on."""
    from valle_hf.conversion import config_from_original

    _, original = original_tensors(fixtures)
    config = copy.deepcopy(original)
    *sections, key = name.split(".")
    settings = config
    for section in sections:
        settings = settings[section]
    settings.pop(key, None)
    assert getattr(config_from_original(config), attribute) == default


def test_a_conversion_the_file_system_refuses_is_one_line_and_leaves_nothing(tmp_path, fixtures, capsys):
    """safetensors raises its own error (no OSError) for a full disk or the file-size limit: it was a traceback."""
    import resource

    out = tmp_path / "converted"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (fixtures.checkpoint.stat().st_size // 2, hard))
    try:
        status = main(["--checkpoint", str(fixtures.checkpoint), "--output-dir", str(out), "--codec", "tiny-random",
                       "--vocoder", "tiny-random"])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    err = capsys.readouterr().err
    assert status == 1 and err.startswith(f"error: could not write {out} (") and err.count("\n") == 1, err
    assert "File too large: the file-size limit (ulimit -f) is" in err
    assert list(tmp_path.iterdir()) == []
