"""Where a model comes from: a converted directory, a Hub id, an original checkpoint, the released model, tiny-random.

`load_model_and_processor(name)` is what the CLI's `--model` means; the Python API can use it the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import shutil
import warnings
from pathlib import Path

import torch
from torch import nn
from transformers.models.llama.modeling_llama import LlamaRMSNorm
from transformers.utils import GENERATION_CONFIG_NAME, SAFE_WEIGHTS_NAME
from transformers.utils import logging as hf_logging

from .configuration import DEFAULT_CODEC
from .errors import (
    CheckpointError,
    DamagedWeightsError,
    MissingDependencyError,
    ModelNotFoundError,
    UsageError,
    VallEError,
    VallETypeError,
    VallEValueError,
    one_line,
)
from .files import check_output_folder
from .hardware import quiet_torchao_import
from .hub import TINY_RANDOM, check_reachable, default_cache_dir, hub_file, model_name
from .tokenization import TOKENIZER_FILE, saved_tokenizer, tokenizer_fingerprint
from .vocos import DEFAULT_VOCODER

RELEASED_REPO = "ecker/vall-e"
RELEASED_CHECKPOINT = "models/ckpt/ar+nar-llama-8/fp32.sft"
RELEASED_FOLDER = "ar+nar-llama-8"  # the converted directory in the package cache
ORIGINAL_SUFFIXES = (".sft", ".safetensors", ".pth", ".pt")


def names_original_checkpoint(name: str) -> bool:
    """Whether the model `name` names an original checkpoint file, by its suffix: a folder so named ("model.sft", as
    the converter may write one) is a converted model."""
    return Path(name).suffix.lower() in ORIGINAL_SUFFIXES and not Path(name).expanduser().is_dir()

# The dtypes a model loads in, by name.
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}

# The phoneme inventory of the embedded tiny-random model's character tokenizer (the real one is the original's BPE).
_TINY_SYMBOLS = (
    " !\"(),-.:;?abcdefghijklmnopqrstuvwxyzæçðøħŋœɐɑɒɓɔɕɖɗɘəɚɛɜɞɟɠɡɢɣɤɥɦɧɨɪɫɬɭɮɯɰɱɲɳɴɵɶɸɹɺɻɽɾʀʁʂʃʄʈʉʊʋʌʍʎʏʐʑʒʔʕʘʙʛʜʝʟʡʢ"
    "ʰʲʷˈˌːˑ̩̃θβχᵻ"
)


# <unk> <bos> </eos> <mask>, then one token per symbol: the tiny model's text vocabulary matches it exactly, so random
# weights can only produce ids the tiny processor decodes (speech-to-text with tiny-random prints IPA noise, no error).
_TINY_SPECIALS = ("<unk>", "<bos>", "</eos>", "<mask>")
_TINY_VOCAB = _TINY_SPECIALS + tuple(dict.fromkeys(_TINY_SYMBOLS))


def offline_choices(spelling: str) -> str:
    """The models that load without the Hub, each written as `spelling` (a format string for one model's name) says
    the caller gives one: "--model {}" on the command line, a call in Python."""
    return (f"use {spelling.format('DIR')} (a converted directory), {spelling.format('path/to/fp32.sft')} (an original "
            f"checkpoint, converted on the fly), or {spelling.format(TINY_RANDOM)} (an installation check that makes "
            "noise)")


OFFLINE_CHOICES = offline_choices("--model {}")  # the command line's
# The examples', which have no --codec for an original checkpoint's conversion
EXAMPLE_CHOICES = (f"use --model DIR (a converted directory: python -m valle_hf.convert makes one from an original "
                   f"checkpoint), or --model {TINY_RANDOM} (an installation check that makes noise)")
PYTHON_CHOICES = offline_choices('load_model_and_processor("{}")')


def tiny_random_processor():
    """A character-level phoneme tokenizer in the original's id conventions (<unk> 0, <bos> 1, </eos> 2)."""
    from tokenizers import Tokenizer, models, processors
    from transformers import PreTrainedTokenizerFast

    from .processing import VallEProcessor

    vocab = {token: index for index, token in enumerate(_TINY_VOCAB)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.add_special_tokens(list(_TINY_SPECIALS))  # special, as the released tokenizer.json marks them
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A </eos>", special_tokens=[("<bos>", 1), ("</eos>", 2)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<bos>", eos_token="</eos>", pad_token="<unk>"
    )
    return VallEProcessor(tokenizer)


def tiny_random_model(seed: int = 0):
    """A tiny random VALL-E with a tiny random codec and Vocos: checks an installation end to end, produces noise.

    Its decoder reacts to the prompt, the text and the level (`reactive_init_`). Deterministic for a given `seed`;
    the global RNG state is left untouched.
    """
    from .codec import tiny_random_codec
    from .configuration import VallEConfig
    from .modeling import VallEForConditionalGeneration
    from .vocos import tiny_random_vocos

    codec, vocoder = tiny_random_codec(seed), tiny_random_vocos(seed)
    config = VallEConfig(hidden_size=64, num_attention_heads=4, num_hidden_layers=4, text_vocab_size=len(_TINY_VOCAB),
                         codec_config=codec.config.to_dict(), vocoder_config=vocoder.config.to_dict())
    with torch.random.fork_rng(devices=[]):  # construction draws initial weights, all replaced below
        model = VallEForConditionalGeneration(config)
    reactive_init_(model, torch.Generator().manual_seed(seed))
    model.codec_model.load_state_dict(codec.state_dict())
    model.vocoder.load_state_dict(vocoder.state_dict())
    model.generation_config.max_new_tokens = 2 * model.config.frame_rate  # random weights rarely stop by themselves
    return model.eval()


def _normal_(tensor: torch.Tensor, generator: torch.Generator, std: float = 1.0, mean: float = 0.0) -> None:
    tensor.copy_(mean + std * torch.randn(tensor.shape, generator=generator))


@torch.no_grad()
def reactive_init_(model, generator: torch.Generator) -> None:
    """Random decoder weights under which every input matters: the voice prompt, the text, the RVQ level.

    The default init (N(0, 0.02) linears) makes attention near-uniform and its output negligible next to the
    residual stream, so such a model ignores its prompt and text, and no test could see them being dropped. Here, as
    in the parity fixtures: unit-normal embeddings and separator, backbone matrices ~ N(0, 1/fan_in), RMSNorm
    weights ~ 1 + 0.1 N(0, 1), and heads ~ N(0, 4/hidden) without bias, so logits spread over a few units. Only the
    decoder and its heads are set (the codec and vocoder keep their weights); every value is drawn from `generator`.
    """
    heads = set(model.classifiers)
    for module in [*model.model.modules(), *model.classifiers]:
        if isinstance(module, nn.Embedding):
            _normal_(module.weight, generator)
        elif isinstance(module, nn.Linear):
            fan_in = module.in_features
            _normal_(module.weight, generator, (2.0 if module in heads else 1.0) / math.sqrt(fan_in))
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, LlamaRMSNorm):
            _normal_(module.weight, generator, 0.1, mean=1.0)
    _normal_(model.model.embeddings.separator, generator)


