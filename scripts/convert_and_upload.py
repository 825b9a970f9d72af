"""Convert a VALL-E checkpoint and upload it to the Hub with its model card, in one commit.

    # an original checkpoint (fp32.sft / .pth) and the original's phoneme tokenizer
    python scripts/convert_and_upload.py --checkpoint fp32.sft --tokenizer tokenizer.json --repo-id you/valle-llama-8
    # a directory written by `python -m valle_hf.convert` (add --tokenizer if it was converted without one)
    python scripts/convert_and_upload.py --model-dir converted/ --repo-id you/valle-llama-8 --private
    # the released ar+nar-llama-8 of ecker/vall-e (downloaded and converted once, as the CLI does)
    python scripts/convert_and_upload.py --released --repo-id you/valle-llama-8

The commit holds everything `VallEForConditionalGeneration.from_pretrained(repo)`,
`VallEProcessor.from_pretrained(repo)` and `pipeline("text-to-speech", model=repo)` read (config.json,
model.safetensors, generation_config.json, tokenizer.json, tokenizer_config.json, processor_config.json), the model's
code (modeling.py, processing.py and the modules they import, named by the `auto_map` of config.json and
processor_config.json), and README.md: the card template (`--card`, default model_cards/valle-ar-nar-llama-8.md) with
its "{{ name }}" placeholders filled in. A directory converted before valle-hf saved the code is re-saved with it (in a
temporary folder). The files are checked before anything is uploaded. Log in first (`hf auth login`) or pass `--token`
/ set HF_TOKEN. The upload loads with `import valle_hf`, or without the package with `trust_remote_code=True` (its
runtime dependencies installed): the card says so.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

from valle_hf.configuration import DEFAULT_CODEC
from valle_hf.errors import ArgumentParser, VallEValueError, entry_point, named, one_line
from valle_hf.hub import hub_errors
from valle_hf.vocos import DEFAULT_VOCODER

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CARD = REPO_ROOT / "model_cards" / "valle-ar-nar-llama-8.md"
MODEL_FILES = ("config.json", "generation_config.json")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
PROCESSOR_FILES = ("tokenizer.json", "tokenizer_config.json", "processor_config.json")
DEFAULT_INSTALL = "pip install valle-hf"
# What --released can be replaced with when its download fails
LOCAL_SOURCES = "give the checkpoint with --checkpoint path/to/fp32.sft, or a converted directory with --model-dir DIR"

_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_TEMPLATE_NOTE = re.compile(r"<!--\s*TEMPLATE:.*?-->\n*", re.S)


class UploadError(VallEValueError):
    """Something to fix before uploading, or an upload the Hub refused; the message says what."""


def render_card(template: str, values: dict[str, str]) -> str:
    """Fill every `{{ name }}` placeholder of a card template and drop its `<!-- TEMPLATE: ... -->` note.

    A placeholder without a value is an error (naming it), so no card goes up half-filled.
    """
    missing = sorted({name for name in _PLACEHOLDER.findall(template) if name not in values})
    if missing:
        raise UploadError(f"the card template has placeholders with no value: {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), _TEMPLATE_NOTE.sub("", template, count=1))


def read_json(path: Path) -> dict:
    """A JSON object from `path`; `UploadError` for a file that cannot be read or is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UploadError(f"not uploading: {path} cannot be read as JSON ({one_line(error)}): convert again") from None
    if not isinstance(data, dict):
        raise UploadError(f"not uploading: {path} is not a JSON object: convert again")
    return data


# The weights of a converted directory that are not the VALL-E decoder's: the codec's and the vocoder's.
_NOT_THE_DECODER = ("codec_model.", "vocoder.")
# What the card's architecture line reads from config.json.
_ARCHITECTURE_KEYS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "num_rvq_levels")


def check_shards(model_dir: Path) -> None:
    """Refuse (`UploadError`) a sharded model whose index names a shard that is not in the folder (or names none):
    the upload would publish a model that cannot load."""
    index = model_dir / "model.safetensors.index.json"
    if not index.is_file():
        return
    weight_map = read_json(index).get("weight_map")
    named = sorted(set(weight_map.values())) if isinstance(weight_map, dict) else []
    missing = [name for name in named if not (model_dir / str(name)).is_file()]
    if missing or not named:
        what = f"lacks {missing[0]}, a shard" if missing else "has no shard list in the weight_map"
        raise UploadError(f"not uploading: {model_dir} {what} {index.name} names: convert again")


