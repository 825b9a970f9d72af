"""Conversion of the original project's checkpoints (`fp32.sft` / `.pth`) to a `from_pretrained` directory.

The original exporter writes plain `nn.Module` state-dict names plus a JSON `config` (the `Model` dataclass) as
safetensors metadata (`.sft`) or beside the tensors in a pickled dict (`.pth`, read here with `weights_only=True`).
Every tensor is either mapped to our layout or on the list of tensors the original never reads at inference;
anything else is an error that names the key, so a wrong checkpoint never loads silently. The phoneme tokenizer (by
default the released one, shipped with the package) is checked against the vocabulary the checkpoint records, and the
codec (EnCodec) and the original's decoder (Vocos) are fetched once and saved inside the converted directory, so that
it works offline.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from safetensors import safe_open

from .configuration import DEFAULT_CODEC, VallEConfig
from .errors import (
    ArgumentParser,
    CheckpointError,
    OutputError,
    UsageError,
    VallEError,
    VallEFileNotFoundError,
    VallEValueError,
    entry_point,
    get_logger,
    named,
    one_line,
)
from .files import (
    check_output_folder,
    leftovers_beside,
    load_tensors,
    path_errors,
    plain_file_modes,
    refused_write,
    temporary_folder_beside,
    why_not_writable,
    write_target,
)
from .loading import no_progress_bars
from .tokenization import check_symmap, packaged_tokenizer_file
from .vocos import DEFAULT_VOCODER

logger = get_logger(__name__)


# Original size presets (vall_e/config.py: Model.dim/heads/layers).
SIZE_PRESETS = {"full": (1024, 16, 12), "half": (512, 8, 12), "quarter": (256, 4, 12), "double": (1024, 16, 24)}
# Tensors that exist in every export but are never read by the ar+nar inference or training paths.
ALWAYS_UNUSED = (
    "langs_emb.weight", "tasks_emb.weight", "tones_emb.weight", "dropout_token", "model.embed_tokens.weight"
)


@dataclass
class OriginalCheckpoint:
    """What an original checkpoint file holds: its tensors, its `config` dict and its tokenizer vocabulary."""

    path: Path
    tensors: dict[str, torch.Tensor]
    config: dict
    symmap: dict[str, int] | None


def _is_safetensors(path: Path) -> bool:
    """Whether `path` starts as a safetensors file does: the length of its JSON header (8 bytes, little-endian), then
    the header's opening brace."""
    with open(path, "rb") as handle:
        start = handle.read(9)
    return len(start) == 9 and start[8:] == b"{" and 0 < int.from_bytes(start[:8], "little") <= path.stat().st_size