def released_folder_name(codec: str | None = DEFAULT_CODEC, vocoder: str | None = DEFAULT_VOCODER) -> str:
    """The name of the released model's cached directory for this codec and vocoder: "ar+nar-llama-8" for the
    defaults, "ar+nar-llama-8-<hash of the pair>" for any other pair, so that one run with another decoder (say
    tiny-random's noise) never serves the runs after it."""
    if (codec, vocoder) == (DEFAULT_CODEC, DEFAULT_VOCODER):
        return RELEASED_FOLDER
    return f"{RELEASED_FOLDER}-{hashlib.sha256(f'{codec}|{vocoder}'.encode()).hexdigest()[:12]}"


def released_model_directory(cache_dir: str | Path | None = None, codec: str = DEFAULT_CODEC,
                             vocoder: str = DEFAULT_VOCODER, choices: str = PYTHON_CHOICES) -> Path:
    """The converted directory of the released ar+nar-llama-8, made on first use and kept under `cache_dir`.

    The first call downloads `models/ckpt/ar+nar-llama-8/fp32.sft` from the `ecker/vall-e` Hub repository, and the
    EnCodec (`codec`) and Vocos (`vocoder`) weights, converts them with the phoneme tokenizer shipped in this package,
    and saves one directory (default `~/.cache/huggingface/valle_hf/ar+nar-llama-8`; `VALLE_HF_CACHE` moves it);
    later calls only return its path. Another `codec` or `vocoder` gets a directory of its own beside it
    (`released_folder_name`). For APIs that take a path, like
    `pipeline("text-to-speech", model=str(released_model_directory()))`. Raises `ModelNotFoundError`, naming the
    offline `choices` (`offline_choices`: the command line passes its flags'), when a download fails.
    """
    from .conversion import convert_checkpoint

    target = (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) / released_folder_name(
        codec, vocoder)
    if (target / "config.json").is_file():
        return target
    _check_cache_folder(target, choices)
    checkpoint = hub_file(RELEASED_REPO, RELEASED_CHECKPOINT, "the released model", f"offline: {choices}")
    model, processor = convert_checkpoint(checkpoint, codec=codec, vocoder=vocoder)
    return _save_released(model, processor, target)