def describe_weights(model_dir: Path) -> tuple[str, str]:
    """(architecture line, dtype) of a converted directory, from config.json and the safetensors headers only: the
    decoder's and its heads' parameters, without the codec and the vocoder."""
    from safetensors import SafetensorError, safe_open

    config = read_json(model_dir / "config.json")
    absent = [key for key in _ARCHITECTURE_KEYS if not isinstance(config.get(key), int)]
    if absent:
        raise UploadError(f"not uploading: {model_dir / 'config.json'} has no whole number for {', '.join(absent)}: "
                          "convert again")
    check_shards(model_dir)
    shards = sorted(model_dir.glob("model*.safetensors"))
    parameters, dtypes = 0, set()
    for shard in shards:
        try:
            handle = safe_open(str(shard), framework="pt")
        except (OSError, SafetensorError) as error:
            raise UploadError(f"not uploading: {shard} is damaged ({one_line(error)}): convert again") from None
        with handle:
            for key in handle.keys():
                if key.startswith(_NOT_THE_DECODER):
                    continue
                tensor = handle.get_slice(key)
                count = 1
                for size in tensor.get_shape():
                    count *= size
                parameters += count
                dtypes.add(tensor.get_dtype())
    names = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
    dtype = ", ".join(sorted(names.get(dtype, dtype) for dtype in dtypes)) or str(config.get("dtype", "unknown"))
    architecture = (
        f"{config['num_hidden_layers']} layers, hidden size {config['hidden_size']}, "
        f"{config['num_attention_heads']} attention heads, {config['num_rvq_levels']} RVQ levels, "
        f"{parameters / 1e6:.1f} M parameters (without the codec and the vocoder)"
    )
    return architecture, dtype


def check_files(files: dict[str, Path]) -> None:
    """Fail (before any upload) unless the files make a model and processor `from_pretrained` can load, with and
    without valle-hf installed (the code that `auto_map` names)."""
    missing = [name for name in MODEL_FILES + PROCESSOR_FILES if name not in files]
    if not any(name in files for name in WEIGHT_FILES):
        missing.append("model.safetensors")
    if missing:
        hint = " (pass --tokenizer with the original's tokenizer.json)" if set(missing) & set(PROCESSOR_FILES) else ""
        raise UploadError(f"not uploading: missing {', '.join(missing)}{hint}")
    config = read_json(files["config.json"])
    if config.get("model_type") != "valle":
        raise UploadError(f"not uploading: config.json has model_type {config.get('model_type')!r}, expected 'valle'")
    processor = read_json(files["processor_config.json"])
    if processor.get("processor_class") != "VallEProcessor":
        raise UploadError("not uploading: processor_config.json does not name VallEProcessor")
    for name, saved in (("config.json", config), ("processor_config.json", processor)):
        if "auto_map" not in saved:
            raise UploadError(f"not uploading: {name} has no auto_map, so the model would not load without valle-hf")
        pipelines = saved.get("custom_pipelines", {}).values()
        references = [*saved["auto_map"].values(), *(task["impl"] for task in pipelines)]
        code = sorted({f"{reference.split('.')[0]}.py" for reference in references} - set(files))
        if code:
            raise UploadError(f"not uploading: {name} names code that is not there: {', '.join(code)}")


def with_code(model_dir: Path, workdir: Path) -> Path:
    """`model_dir`, or, for a directory converted before valle-hf saved the model's code beside it (no `auto_map`) or
    the pipeline's (no `custom_pipelines`), a copy re-saved with today's code. A directory without a processor is
    left to `check_files` to refuse."""
    if {"auto_map", "custom_pipelines"} <= set(read_json(model_dir / "config.json")):
        return model_dir
    if not (model_dir / "processor_config.json").is_file():
        return model_dir
    from valle_hf.conversion import save_converted
    from valle_hf.loading import load_model_and_processor

    # "auto": in the dtype it was saved in (the default, float32, turned a 16-bit directory into a float32 upload)
    model, processor = load_model_and_processor(str(model_dir), dtype="auto")  # one-line errors for a damaged one
    return save_converted(model, processor, workdir / "with-code")