def _is_zip(path: Path) -> bool:
    """Whether `path` starts as a zip archive does (a local file header), as torch.save's files do."""
    with open(path, "rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


def load_original_checkpoint(path: str | Path) -> OriginalCheckpoint:
    """Read an original `.sft`/`.safetensors` or `.pth`/`.pt` file (`vall_e/utils/io.py:torch_load`).

    Returns the tensors, the embedded `config` (the original's `Model` dataclass; {} when absent) and
    `userdata.symmap` (the tokenizer vocabulary it was trained with; None when absent). Raises
    `VallEFileNotFoundError` for a missing file and `CheckpointError` for anything that is not such a checkpoint.
    """
    path = Path(path).expanduser()
    if path.is_dir() and is_converted_model(path):
        raise CheckpointError(f"{path} is a converted model already, not an original checkpoint: load it as it is "
                              f"({_how_to_load(path)})")
    if path.is_dir():
        raise VallEFileNotFoundError(f"{path} is a directory, not a checkpoint file: give the file itself (e.g. "
                                     f"{path / 'fp32.sft'})")
    if not path.is_file():
        raise VallEFileNotFoundError(f"checkpoint not found: {path}: check the path of the original fp32.sft (or "
                                     ".pth)")
    metadata: dict = {}
    suffix = path.suffix.lower()  # "FP32.SFT" is a safetensors file too
    if suffix in (".sft", ".safetensors") and _is_zip(path):  # what torch.save writes
        raise CheckpointError(f"{path} is a torch .pth file (a zip archive), not safetensors: rename it to end in "
                              ".pth")
    if suffix in (".sft", ".safetensors"):
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        except Exception as error:  # safetensors raises its own SafetensorError (an Exception) for a damaged file
            raise CheckpointError(f"{path} is not a readable safetensors checkpoint ({one_line(error, 300)}); "
                                  "download it again") from None
        try:
            metadata = {key: json.loads(value) for key, value in metadata.items() if key in ("config", "userdata")}
        except json.JSONDecodeError as error:
            raise CheckpointError(f"{path}: its metadata is not valid JSON ({error})") from None
    elif suffix in (".pth", ".pt"):
        if _is_safetensors(path):  # its pickle reader refused it as holding code
            raise CheckpointError(f"{path} is a safetensors file, not a pickle: rename it to end in .sft")
        try:
            payload = load_tensors(path)
        except pickle.UnpicklingError:  # torch's weights-only unpickler met what only code could build
            raise CheckpointError(f"{path} holds objects other than tensors and plain data (or is a pickle that "
                                  "torch.save did not write), and reading it could run any code, so it is refused; "
                                  "export the checkpoint as .sft (python -m vall_e.export writes fp32.sft), or "
                                  "download it again if it is damaged") from None
        except Exception as error:  # a truncated or foreign file: torch raises what its reader met
            raise CheckpointError(f"{path} is not a readable .pth checkpoint ({one_line(error, 200)}); download it "
                                  "again") from None
        if not isinstance(payload, dict):
            raise CheckpointError(f"{path}: expected a dict of tensors, got {type(payload).__name__}")
        metadata = payload
        tensors = _mapping(payload.get("module", payload), "module", path)
    else:
        raise CheckpointError(f"{path}: unknown checkpoint format {path.suffix!r} (expected .sft, .safetensors, .pth)")
    named = next((key for key in tensors if not isinstance(key, str)), None)
    if named is not None:  # a dict saved by hand: a weight is named by text
        raise CheckpointError(f"{path}: its weights hold a key {named!r:.40} that is no weight's name (text): export "
                              "the checkpoint again")
    tensors = {re.sub(r"^retnet\.", "model.", key): value for key, value in tensors.items() if torch.is_tensor(value)}
    if not tensors:
        raise CheckpointError(f"{path}: holds no tensors")
    config = _mapping(metadata.get("config"), "config", path)
    if not config and is_converted_model(path.parent):  # a converted model's weights, beside its config
        raise CheckpointError(f"{path} is the weights file of a converted model, not an original checkpoint: its "
                              f"folder {path.parent} is the converted model ({_how_to_load(path.parent)})")
    symmap = _mapping(metadata.get("userdata"), "userdata", path).get("symmap")
    if symmap is not None:
        _mapping(symmap, "userdata.symmap", path)
    return OriginalCheckpoint(path, tensors, config, symmap)


def _how_to_load(folder: Path) -> str:
    """How to use the converted model in `folder`, for one given where an original checkpoint belongs."""
    return f"from_pretrained({str(folder)!r}) in Python, --model {folder} on the command line"


def _mapping(value, name: str, path: Path) -> dict:
    """A checkpoint's entry `name` ({} when absent), refused unless it is the dict the original's exporter writes: a
    hand-edited or foreign file can hold anything there."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: its {name!r} entry is a {type(value).__name__}, not the mapping the "
                              "original's exporter writes; export the checkpoint again (vall_e.export)")
    return value


def original_config_from_yaml(path: str | Path) -> dict:
    """The `models:` entry the original would build from a YAML config (the training one, else the first)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise VallEFileNotFoundError(f"config file not found: {path}: check the path of the original's config.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is not valid YAML ({one_line(error, 300)})") from None
    models = data.get("models") if isinstance(data, dict) else None
    if isinstance(models, list) and not models:
        raise CheckpointError(f"{path}: its `models:` list is empty: add the model's entry (name, size, resp_levels, "
                              "...), as the original's config.yaml has it")
    if not isinstance(models, list) or not all(isinstance(model, dict) for model in models):
        raise CheckpointError(f"{path}: no `models:` list (the original's config.yaml has one)")
    return next((model for model in models if model.get("training")), models[0])


def checkpoint_of_yaml(path: str | Path) -> Path:
    """The checkpoint the original loads for `--yaml config.yaml`: `<yaml dir>/ckpt/<full name>/fp32.<suffix>`.

    The full name is the original's `Model.full_name` (`vall_e/config.py`): the model's name, its size when a preset
    other than "full", its architecture (with the expert count when > 1) and its RVQ levels, joined with "-" (e.g.
    "ar+nar-llama-8"); suffixes are tried in the original's order (.sft, .safetensors, .pt, .pth). Raises
    `VallEFileNotFoundError` when none exists.
    """
    model = original_config_from_yaml(path)
    name = [str(model.get("name", "ar+nar"))]
    size = model.get("size", "full")
    if isinstance(size, str) and size != "full":
        name.append(size)
    experts, arch = _setting(model, "experts", "count", 1, path), str(model.get("arch_type", "llama")).replace("/", "-")
    name.append(f"{experts}x{arch}" if experts > 1 else arch)
    name.append(str(_setting(model, "resp_levels", "count", 8, path)))
    folder = Path(path).expanduser().parent / "ckpt" / "-".join(name)  # beside the YAML
    for suffix in (".sft", ".safetensors", ".pt", ".pth"):
        if (folder / f"fp32{suffix}").is_file():
            return folder / f"fp32{suffix}"
    raise VallEFileNotFoundError(
        f"--yaml {path}: no checkpoint at {folder}/fp32.sft (nor .safetensors, .pt, .pth), where the original looks "
        "for it; put it there, or give it with --model path/to/fp32.sft"
    )


def _is_count(value) -> bool:
    """A positive whole number, also written as a float (64.0), as the original's int() reads it."""
    return _is_scale(value) and float(value).is_integer()


def _is_scale(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


# What each kind of setting in the original's config must be (the types of its `Model` dataclass), and how to say so.
# A flag is read as the original reads it, by truth value, but only from values whose truth is plain (a string
# 'False' would read as true).
_KINDS = {
    "count": (_is_count, "a positive integer", int),
    "flag": (lambda value: value is None or isinstance(value, bool) or value in (0, 1), "true or false", bool),
    "names": (lambda value: isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value),
              "a list of names", list),
    "section": (lambda value: value is None or isinstance(value, dict), "a mapping of settings", None),
    "size": (_is_scale, f"one of {sorted(SIZE_PRESETS)}, a positive number, or a mapping of dim, heads and layers",
             None),
}


def _setting(settings: dict, name: str, kind: str, default, source: str | Path):
    """`settings[name]` (`default` when absent), refused with a `CheckpointError` naming it and `source` unless it is
    of `kind` (see `_KINDS`). `name` may be dotted ("size.dim", with `settings` the size mapping): its last part is
    the key. The original uses these values as they are, so a string 'False' would read as true and a null fail deep
    inside torch."""
    value = settings.get(name.rpartition(".")[2], default)
    test, meaning, read = _KINDS[kind]
    if not test(value):
        raise CheckpointError(f"{source} sets {name} to {value!r}: it must be {meaning}")
    return value if read is None else read(value)


def _size(original: dict, source: str | Path) -> tuple[int, int, int]:
    size = original.get("size", "full")
    if isinstance(size, dict):  # honoured here (the original silently ignores a dict size: a bug)
        return tuple(_setting(size, f"size.{name}", "count", default, source)
                     for name, default in zip(("dim", "heads", "layers"), SIZE_PRESETS["full"], strict=True))
    if isinstance(size, str) and size in SIZE_PRESETS:
        return SIZE_PRESETS[size]
    scale = _setting(original, "size", "size", "full", source)  # any other name, a null or a list is refused here
    return int(1024 * scale), int(16 * scale), 12


def config_from_original(original: dict, *, source: str | Path = "the checkpoint's config", **overrides) -> VallEConfig:
    """A `VallEConfig` equivalent to the original's `Model` config dict (as stored in the checkpoint metadata).

    `source` says where `original` comes from in errors: a `CheckpointError` for a setting of the wrong type, or one
    this package does not support.
    """
    def setting(name: str, kind: str, default):
        return _setting(original, name, kind, default, source)

    def flag(name: str, default: bool = False) -> bool:
        return _setting(experimental, f"experimental.{name}", "flag", default, source)

    experts = setting("experts", "count", 1)
    if original.get("arch_type", "llama") != "llama" or experts > 1:
        raise CheckpointError(
            f"unsupported architecture {original.get('arch_type')!r} with {experts} experts in {source}: "
            "only the llama backbone (the released ar+nar-llama-8) is supported"
        )
    experimental = setting("experimental", "section", None) or {}
    for name in ("interleave", "hf", "layerskip"):
        if flag(name):
            raise CheckpointError(f"unsupported experimental setting {name}=True in {source}")
    causal_size = _setting(experimental, "experimental.causal_size", "count", 1, source)
    if causal_size != 1 or experimental.get("audio_embedding_mode"):
        raise CheckpointError(f"unsupported experimental causal_size / audio_embedding_mode in {source}")
    dim, heads, layers = _size(original, source)
    values = dict(
        hidden_size=dim,
        num_attention_heads=heads,
        num_hidden_layers=layers,
        num_rvq_levels=setting("resp_levels", "count", 8),
        num_tasks=setting("tasks", "count", 8),
        num_languages=setting("langs", "count", 1),
        num_tones=setting("tones", "count", 1),
        version=setting("version", "count", 5),
        capabilities=setting("capabilities", "names", ["ar", "nar"]),
        audio_embedding_sums=flag("audio_embedding_sums"),
        split_classifiers=flag("split_classifiers"),
        unified_position_ids=flag("unified_position_ids", True),
    )
    values.update(overrides)
    try:
        return VallEConfig(**values)
    except VallEValueError as error:  # well-formed values the model cannot run (version 4, 2 RVQ levels, ...)
        raise CheckpointError(f"{source} describes a model valle-hf cannot run: {one_line(error)}") from None


def key_map(config: VallEConfig) -> dict[str, str]:
    """Original state-dict name -> our name, for every tensor the model uses."""
    mapping = {
        "text_emb.weight": "model.embeddings.text.weight",
        "rvq_l_emb.weight": "model.embeddings.level.weight",
        "sep": "model.embeddings.separator",
        "model.norm.weight": "model.backbone.norm.weight",
    }
    for level in range(config.num_prompt_tables):
        mapping[f"proms_emb.embeddings.{level}.weight"] = f"model.embeddings.prompt.levels.{level}.weight"
    for level in range(config.num_response_tables):
        mapping[f"resps_emb.embeddings.{level}.weight"] = f"model.embeddings.response.levels.{level}.weight"
    for head in range(config.num_heads):
        for part in ("weight", "bias"):
            mapping[f"classifiers.proj.{head}.{part}"] = f"classifiers.{head}.{part}"
    for layer in range(config.num_hidden_layers):
        for name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                     "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm"):
            mapping[f"model.layers.{layer}.{name}.weight"] = f"model.backbone.layers.{layer}.{name}.weight"
    return mapping