def _check_cache_folder(target: Path, choices: str) -> None:
    """Refuse, before a download of hundreds of megabytes and its conversion, a cache where the converted directory
    cannot be saved, saying how to move the cache (the save's own error named an --output-dir no one gave)."""
    try:
        check_output_folder(target, "the converted model's cache folder")
    except UsageError as error:
        raise UsageError(f"{error}; set VALLE_HF_CACHE to a folder you can write, or {choices}") from None


def _save_released(model, processor, target: Path) -> Path:
    """Save the released model's conversion to `target`, unless another run sharing the cache (a second process
    started at the same time) saved it while this one converted: its directory is then kept as it is, since that run
    may be reading it, and replacing it would fail once it is there."""
    from .conversion import save_converted

    if (target / "config.json").is_file():
        return target
    if target.is_dir():  # this package's own cache, left incomplete (by hand: saving is all or nothing): made again
        shutil.rmtree(target)
    try:
        return save_converted(model, processor, target)
    except VallEError:
        if (target / "config.json").is_file():  # the other run moved its directory in first
            return target
        raise


def load_model_and_processor(
    name: str | None = None,
    *,
    tokenizer: str | None = None,
    config_yaml: str | None = None,
    codec: str = DEFAULT_CODEC,
    vocoder: str | None = DEFAULT_VOCODER,
    dtype: torch.dtype = torch.float32,
    cache_dir: str | Path | None = None,
    quantize: str | None = None,
    revision: str | None = None,
    choices: str = PYTHON_CHOICES,
):
    """Resolve `name` to `(model, processor)`.

    `None`: the released ar+nar-llama-8 (downloaded and converted once, cached under `cache_dir`), or with
    `config_yaml` the checkpoint that config names, as the original's `--yaml` does (`checkpoint_of_yaml`);
    "tiny-random": the embedded installation check; a directory: `from_pretrained`; a `.sft`/`.pth` file: an
    original checkpoint converted in memory (`config_yaml`, `tokenizer`, `codec`, `vocoder` as for
    `convert_checkpoint`); anything else: a Hub id for `from_pretrained`. `config_yaml` with anything but an
    original checkpoint (or none) is refused, as it could not be honoured.

    `dtype`: torch.float32 (the default), torch.bfloat16, torch.float16 (or float64), or their names, or "auto"
    (`model_dtype`).
    `quantize="int8"`: the decoder's linears get int8 weights through transformers' `TorchAoConfig`
    (`int8_quantization_config`; needs torchao, the `valle-hf[int8]` extra); a model built in memory (tiny-random,
    an original checkpoint) is saved to a temporary directory and loaded from there to get them.
    `revision`: the branch, tag or commit of a Hub id to load (default: main); refused with any other `name`, as
    `cache_dir` is with any `name` but None.
    `choices`: what a `ModelNotFoundError` offers instead (`offline_choices`), in this call's arguments by default;
    the command line passes `OFFLINE_CHOICES`, in its flags.
    """
    if quantize not in (None, "int8"):
        raise VallEValueError(f"quantize must be 'int8' (or None), got {quantize!r}")
    if name is not None:
        name = model_name(name, "the model")
    if isinstance(name, str) and not name.strip():  # read as the current folder; None is the released model
        raise VallEValueError("the model's name is empty (an unset variable?): give a folder, a Hub id, an original "
                              "checkpoint, 'tiny-random', or None for the released model")
    check_revision(name, revision, config_yaml)
    if cache_dir is not None and (name is not None or config_yaml is not None):  # it would be ignored
        raise VallEValueError(f"cache_dir is where the released model is converted (no model named), not used for "
                              f"{name or config_yaml}: drop it (a Hub id is kept in the Hugging Face cache: set "
                              "HF_HOME or HF_HUB_CACHE to move it)")
    dtype = model_dtype(dtype)
    from .conversion import checkpoint_of_yaml, convert_checkpoint
    from .processing import VallEProcessor

    if config_yaml is not None and name is None:
        name = str(checkpoint_of_yaml(config_yaml))
    if config_yaml is not None and not names_original_checkpoint(name):
        raise VallEValueError(f"--yaml (config_yaml= in Python) applies to original checkpoints, not to {name}: "
                              "drop it, or give the original's fp32.sft as the model")
    if name == TINY_RANDOM:
        if tokenizer:
            raise VallEValueError("--tokenizer (tokenizer= in Python) does not apply to tiny-random, which has its "
                                  "own: drop it")
        return _quantized(tiny_random_model(), dtype, quantize), tiny_random_processor()
    if name is None:
        name = str(released_model_directory(cache_dir, codec, vocoder, choices))
    path = Path(name)
    if names_original_checkpoint(name):
        model, processor = convert_checkpoint(path, config_yaml, tokenizer=tokenizer, codec=codec, vocoder=vocoder)
        return _quantized(model, dtype, quantize), processor
    if tokenizer:
        processor = VallEProcessor.from_tokenizer_file(tokenizer)
        check_own_tokenizer(path, processor.tokenizer, tokenizer)
        return load_model(name, dtype=dtype, quantize=quantize, revision=revision, choices=choices), processor
    if path.is_dir() and (path / "config.json").is_file() and not (path / TOKENIZER_FILE).is_file():
        raise CheckpointError(f"{name} has no {TOKENIZER_FILE}: give the model's phoneme tokenizer with --tokenizer "
                              "(tokenizer= in Python), or convert the checkpoint again (python -m valle_hf.convert)")
    if not path.exists():  # a Hub id: a missing tokenizer is found before the weights (gigabytes) are fetched
        check_hub_model(name, choices, revision)
    model = load_model(name, dtype=dtype, quantize=quantize, revision=revision, choices=choices)
    return model, load_processor(name, revision=revision)