def directory_files(directory: Path) -> dict[str, Path]:
    """path in repo -> local file, for every file under `directory` (hidden files and README.md left out)."""
    return {
        path.relative_to(directory).as_posix(): path
        for path in sorted(directory.rglob("*"))
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(directory).parts)
        and path.relative_to(directory).as_posix() != "README.md"
    }


def codec_of(args, model_dir: Path | None = None) -> str:
    """The EnCodec weights to convert with (`--codec`, else the default), or, given the `model_dir` to upload, the
    ones it holds: as its config.json records them (conversions record --codec), else as --codec names them. Raises
    `UploadError` for a directory that records none when --codec is not given: the card would name a codec it may
    not hold."""
    recorded = read_json(model_dir / "config.json").get("codec_config", {}).get("_name_or_path") if model_dir else None
    if recorded or not args.model_dir:
        return recorded or args.codec or DEFAULT_CODEC
    if not args.codec:
        raise UploadError(f"{model_dir}/config.json does not say which EnCodec weights it holds (converted by an "
                          "older valle-hf): name them with --codec, e.g. --codec facebook/encodec_24khz")
    return args.codec


def gather(args, workdir: Path) -> tuple[Path, dict[str, Path], str]:
    """(model directory, files to upload, source description), converting first when given a checkpoint."""
    import torch

    from valle_hf.conversion import convert_checkpoint, save_converted
    from valle_hf.loading import RELEASED_CHECKPOINT, RELEASED_REPO, released_model_directory

    vocoder = None if args.vocoder == "none" else args.vocoder or DEFAULT_VOCODER
    if args.checkpoint:
        checkpoint = Path(args.checkpoint)
        model, processor = convert_checkpoint(checkpoint, args.config, tokenizer=args.tokenizer, codec=codec_of(args),
                                              vocoder=vocoder, dtype=getattr(torch, args.dtype or "float32"))
        model_dir = save_converted(model, processor, workdir / "model")
        source = f"{checkpoint.parent.name}/{checkpoint.name}" if checkpoint.parent.name else checkpoint.name
        return model_dir, directory_files(model_dir), args.source or source
    if args.released:
        model_dir = released_model_directory(codec=codec_of(args), vocoder=vocoder,  # "none" too: decode with EnCodec
                                             choices=LOCAL_SOURCES)
        source = f"{RELEASED_REPO}: {RELEASED_CHECKPOINT}"
    else:
        model_dir = Path(args.model_dir)
        if not (model_dir / "config.json").is_file():
            raise UploadError(f"{model_dir} is not a converted model directory (no config.json)")
        source = "a directory converted with valle-hf"
    model_dir = with_code(model_dir, workdir)
    files = directory_files(model_dir)
    if args.tokenizer:  # (re)build the processor from the original tokenizer.json
        from valle_hf.loading import check_own_tokenizer
        from valle_hf.processing import VallEProcessor

        processor = VallEProcessor.from_tokenizer_file(args.tokenizer)
        # The upload would otherwise pair the weights with ids that stand for other phonemes, unseen until it speaks.
        check_own_tokenizer(model_dir, processor.tokenizer, args.tokenizer)
        processor_dir = workdir / "processor"
        processor.save_pretrained(processor_dir)
        files.update(directory_files(processor_dir))
    return model_dir, files, args.source or source