def unused_keys(config: VallEConfig) -> set[str]:
    """Tensors the original stores but never reads (the tables past `num_prompt_tables` / `num_response_tables`, and
    the embeddings of features the released model does not have): dropped without complaint."""
    levels = config.num_rvq_levels
    prompt = {f"proms_emb.embeddings.{j}.weight" for j in range(config.num_prompt_tables, levels)}
    response = {f"resps_emb.embeddings.{j}.weight" for j in range(config.num_response_tables, levels)}
    return set(ALWAYS_UNUSED) | prompt | response


def _state_shapes(config: VallEConfig) -> dict[str, torch.Size]:
    """The shape of each weight of a model of `config`, from one built on the meta device (no memory for weights)."""
    from .modeling import VallEForConditionalGeneration

    with torch.device("meta"):
        return {key: value.shape for key, value in VallEForConditionalGeneration(config).state_dict().items()}


# How to fix a checkpoint whose tensors do not fit the config it is converted with.
_CONFIG_FIT = "give the config.yaml it was trained with, or a checkpoint of the original's ar+nar model"


def convert_state_dict(tensors: dict[str, torch.Tensor], config: VallEConfig) -> dict[str, torch.Tensor]:
    """Rename every used tensor, check its shape and values, and fail on missing or unknown keys (naming them).

    The names are checked first, then the shapes, against a model of `config` built on the meta device: a config of
    other sizes than the checkpoint's is refused before a model of its size is built (a million layers, or a width of
    millions, ran the machine out of memory). A tensor with NaN or infinite values is refused: the model would convert
    and then generate only code 0; so is one of integers, whose values the model's floating-point weights would take
    cut to whole numbers.
    """
    if any("lora_" in key for key in tensors):
        raise CheckpointError("this is a LoRA checkpoint: convert the base model and load the LoRA with peft")
    mapping = key_map(config)
    missing = sorted(key for key in mapping if key not in tensors)
    if missing:
        raise CheckpointError(f"checkpoint is missing {len(missing)} tensor(s) its config calls for, first: "
                              f"{missing[0]!r}; {_CONFIG_FIT}")
    unknown = sorted(set(tensors) - set(mapping) - unused_keys(config))
    if unknown:
        raise CheckpointError(f"checkpoint has {len(unknown)} tensor(s) its config has no place for, first: "
                              f"{unknown[0]!r}; {_CONFIG_FIT}")
    expected_shapes = _state_shapes(config)
    converted = {}
    for original_key, key in mapping.items():
        tensor = tensors[original_key]
        if tensor.shape != expected_shapes[key]:
            raise CheckpointError(
                f"shape mismatch for {original_key!r}: checkpoint {tuple(tensor.shape)}, "
                f"model expects {tuple(expected_shapes[key])}; {_CONFIG_FIT}"
            )
        if not tensor.is_floating_point():  # converted as it was: its weights cut to whole numbers, without a word
            dtype = str(tensor.dtype).removeprefix("torch.")
            raise CheckpointError(f"the checkpoint's tensor {original_key!r} is {dtype}, where weights are floating "
                                  "point: the file is damaged; use another checkpoint")
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"the checkpoint's tensor {original_key!r} holds NaN or infinite values: the "
                                  "file is damaged or the training diverged; use another checkpoint")
        converted[key] = tensor
    return converted