def check_revision(name: str | None, revision: str | None, config_yaml: str | None = None) -> None:
    """Refuse a `revision` that is no name (`VallETypeError` for another type; `VallEValueError` for an empty one or
    one with spaces around it), or one given with a model `load_model_and_processor` does not fetch from the Hub by
    that name (the release, tiny-random, a path, a --yaml's checkpoint): it would be ignored."""
    if revision is None:
        return
    if not isinstance(revision, str):
        raise VallETypeError(f"revision must be a string (a branch, tag or commit), got {type(revision).__name__}")
    if not revision or revision != revision.strip():
        raise VallEValueError(f"--revision {revision!r} (revision= in Python) is no branch, tag or commit name: give "
                              "one without spaces around it, or drop --revision")
    if name in (None, TINY_RANDOM) or config_yaml is not None or Path(name).exists():
        what = "the released model" if name is None and config_yaml is None else name or config_yaml
        raise VallEValueError(f"--revision {revision} (revision= in Python) picks a version of a Hub id, and {what} "
                              "is not one: drop --revision")


def load_processor(name: str, revision: str | None = None):
    """The `VallEProcessor` saved with the converted model `name` (a folder, or a Hub id at `revision`). Raises
    `ModelNotFoundError` when a Hub id's tokenizer cannot be had (none there, a failing Hub) and `CheckpointError` when
    it cannot be read."""
    from .processing import VallEProcessor

    cache_only = not Path(name).exists() and check_hub_tokenizer(name, revision)
    try:
        return VallEProcessor.from_pretrained(name, revision=revision, local_files_only=cache_only)
    except (OSError, ValueError) as error:  # transformers' loaders raise these for a missing or unreadable file
        raise CheckpointError(f"could not load the processor of {name} ({one_line(error, 200)})") from None


# What a Hub model without its tokenizer is told to do, where the caller takes a --tokenizer.
_GIVE_THE_TOKENIZER = "give it with --tokenizer (tokenizer= in Python)"


def check_hub_model(name: str, choices: str = OFFLINE_CHOICES, revision: str | None = None,
                    instead: str = _GIVE_THE_TOKENIZER) -> bool:
    """Refuse a Hub id that is no converted model (`check_converted_model`, first, so that it is named so) or lacks
    its tokenizer (`check_hub_tokenizer`, offering `instead`), before its weights (gigabytes) are fetched. Returns
    whether the Hub is out of reach but the files are cached."""
    cached = check_converted_model(name, choices, revision)
    return check_hub_tokenizer(name, revision, instead) or cached