def upload(repo_id: str, files: dict[str, Path], card_for, *, private: bool, token: str | None, message: str):
    """Create the repository (if needed) and commit `files` plus README.md (`card_for(final_repo_id)`) at once."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token)
    try:
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id  # "name" becomes "user/name"
        card = card_for(repo_id).encode("utf-8")
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in files.items()]
        operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card))
        return repo_id, api.create_commit(repo_id, operations=operations, commit_message=message)
    except hub_errors() as error:  # network, authentication, permissions: one line, not a traceback
        raise UploadError(f"upload to {repo_id} failed: {type(error).__name__}: {one_line(error)}") from None


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python scripts/convert_and_upload.py",
        description="Convert a VALL-E checkpoint (or take a converted directory) and upload model, processor and "
                    "model card to a Hub repository in one commit.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=named, help="original fp32.sft / .safetensors / .pth to convert")
    source.add_argument("--model-dir", type=named,
                        help="directory written by python -m valle_hf.convert (or save_pretrained)")
    source.add_argument("--released", action="store_true", help="the released ar+nar-llama-8 of ecker/vall-e")
    parser.add_argument("--repo-id", type=named, required=True,
                        help="target repository, 'user/name' (or 'name' in your namespace)")
    parser.add_argument("--tokenizer", type=named,
                        help="the original's tokenizer.json (default with --checkpoint: the released "
                        "model's, shipped with valle-hf)")
    parser.add_argument("--config", type=named,
                        help="with --checkpoint: the original's config.yaml (default: the checkpoint's embedded "
                        "config)")
    parser.add_argument("--codec", type=named, default=None,
                        help=f"EnCodec weights attached when converting: Hub id, local directory, or 'tiny-random' "
                        f"(default: {DEFAULT_CODEC}); with --model-dir, the card's name for the directory's codec "
                        "where its config.json does not record it")
    parser.add_argument("--vocoder", type=named, default=None,
                        help="with --checkpoint or --released: Vocos decoder saved with the model (Hub id, directory, "
                        f"'tiny-random' or 'none'; default: {DEFAULT_VOCODER})")
    parser.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"],
                        help="with --checkpoint: the dtype the weights are saved in [float32]")
    parser.add_argument("--card", type=named, default=str(DEFAULT_CARD),
                        help="model card template (default: %(default)s)")
    parser.add_argument("--base-model", type=named, default="ecker/vall-e",
                        help="Hub repository of the original weights")
    parser.add_argument("--source", help="how the card names the converted checkpoint (default: its file name)")
    parser.add_argument("--install-command", default=DEFAULT_INSTALL, help="install line shown in the card")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--token", type=named, default=None, help="Hub token (default: the stored login or HF_TOKEN)")
    parser.add_argument("--commit-message", default="Upload VALL-E (converted with valle-hf)")
    return parser


def check_source_flags(args) -> None:
    """Refuse flags the chosen source would ignore without a word: --config and --dtype apply to a --checkpoint's
    conversion (--released is converted in float32, so its --dtype float32 is taken), --vocoder to a conversion
    (--checkpoint, or --released on first use); a --model-dir holds its own."""
    conversion = "to a conversion (--checkpoint, or --released)"
    ignored = [(flag, where) for flag, value, applies, where in (
        ("--config", args.config, args.checkpoint, "to a --checkpoint's conversion"),
        ("--dtype", args.dtype, args.checkpoint or (args.released and args.dtype == "float32"),
         "to a --checkpoint's conversion" if args.model_dir else "to a --checkpoint's conversion (--released is "
         "converted in float32)"),
        ("--vocoder", args.vocoder, not args.model_dir, conversion)) if value is not None and not applies]
    if ignored:
        source = ("--model-dir (its folder holds its own weights and decoder)" if args.model_dir else
                  "--released (converted as released, once)")
        flags = ", ".join(flag for flag, _ in ignored)
        raise UploadError(f"{'; '.join(f'{flag} applies {where}' for flag, where in ignored)}; not to {source}: drop "
                          f"{flags}")


def read_card(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UploadError(f"cannot read the card template {path} ({one_line(error)}): give a Markdown file with "
                          "--card") from None


def check_repo_id(repo_id: str) -> None:
    """Refuse, before any conversion, a --repo-id the Hub would refuse after it (huggingface_hub's own rule)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise UploadError(f"--repo-id {repo_id!r}: {one_line(error, 200)}") from None


@entry_point()
def main(argv: list[str] | None = None) -> int:
    import valle_hf

    args = build_parser().parse_args(argv)
    check_source_flags(args)
    check_repo_id(args.repo_id)
    template = read_card(args.card)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, files, source = gather(args, Path(tmp))
        check_files(files)
        architecture, dtype = describe_weights(model_dir)
        values = dict(base_model=args.base_model, source=source, codec=codec_of(args, model_dir), dtype=dtype,
                      architecture=architecture, valle_hf_version=valle_hf.__version__,
                      install_command=args.install_command)
        render_card(template, {**values, "repo_id": args.repo_id})  # fail on a bad template before uploading
        card_for = lambda repo: render_card(template, {**values, "repo_id": repo})  # noqa: E731
        repo_id, commit = upload(args.repo_id, files, card_for, private=args.private, token=args.token,
                                 message=args.commit_message)
    print(f"uploaded {len(files) + 1} files to {repo_id}: {getattr(commit, 'commit_url', commit)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
