"""Where a model comes from: a converted directory, a Hub id, an original checkpoint, the released model, tiny-random.

`load_model_and_processor(name)` is what the CLI's `--model` means; the Python API can use it the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

RELEASED_REPO = "ecker/vall-e"
RELEASED_CHECKPOINT = "models/ckpt/ar+nar-llama-8/fp32.sft"
RELEASED_TOKENIZER_CANDIDATES = ("data/tokenizer.json", "tokenizer.json", "models/tokenizer.json")
TINY_RANDOM = "tiny-random"
ORIGINAL_SUFFIXES = (".sft", ".safetensors", ".pth", ".pt")

# The phoneme inventory of the embedded tiny-random model's character tokenizer (the real one is the original's BPE).
_TINY_SYMBOLS = (
    " !\"(),-.:;?abcdefghijklmnopqrstuvwxyzæçðøħŋœɐɑɒɓɔɕɖɗɘəɚɛɜɞɟɠɡɢɣɤɥɦɧɨɪɫɬɭɮɯɰɱɲɳɴɵɶɸɹɺɻɽɾʀʁʂʃʄʈʉʊʋʌʍʎʏʐʑʒʔʕʘʙʛʜʝʟʡʢ"
    "ʰʲʷˈˌːˑ̩̃θβχᵻ"
)


# <unk> <bos> </eos> <mask>, then one token per symbol: the tiny model's text vocabulary matches it exactly, so random
# weights can only produce ids the tiny processor decodes (speech-to-text with tiny-random prints IPA noise, no error).
_TINY_SPECIALS = ("<unk>", "<bos>", "</eos>", "<mask>")
_TINY_VOCAB = _TINY_SPECIALS + tuple(dict.fromkeys(_TINY_SYMBOLS))


class ModelNotFoundError(OSError):
    """No model could be loaded; the message says how to get one (including offline)."""


OFFLINE_CHOICES = (
    "use --model DIR (a converted directory), --model path/to/fp32.sft (an original checkpoint, converted on the fly)"
    ", or --model tiny-random (an installation check that makes noise)"
)


def default_cache_dir() -> Path:
    base = os.environ.get("VALLE_HF_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.join(Path.home(), ".cache", "huggingface")), "valle_hf"
    )
    return Path(base)


def tiny_random_processor():
    """A character-level phoneme tokenizer in the original's id conventions (<unk> 0, <bos> 1, </eos> 2)."""
    from tokenizers import Tokenizer, models, processors
    from transformers import PreTrainedTokenizerFast

    from .processing import VallEProcessor

    vocab = {token: index for index, token in enumerate(_TINY_VOCAB)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A </eos>", special_tokens=[("<bos>", 1), ("</eos>", 2)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<bos>", eos_token="</eos>", pad_token="<unk>"
    )
    return VallEProcessor(tokenizer)


def tiny_random_model(seed: int = 0):
    """A tiny random VALL-E with a tiny random codec: checks an installation end to end, produces noise."""
    from .codec import tiny_random_codec
    from .configuration import VallEConfig
    from .modeling import VallEForConditionalGeneration

    codec = tiny_random_codec(seed)
    torch.manual_seed(seed)
    model = VallEForConditionalGeneration(
        VallEConfig(hidden_size=64, num_attention_heads=4, num_hidden_layers=2, text_vocab_size=len(_TINY_VOCAB),
                    codec_config=codec.config.to_dict())
    )
    model.codec_model.load_state_dict(codec.state_dict())
    model.generation_config.max_new_tokens = 2 * model.config.frame_rate  # random weights rarely stop by themselves
    return model.eval()


def _released_directory(cache_dir: Path, codec: str):
    """Download the released ar+nar-llama-8 checkpoint once, convert it, and keep the converted directory."""
    from huggingface_hub import hf_hub_download

    from .conversion import convert_checkpoint, save_converted

    target = cache_dir / "ar+nar-llama-8"
    if (target / "config.json").is_file():
        return target
    try:
        checkpoint = hf_hub_download(RELEASED_REPO, RELEASED_CHECKPOINT)
    except Exception as error:
        raise ModelNotFoundError(
            f"could not fetch the released model {RELEASED_REPO}/{RELEASED_CHECKPOINT} "
            f"({type(error).__name__}); offline: {OFFLINE_CHOICES}"
        ) from None
    tokenizer = _released_tokenizer()
    save_converted(convert_checkpoint(checkpoint, codec=codec), target, tokenizer)
    return target


def _released_tokenizer() -> str:
    from huggingface_hub import hf_hub_download

    for filename in RELEASED_TOKENIZER_CANDIDATES:
        try:
            return hf_hub_download(RELEASED_REPO, filename)
        except Exception:
            continue
    raise ModelNotFoundError(
        f"the released model's phoneme tokenizer was not found in {RELEASED_REPO}; convert it yourself with "
        "python -m valle_hf.convert --checkpoint fp32.sft --tokenizer <the original's data/tokenizer.json> "
        "--output-dir DIR, then use --model DIR"
    )


def released_model_directory(cache_dir: str | Path | None = None, codec: str = "facebook/encodec_24khz") -> Path:
    """The converted directory of the released ar+nar-llama-8 (downloaded from ecker/vall-e and converted on first use).

    For APIs that take a model path, like `pipeline("text-to-speech", model=str(released_model_directory()))`.
    """
    return _released_directory(Path(cache_dir) if cache_dir else default_cache_dir(), codec)


def load_model_and_processor(
    name: str | None = None,
    *,
    tokenizer: str | None = None,
    config_yaml: str | None = None,
    codec: str = "facebook/encodec_24khz",
    dtype: torch.dtype = torch.float32,
    cache_dir: str | Path | None = None,
):
    """Resolve `name` to `(model, processor)`.

    `None`: the released ar+nar-llama-8 (downloaded and converted once, cached under `cache_dir`);
    "tiny-random": the embedded installation check; a directory: `from_pretrained`; a `.sft`/`.pth` file: an
    original checkpoint converted in memory (needs `tokenizer`, the original's tokenizer.json); anything else: a
    Hub id for `from_pretrained`.
    """
    from .conversion import convert_checkpoint
    from .modeling import VallEForConditionalGeneration
    from .processing import VallEProcessor

    if name == TINY_RANDOM:
        return tiny_random_model().to(dtype), tiny_random_processor()
    if name is None:
        name = str(released_model_directory(cache_dir, codec))
    path = Path(name)
    if path.suffix in ORIGINAL_SUFFIXES:
        if tokenizer is None:
            raise ValueError(f"{name} is an original checkpoint: pass its tokenizer.json with --tokenizer")
        model = convert_checkpoint(path, config_yaml, codec, dtype)
        return model, VallEProcessor.from_tokenizer_file(tokenizer)
    if not path.exists() and (name.startswith((".", "/")) or name.count("/") != 1):
        raise ModelNotFoundError(f"model not found: {name}; {OFFLINE_CHOICES}")
    try:
        model = VallEForConditionalGeneration.from_pretrained(name, dtype=dtype)
        processor = VallEProcessor.from_tokenizer_file(tokenizer) if tokenizer else VallEProcessor.from_pretrained(name)
    except OSError as error:
        raise ModelNotFoundError(f"could not load {name} ({str(error).splitlines()[0]}); {OFFLINE_CHOICES}") from None
    return model.eval(), processor