def check_hub_tokenizer(name: str, revision: str | None = None, instead: str = _GIVE_THE_TOKENIZER) -> bool:
    """Refuse (`ModelNotFoundError`, offering `instead` or an upload of the converted folder) a Hub id whose
    tokenizer.json cannot be had, which transformers reported as no tokenizer backend found, or retried for half a
    minute. Returns whether the Hub is out of reach but the file is cached (`check_reachable`)."""
    return check_reachable(name, TOKENIZER_FILE, f"the phoneme tokenizer of {name}", "a converted model holds its "
                           f"phoneme tokenizer: {instead}, or upload the converted folder again", revision=revision)


def check_own_tokenizer(model_dir: Path, tokenizer, tokenizer_file: str) -> None:
    """Refuse a --tokenizer that gives other ids than the tokenizer a converted model folder holds: the model would
    read every phoneme as another. One with the same vocabulary, or a folder without its own, is taken."""
    own = saved_tokenizer(model_dir)
    if own is not None and tokenizer_fingerprint(own) != tokenizer_fingerprint(tokenizer):
        raise VallEValueError(f"--tokenizer {tokenizer_file} is not the tokenizer {model_dir} was converted with "
                              f"({model_dir / TOKENIZER_FILE}): its ids would stand for other phonemes; drop "
                              "--tokenizer (tokenizer= in Python)")


def int8_quantization_config():
    """transformers' `TorchAoConfig` for weight-only int8 (torchao's `Int8WeightOnlyConfig`) of the decoder's linears:
    the embeddings, classifier heads, codec and vocoder keep their weights. Raises `MissingDependencyError` without
    torchao."""
    try:
        with quiet_torchao_import():
            from torchao.quantization import Int8WeightOnlyConfig
    except ImportError:
        raise MissingDependencyError("int8 weights need torchao: pip install -e \".[int8]\" in valle-hf's folder "
                                     "(or pip install torchao)") from None
    from transformers import TorchAoConfig

    keep = ["model.embeddings", "classifiers", "codec_model", "vocoder"]
    return TorchAoConfig(Int8WeightOnlyConfig(), modules_to_not_convert=keep)


def _quantized(model, dtype: torch.dtype, quantize: str | None):
    """A model built in memory, in `dtype`; with `quantize="int8"`, saved to a temporary directory and loaded back
    with int8 decoder weights (`from_pretrained` is where transformers applies a quantization config)."""
    if quantize is None:
        return model if dtype == "auto" else model.to(dtype)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="valle_hf_int8_") as folder, no_progress_bars():
        model.save_pretrained(folder)
        return load_model(folder, dtype=dtype, quantize=quantize)


@contextlib.contextmanager
def no_progress_bars():
    """A context without transformers' progress bars ("Writing model shards", "Loading weights"), as they were
    before after it: a round trip through a temporary folder is not a save or a load the user asked for."""
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def model_dtype(dtype: torch.dtype | str | None) -> torch.dtype | str:
    """The `dtype` a model loads in: a floating dtype (float32, bfloat16, float16, float64), given as such or by name;
    None for float32; or "auto" (transformers' meaning: the checkpoint's; a model built in memory keeps its own,
    float32). Raises `VallEValueError` for anything else."""
    if dtype is None:
        return torch.float32
    if dtype == "auto" or dtype in _DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in _DTYPES:
        return _DTYPES[dtype]
    raise VallEValueError(f"dtype must be one of {', '.join(_DTYPES)} (as torch dtypes or their names) or 'auto', got "
                          f"{dtype!r}")


# What a command that loads converted models only (fine-tuning, preparing data) offers instead.
CONVERTED_CHOICES = ("give a converted model's directory (python -m valle_hf.convert makes one from an original "
                     "checkpoint) or a Hub id")