def convert_checkpoint(
    checkpoint: str | Path,
    config_yaml: str | Path | None = None,
    *,
    tokenizer: str | Path | None = None,
    codec: str = DEFAULT_CODEC,
    vocoder: str | None = DEFAULT_VOCODER,
    dtype: torch.dtype = torch.float32,
):
    """Build `(VallEForConditionalGeneration, VallEProcessor)` from an original checkpoint.

    `tokenizer`: the original's tokenizer.json (default: the released one, shipped with the package); it must match
    the vocabulary the checkpoint records (`userdata.symmap`), and a checkpoint without one is converted with a
    warning that it could not be checked. `codec`: the EnCodec weights (Hub id or directory, or "tiny-random");
    `vocoder`: the original's Vocos decoder (Hub id or directory in the Vocos repository layout, "tiny-random", or
    None for none: the model then decodes with EnCodec). A checkpoint without the text head (an export with
    `--split-classifiers`) converts to a model that refuses speech-to-text.
    """
    from .modeling import VallEForConditionalGeneration
    from .processing import VallEProcessor

    original = load_original_checkpoint(checkpoint)
    tokenizer = packaged_tokenizer_file() if tokenizer is None else Path(tokenizer)
    if original.symmap is None:
        logger.warning(f"{original.path} records no tokenizer vocabulary (userdata.symmap): the tokenizer {tokenizer} "
                       "could not be checked against it")
    else:
        check_symmap(tokenizer, original.symmap, str(original.path))
    processor = VallEProcessor.from_tokenizer_file(tokenizer)
    if config_yaml is None:
        config_dict, source = original.config, f"the config embedded in {original.path}"
    else:
        config_dict, source = original_config_from_yaml(config_yaml), str(config_yaml)
    if config_yaml is None and not config_dict:  # a YAML's empty entry is the original's defaults
        raise CheckpointError(f"{checkpoint}: no embedded config; give the original config.yaml it was trained "
                              "with (--config of python -m valle_hf.convert, --yaml of python -m valle_hf, "
                              "config_yaml= in Python)")
    levels = _setting(config_dict, "resp_levels", "count", 8, source)
    text_head = f"classifiers.proj.{levels}.weight" in original.tensors
    codec_model = load_codec_of(codec)  # its config names where it came from, for the model card
    vocoder_model = None if vocoder is None else load_vocoder_of(vocoder)
    config = config_from_original(
        config_dict, source=source, codec_config=codec_model.config.to_dict(), text_head=text_head,
        vocoder_config=None if vocoder_model is None else vocoder_model.config.to_dict(),
    )
    state = convert_state_dict(original.tensors, config)
    model = VallEForConditionalGeneration(config)
    state.update({f"codec_model.{key}": value for key, value in codec_model.state_dict().items()})
    if vocoder_model is not None:
        state.update({f"vocoder.{key}": value for key, value in vocoder_model.state_dict().items()})
    missing, unexpected = model.load_state_dict(state, strict=False)
    unexpected = [key for key in unexpected if not key.startswith("codec_model.")]
    missing = [key for key in missing if key != "model.backbone.embed_tokens.weight"]
    if missing or unexpected:
        raise RuntimeError(f"internal conversion error: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model.to(dtype).eval(), processor


def load_codec_of(name: str):
    """The EnCodec model `name` names: "tiny-random" (random test weights), a converted model's folder (the codec
    saved in it, so that one works offline), or an EnCodec Hub id or folder (`load_codec`). Raises what the loaders
    raise."""
    from .codec import load_codec, tiny_random_codec

    if name == "tiny-random":
        codec = tiny_random_codec()
        codec.config._name_or_path = name
        return codec
    if is_converted_model(Path(name).expanduser()):  # the codec's own source, which the folder records
        return _converted_model(name).codec_model
    return load_codec(name)


def load_vocoder_of(name: str):
    """The Vocos decoder `name` names: "tiny-random", a converted model's folder (the decoder saved in it; one
    converted without a decoder is refused, `CheckpointError`), or a Hub id or folder in the Vocos layout
    (`load_original_vocos`)."""
    from .vocos import load_original_vocos, tiny_random_vocos

    if name == "tiny-random":
        return tiny_random_vocos()
    if not is_converted_model(Path(name).expanduser()):
        return load_original_vocos(name)
    vocoder = _converted_model(name).vocoder
    if vocoder is None:
        raise CheckpointError(f"the converted model {name} holds no Vocos decoder (it was converted with --vocoder "
                              "none): give another, or none to decode with EnCodec")
    if vocoder.dtype != torch.float32:  # converted with --dtype: its decoder's weights are rounded
        saved = str(vocoder.dtype).removeprefix("torch.")
        raise CheckpointError(f"the converted model {name} holds its Vocos decoder in {saved}: give a float32 "
                              f"conversion, or the decoder's own weights ({DEFAULT_VOCODER})")
    return vocoder


def _converted_model(folder: str):
    """The converted model in `folder`, loaded for a part of it in the dtype it was saved in (the codec is float32
    in every one): without a bar for the whole model's weights."""
    from .loading import CONVERTED_CHOICES, load_model

    with no_progress_bars():
        return load_model(str(Path(folder).expanduser()), dtype="auto", choices=CONVERTED_CHOICES)


def is_converted_model(folder: Path) -> bool:
    """Whether `folder` holds a model of this package: a `config.json` naming its model type, as `save_converted`
    (and `save_pretrained`) write."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):  # none, unreadable, or not JSON: not one of ours
        return False
    return isinstance(config, dict) and config.get("model_type") == VallEConfig.model_type


def check_output_dir(output_dir: str | Path, overwrite: bool = False, inputs=()) -> Path:
    """Refuse, before any work, an `output_dir` that exists and is not an empty directory, unless `overwrite` and it
    is a converted model (replacing it deletes everything in it: a folder of anything else is never replaced), and one
    that is or holds any of the paths in `inputs` (the files the conversion reads: replacing it would delete them;
    names that are no file or folder here, a Hub id or 'tiny-random', are not paths). Returns the directory to write:
    where `output_dir` is a symbolic link, the folder it points to (the link is kept, pointing to the new model)."""
    output_dir = Path(output_dir).expanduser()
    with path_errors(f"--output-dir {output_dir}"):
        target = write_target(output_dir)
        if target.is_symlink() and not target.exists():
            raise UsageError(f"--output-dir {output_dir} is a symbolic link that leads back to itself: give a "
                             "folder")
        return _check_output_dir(target, overwrite, inputs)


def _check_output_dir(output_dir: Path, overwrite: bool, inputs) -> Path:
    for source in (name for name in inputs if name and Path(name).exists()):
        source, target = Path(source).resolve(), output_dir.resolve()
        if source == target or target in source.parents:
            raise VallEError(f"--output-dir {output_dir} is or holds {source}, which the conversion reads: choose "
                             "another --output-dir")
    check_output_folder(output_dir, "--output-dir")
    parent = output_dir.absolute().parent
    # The model is written to a directory made beside it, then renamed (over an existing one, even an empty one).
    problem = why_not_writable(output_dir.absolute()) if parent.is_dir() else None
    if problem:
        raise UsageError(f"cannot write --output-dir {output_dir}: the model is written to a directory made beside it "
                         f"first, and {parent} cannot take one ({problem}); choose another --output-dir")
    if os.path.ismount(output_dir):
        raise UsageError(f"--output-dir {output_dir} is a mount point, which cannot be replaced by the directory the "
                         f"model is written to beside it: give a folder inside it, such as {output_dir / 'model'}")
    if output_dir.exists() and Path.cwd().resolve().is_relative_to(output_dir.resolve()):
        raise UsageError(f"--output-dir {output_dir} is the working folder or holds it, which cannot be replaced by "
                         "the directory the model is written to beside it: give a new folder's name, such as "
                         f"{output_dir / 'model'}")
    if not output_dir.exists() or not any(output_dir.iterdir()):
        return output_dir
    if not overwrite:
        replace = ", or pass --overwrite to replace the model it holds" if is_converted_model(output_dir) else ""
        raise VallEError(f"{output_dir} already exists and is a directory that is not empty: choose another "
                         f"--output-dir{replace}")
    if not is_converted_model(output_dir):
        raise VallEError(f"--overwrite replaces only a converted model, and {output_dir} is not one (no config.json "
                         f"of a {VallEConfig.model_type} model), so everything in it is kept: choose another "
                         "--output-dir (or empty this one)")
    return output_dir


def _warn_of_leftovers(output_dir: Path) -> None:
    """Name the staging folders a killed conversion left beside `output_dir` (a model's size each). They are not
    removed: one may belong to a conversion running now."""
    leftovers = leftovers_beside(output_dir)
    if leftovers:
        names = ", ".join(str(path) for path in leftovers)
        logger.warning(f"{names}: left by a conversion to {output_dir} that was killed (or in use by one running now); "
                       "delete them when no conversion is running, to free their space")


def save_converted(model, processor, output_dir: str | Path, overwrite: bool = False) -> Path:
    """Write a `from_pretrained` directory (config, weights, generation config, processor, and the model's code with
    its `auto_map`, so that it loads with `trust_remote_code=True` where valle-hf is not installed), all or nothing.

    Everything is written to a temporary directory beside `output_dir` and moved into place at the end, so a failure
    leaves no half-written directory. An existing non-empty `output_dir` is refused unless `overwrite` and it is a
    converted model (`check_output_dir`).
    """
    output_dir = check_output_dir(output_dir, overwrite)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    _warn_of_leftovers(output_dir)
    staging = temporary_folder_beside(output_dir)
    previous = staging.with_name(staging.name + ".previous")  # the replaced output, kept until the new one is in place
    try:
        with no_progress_bars():  # one save, all or nothing: a bar per file would say nothing more
            model.save_pretrained(staging)
            processor.save_pretrained(staging)
        plain_file_modes(staging)
        if output_dir.exists():
            os.replace(output_dir, previous)
        os.replace(staging, output_dir)
    except Exception as error:  # disk full, a file-size limit, permissions; safetensors raises its own for those
        reason = one_line(error, 200) if isinstance(error, OSError) else refused_write(error)
        if reason is None:
            raise
        raise OutputError(f"could not write {output_dir} ({reason}); it was left as it was") from None
    finally:  # a failure, or Ctrl-C, between the two renames: the replaced output goes back in place
        if previous.exists() and not output_dir.exists():
            os.replace(previous, output_dir)
        shutil.rmtree(staging, ignore_errors=True)
        if previous.is_dir():
            shutil.rmtree(previous, ignore_errors=True)
        else:
            previous.unlink(missing_ok=True)
    return output_dir


@entry_point()
def main(argv: list[str] | None = None) -> int:
    """`python -m valle_hf.convert`; returns the exit status (1 with one `error:` line for a user's mistake)."""
    parser = ArgumentParser(
        prog="python -m valle_hf.convert",
        description="Convert an original e-c-k-e-r/vall-e checkpoint (fp32.sft or .pth) to a from_pretrained "
        "directory.",
    )
    parser.add_argument("--checkpoint", type=named, required=True, help="original fp32.sft / .safetensors / .pth file")
    parser.add_argument("--output-dir", type=named, required=True, help="directory to write")
    parser.add_argument("--overwrite", action="store_true", help="replace the converted model already in "
                        "--output-dir (a folder of anything else is never replaced)")
    parser.add_argument("--config", type=named, default=None,
                        help="original config.yaml (default: the checkpoint's own config)")
    parser.add_argument("--tokenizer", type=named, default=None,
                        help="original tokenizer.json (default: the released model's, shipped with valle-hf)")
    parser.add_argument("--codec", type=named, default=DEFAULT_CODEC,
                        help="EnCodec weights: Hub id, local directory, a converted model's directory (its "
                        "codec), or 'tiny-random'")
    parser.add_argument("--vocoder", type=named, default=DEFAULT_VOCODER,
                        help="Vocos decoder: Hub id or local directory in the Vocos layout (config.yaml + "
                        "pytorch_model.bin), a converted model's directory (its decoder), 'tiny-random', or 'none'")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                        help="the dtype the model's weights are saved in [float32]")
    args = parser.parse_args(argv)
    check_output_dir(args.output_dir, args.overwrite,
                     [args.checkpoint, args.config, args.tokenizer, args.codec, args.vocoder])
    model, processor = convert_checkpoint(
        args.checkpoint, args.config, tokenizer=args.tokenizer, codec=args.codec,
        vocoder=None if args.vocoder == "none" else args.vocoder, dtype=getattr(torch, args.dtype),
    )
    print(f"wrote {save_converted(model, processor, args.output_dir, args.overwrite)}")
    return 0