def check_converted_model(name: str, choices: str = OFFLINE_CHOICES, revision: str | None = None) -> bool:
    """Refuse, before any loader retries a download, a `name` that is no converted model: a path that does not exist
    and no Hub id (`ModelNotFoundError`, naming `choices`), a file or a folder without config.json (`CheckpointError`),
    a Hub id whose config.json, weights or generation_config.json (where it has one) cannot be had
    (`ModelNotFoundError`). Returns whether the Hub is out of
    reach but the files are cached: a load should then read the cache only (`local_files_only=True`)."""
    path = Path(name)
    if not path.exists() and (name.startswith((".", "/")) or name.count("/") != 1):
        raise ModelNotFoundError(f"model not found: {name}; {choices}")
    if path.is_file() and path.suffix.lower() in ORIGINAL_SUFFIXES:
        raise CheckpointError(f"{name} is an original checkpoint, and a converted model is needed here: convert it "
                              f"first (python -m valle_hf.convert --checkpoint {name} --output-dir DIR)")
    if path.is_file():
        raise CheckpointError(f"{name} is a file, not a converted model's directory; {choices}")
    if path.is_dir() and not (path / "config.json").is_file():
        raise CheckpointError(f"{name} is a directory but not a converted model (no config.json): convert an "
                              "original checkpoint into it with python -m valle_hf.convert")
    if path.exists():
        return False
    cache_only = check_reachable(name, "config.json", f"the model {name}", f"offline: {choices}", revision=revision)
    if not cache_only:  # its weights too: a Hub failing on them alone was retried for half a minute, then read as a
        # repository without weights (one with other names, or shards, is for transformers)
        cache_only = check_reachable(name, SAFE_WEIGHTS_NAME, f"the model {name}", f"offline: {choices}",
                                     revision=revision, missing_ok=True)
    # its tuned sampler settings: a download that failed left the library's defaults, unsaid
    return check_reachable(name, GENERATION_CONFIG_NAME, f"the generation settings of {name}", f"offline: {choices}",
                           revision=revision, missing_ok=True) or cache_only


_ALREADY_QUANTIZED = "the model you're loading already has a `quantization_config`"  # transformers' warning


def _saved_as_asked(model) -> bool:
    """Whether `model` was saved with the int8 weights `int8_quantization_config` asks for (weight-only)."""
    saved = getattr(model.config, "quantization_config", None)
    return type(getattr(saved, "quant_type", None)).__name__ == "Int8WeightOnlyConfig"


def load_model(name: str, *, dtype: torch.dtype = torch.float32, quantize: str | None = None,
               choices: str = OFFLINE_CHOICES, revision: str | None = None):
    """A converted model (`from_pretrained` directory, or Hub id at `revision`; a str or os.PathLike) in eval mode, or
    a one-line error at once.

    A name that is neither an existing path nor a Hub id, and a Hub id that cannot be reached, fail before any
    download is retried (`ModelNotFoundError`, naming `choices`: the CLI's by default, `CONVERTED_CHOICES` for the
    commands that take no original checkpoint); a file, a directory that is not a converted model, or one whose files
    are damaged, raises `CheckpointError` (`check_converted_model`; `DamagedWeightsError` for weights cut short).
    """
    from .modeling import VallEForConditionalGeneration

    dtype = model_dtype(dtype)
    if quantize == "int8" and dtype == torch.float64:  # transformers: "look at the CONVERSION entries of the report"
        raise VallEValueError("int8 weights run with 16- or 32-bit activations, not float64: give dtype float32, "
                              "bfloat16 or float16")
    name = model_name(name, "the model")
    cache_only = check_converted_model(name, choices, revision)
    try:
        options = {"quantization_config": int8_quantization_config()} if quantize == "int8" else {}
        if cache_only:  # the Hub is out of reach: transformers would retry each file the cache lacks
            options["local_files_only"] = True
        with warnings.catch_warnings(record=True) as caught:
            model = VallEForConditionalGeneration.from_pretrained(name, dtype=dtype, revision=revision, **options)
        for warning in caught:  # a model saved with these int8 weights keeps its config: what was asked, warned about
            if not (_ALREADY_QUANTIZED in str(warning.message) and _saved_as_asked(model)):
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    except (CheckpointError, DamagedWeightsError):  # from_pretrained's own refusals name the file and the fix
        raise
    except OSError as error:
        raise ModelNotFoundError(f"could not load {name} ({one_line(error, 200)}); {choices}") from None
    except ValueError as error:  # a config.json that is not VALL-E's
        raise CheckpointError(f"{name} cannot be loaded ({one_line(error, 200)}): convert it again, or download it "
                              "again") from None
    return model.eval()
