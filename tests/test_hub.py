"""Hub uploads, offline: `push_to_hub` of model and processor, and scripts/convert_and_upload.py.

The Hub is faked at the `huggingface_hub` calls transformers' `PushToHubMixin` makes (`HfApi.create_repo`,
`HfApi.create_commit`, and `ModelCard.load` in `create_and_tag_model_card`), which the upload script uses too: a
commit copies its files into `<hub root>/<repo_id>/`. Loading then reads that folder; the tests run from the hub
root, so the repo id itself ("someone/valle-tiny") is the path `from_pretrained` and `pipeline` are given.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard
from huggingface_hub.errors import EntryNotFoundError
from huggingface_hub.hf_api import CommitInfo, RepoUrl
from transformers import AutoProcessor, pipeline
from transformers.dynamic_module_utils import get_relative_import_files

import valle_hf
from valle_hf import configuration, feature_extraction, modeling, processing
from valle_hf.configuration import DEFAULT_CODEC
from valle_hf.loading import load_model_and_processor, tiny_random_model, tiny_random_processor

REPO = Path(__file__).resolve().parents[1]
# The model's code, as `save_pretrained` copies it for `trust_remote_code`: the modules of the registered classes and
# every module they import.
CODE = {Path(path).name for module in (configuration, modeling, processing, feature_extraction)
        for path in [module.__file__, *get_relative_import_files(module.__file__)]}
NEEDED = {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
          "processor_config.json", "README.md"} | CODE


class FakeHub:
    """Records repositories and commits; a commit writes its files under `root / repo_id`."""

    def __init__(self, root: Path):
        self.root = root
        self.repos: dict[str, dict] = {}
        self.commits: list[dict] = []

    def create_repo(self, api, repo_id, *, token=None, private=None, repo_type=None, exist_ok=False, **kwargs):
        if repo_id in self.repos and not exist_ok:
            raise FileExistsError(repo_id)
        self.repos.setdefault(repo_id, {"private": private})
        (self.root / repo_id).mkdir(parents=True, exist_ok=True)
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def create_commit(self, api, repo_id, operations, *, commit_message, **kwargs):
        if repo_id not in self.repos:
            raise FileNotFoundError(f"repository {repo_id} was never created")
        paths = []
        for operation in operations:
            assert isinstance(operation, CommitOperationAdd), operation
            target = self.root / repo_id / operation.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            source = operation.path_or_fileobj
            if isinstance(source, (str, os.PathLike)):
                shutil.copyfile(source, target)
            elif isinstance(source, bytes):
                target.write_bytes(source)
            else:
                target.write_bytes(source.read())
            paths.append(operation.path_in_repo)
        self.commits.append({"repo_id": repo_id, "message": commit_message, "paths": sorted(paths)})
        return CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/{len(self.commits):040x}",
                          commit_message=commit_message, commit_description="", oid=f"{len(self.commits):040x}")

    def load_card(self, repo_id_or_path, **kwargs) -> ModelCard:
        card = self.root / repo_id_or_path / "README.md"
        if not card.is_file():
            raise EntryNotFoundError(f"{repo_id_or_path} has no README.md")
        return ModelCard(card.read_text(encoding="utf-8"))

    def files(self, repo_id: str) -> set[str]:
        return {path.name for path in (self.root / repo_id).iterdir()}


@pytest.fixture
def fake_hub(tmp_path, monkeypatch) -> FakeHub:
    hub = FakeHub(tmp_path / "hub")
    hub.root.mkdir()
    monkeypatch.setattr(HfApi, "create_repo", lambda api, *args, **kwargs: hub.create_repo(api, *args, **kwargs))
    monkeypatch.setattr(HfApi, "create_commit", lambda api, *args, **kwargs: hub.create_commit(api, *args, **kwargs))
    monkeypatch.setattr(ModelCard, "load", classmethod(lambda cls, *args, **kwargs: hub.load_card(*args, **kwargs)))
    monkeypatch.chdir(hub.root)  # so that "user/name" resolves to the uploaded folder
    return hub


def load_script():
    spec = importlib.util.spec_from_file_location("convert_and_upload", REPO / "scripts" / "convert_and_upload.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_push_to_hub_uploads_what_from_pretrained_and_pipeline_need(fake_hub, prompt_wav):
    repo_id = "someone/valle-tiny"
    model, processor = tiny_random_model(), tiny_random_processor()
    model.push_to_hub(repo_id, private=True)
    processor.push_to_hub(repo_id)

    assert fake_hub.files(repo_id) == NEEDED
    assert fake_hub.repos[repo_id] == {"private": True}
    assert [commit["message"] for commit in fake_hub.commits] == ["Upload VallEForConditionalGeneration",
                                                                  "Upload processor"]

    loaded = valle_hf.VallEForConditionalGeneration.from_pretrained(repo_id)
    expected = model.state_dict()
    assert set(loaded.state_dict()) == set(expected)
    assert all(torch.equal(value, expected[key]) for key, value in loaded.state_dict().items())
    assert loaded.generation_config.max_new_tokens == model.generation_config.max_new_tokens

    reloaded = valle_hf.VallEProcessor.from_pretrained(repo_id)
    assert isinstance(AutoProcessor.from_pretrained(repo_id), valle_hf.VallEProcessor)
    text = "ðə bˈɜːtʃ kənˈuː"  # IPA: no espeak needed to compare the tokenizers
    assert reloaded(text)["input_ids"].tolist() == processor(text)["input_ids"].tolist()

    tts = pipeline("text-to-speech", model=repo_id)
    result = tts("Hello.", forward_params={"prompt_audio": str(prompt_wav)},
                 generate_kwargs={"temperature": 0.0, "max_new_tokens": 3, "min_new_tokens": 3})
    assert result["sampling_rate"] == 24000 and result["audio"].shape == (3 * 320,)

    model2, processor2 = load_model_and_processor(repo_id)  # what the CLI's --model user/name does
    assert isinstance(processor2, valle_hf.VallEProcessor) and model2.config.model_type == "valle"


def test_processor_push_keeps_the_card_already_on_the_hub(fake_hub):
    repo_id = "someone/with-card"
    HfApi().create_repo(repo_id)
    HfApi().create_commit(repo_id, [CommitOperationAdd("README.md", b"---\nlicense: agpl-3.0\n---\n# My card\n")],
                          commit_message="card")
    tiny_random_processor().push_to_hub(repo_id)
    card = (fake_hub.root / repo_id / "README.md").read_text()
    assert "# My card" in card and "agpl-3.0" in card


def run_script(argv, capsys):
    status = load_script().main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def check_card(path: Path, repo_id: str) -> ModelCard:
    text = path.read_text(encoding="utf-8")
    assert "{{" not in text and "TEMPLATE" not in text
    assert f'from_pretrained("{repo_id}"' in text and f'model="{repo_id}"' in text
    card = ModelCard(text)
    assert card.data.pipeline_tag == "text-to-speech"
    assert card.data.library_name == "transformers"
    assert card.data.license == "agpl-3.0"
    assert card.data.base_model == "ecker/vall-e"
    return card


def test_script_converts_a_checkpoint_and_uploads_model_processor_and_card(
    fake_hub, fixtures, fixture_model, tokenizer_file, capsys
):
    repo_id = "someone/valle-fixture"
    status, out, err = run_script(["--checkpoint", fixtures.checkpoint, "--tokenizer", tokenizer_file,
                                   "--codec", "tiny-random", "--vocoder", "tiny-random", "--repo-id", repo_id,
                                   "--private"], capsys)
    assert status == 0, err
    assert repo_id in out
    assert fake_hub.files(repo_id) == NEEDED
    assert fake_hub.repos[repo_id] == {"private": True}
    assert len(fake_hub.commits) == 1  # one commit: the repository is never half uploaded

    card = check_card(fake_hub.root / repo_id / "README.md", repo_id)
    folder_and_name = f"`{fixtures.checkpoint.parent.name}/{fixtures.checkpoint.name}`"
    assert folder_and_name in card.text  # the checkpoint's folder and name, not the local path
    config = fixture_model.config
    assert f"{config.num_hidden_layers} layers, hidden size {config.hidden_size}" in card.text
    assert "float32" in card.text

    loaded = valle_hf.VallEForConditionalGeneration.from_pretrained(repo_id).state_dict()
    expected = fixture_model.state_dict()
    unused = {"model.backbone.embed_tokens.weight"}  # never read (not in the checkpoint): random per conversion
    assert set(loaded) == set(expected)
    assert all(torch.equal(loaded[key], expected[key]) for key in set(expected) - unused)
    processor = valle_hf.VallEProcessor.from_pretrained(repo_id)
    reference = valle_hf.VallEProcessor.from_tokenizer_file(tokenizer_file)
    assert processor("ðə bˈɜːtʃ")["input_ids"].tolist() == reference("ðə bˈɜːtʃ")["input_ids"].tolist()


def test_script_uploads_a_converted_directory(fake_hub, converted_dir, capsys):
    status, _, err = run_script(["--model-dir", converted_dir, "--repo-id", "someone/from-dir",
                                 "--install-command", "pip install valle-hf==0.1.0"], capsys)
    assert status == 0, err
    assert fake_hub.files("someone/from-dir") == NEEDED
    card = check_card(fake_hub.root / "someone/from-dir" / "README.md", "someone/from-dir")
    assert "pip install valle-hf==0.1.0" in card.text
    assert fake_hub.repos["someone/from-dir"] == {"private": False}


def test_the_card_names_the_codec_the_directory_holds(fake_hub, converted_dir, tmp_path, capsys):
    """The card named --codec's default (facebook/encodec_24khz) for any --model-dir: conversions record the codec
    now; a directory without the record needs --codec to name it."""
    recorded = json.loads((converted_dir / "config.json").read_text())["codec_config"]["_name_or_path"]
    assert recorded != DEFAULT_CODEC  # the fixture model's codec is another
    status, _, err = run_script(["--model-dir", converted_dir, "--repo-id", "someone/recorded"], capsys)
    assert status == 0, err
    card = (fake_hub.root / "someone/recorded" / "README.md").read_text(encoding="utf-8")
    assert f"({recorded})" in card and DEFAULT_CODEC not in card
    unrecorded = tmp_path / "unrecorded"
    shutil.copytree(converted_dir, unrecorded)
    config = json.loads((unrecorded / "config.json").read_text())
    del config["codec_config"]["_name_or_path"]
    (unrecorded / "config.json").write_text(json.dumps(config))
    status, _, err = run_script(["--model-dir", unrecorded, "--repo-id", "someone/unrecorded"], capsys)
    assert status == 1 and "name them with --codec" in err and err.count("\n") == 1, err
    assert "someone/unrecorded" not in fake_hub.repos
    status, _, err = run_script(["--model-dir", unrecorded, "--repo-id", "someone/unrecorded", "--codec", "my/encodec"],
                                capsys)
    assert status == 0, err
    assert "(my/encodec)" in (fake_hub.root / "someone/unrecorded" / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("before", ["code", "pipeline"])
def test_script_uploads_an_old_directory_with_todays_code(fake_hub, converted_dir, tmp_path, capsys, before):
    """A directory converted before converted directories carried the model's code, or the pipeline's, is uploaded
    re-saved with both, in the dtype it was converted in (float16 here; it was re-saved in float32)."""
    old = tmp_path / f"converted-before-the-{before}"
    model, processor = load_model_and_processor(str(converted_dir), dtype=torch.float16)
    model.save_pretrained(old)
    processor.save_pretrained(old)
    for code in old.glob("*.py" if before == "code" else "pipeline.py"):
        code.unlink()
    for name in ("config.json", "processor_config.json"):
        saved = json.loads((old / name).read_text())
        saved.pop("custom_pipelines", None)
        if before == "code":
            saved.pop("auto_map")
            saved.pop("feature_extractor", None)
        (old / name).write_text(json.dumps(saved))
    status, _, err = run_script(["--model-dir", old, "--repo-id", f"someone/old-{before}"], capsys)
    assert status == 0, err
    assert fake_hub.files(f"someone/old-{before}") == NEEDED
    config = json.loads((fake_hub.root / f"someone/old-{before}" / "config.json").read_text())
    assert {"auto_map", "custom_pipelines"} <= set(config)
    uploaded = valle_hf.VallEForConditionalGeneration.from_pretrained(f"someone/old-{before}", dtype="auto")
    assert uploaded.dtype == torch.float16


def test_script_uploads_the_released_model(fake_hub, converted_dir, monkeypatch, capsys):
    import valle_hf.loading

    calls = []  # downloading and converting the release needs the network: its converted result is faked
    fake = lambda **kwargs: calls.append(kwargs) or converted_dir  # noqa: E731
    monkeypatch.setattr(valle_hf.loading, "released_model_directory", fake)
    status, _, err = run_script(["--released", "--repo-id", "someone/released"], capsys)
    assert status == 0, err
    assert [{name: call[name] for name in ("codec", "vocoder")} for call in calls] == [
        {"codec": "facebook/encodec_24khz", "vocoder": "charactr/vocos-encodec-24khz"}]
    card = check_card(fake_hub.root / "someone/released" / "README.md", "someone/released")
    assert "`ecker/vall-e: models/ckpt/ar+nar-llama-8/fp32.sft`" in card.text
    status, _, err = run_script(["--released", "--repo-id", "someone/released", "--vocoder", "none"], capsys)
    assert status == 0 and calls[-1]["vocoder"] is None, err  # EnCodec decodes (it looked for a Hub repo "none")


def test_script_refuses_a_tokenizer_other_than_the_directorys_own(fake_hub, converted_dir, tmp_path, capsys):
    """--tokenizer replaced the directory's tokenizer unchecked: the upload paired the weights with ids that stand
    for other phonemes (the CLI refuses the same pair)."""
    other = tmp_path / "other"
    tiny_random_processor().save_pretrained(other)
    status, _, err = run_script(["--model-dir", converted_dir, "--tokenizer", other / "tokenizer.json",
                                 "--repo-id", "someone/mismatch"], capsys)
    assert status == 1 and err.startswith("error: --tokenizer") and err.count("\n") == 1, err
    assert fake_hub.commits == [] and fake_hub.repos == {}
    status, _, err = run_script(["--model-dir", converted_dir, "--tokenizer", converted_dir / "tokenizer.json",
                                 "--repo-id", "someone/same"], capsys)
    assert status == 0, err  # its own tokenizer (the same ids) is taken


def test_script_refuses_a_directory_without_processor(fake_hub, tmp_path, fixture_model, capsys):
    model_only = tmp_path / "model-only"
    fixture_model.save_pretrained(model_only)
    capsys.readouterr()  # the save's progress bar
    status, _, err = run_script(["--model-dir", model_only, "--repo-id", "someone/broken"], capsys)
    assert status == 1
    assert "tokenizer" in err and len(err.strip().splitlines()) == 1
    assert fake_hub.commits == [] and fake_hub.repos == {}


def test_card_template_placeholders_are_all_filled_or_refused():
    script = load_script()
    template = (REPO / "model_cards" / "valle-ar-nar-llama-8.md").read_text(encoding="utf-8")
    with pytest.raises(script.UploadError, match="repo_id"):
        script.render_card(template, {"base_model": "ecker/vall-e"})
    assert script.render_card("<!-- TEMPLATE: note -->\na {{ x }} b {{y}}", {"x": 1, "y": "2"}) == "a 1 b 2"


def test_upload_errors_are_one_line(monkeypatch, converted_dir, capsys):
    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(HfApi, "create_repo", offline)
    status, _, err = run_script(["--model-dir", converted_dir, "--repo-id", "someone/offline"], capsys)
    assert status == 1 and "no network" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("repo_id", ["bad id", "a/b/c"])
def test_a_repo_id_the_hub_would_refuse_is_refused_before_converting(monkeypatch, fixtures, capsys, repo_id):
    """It failed with a traceback after the whole conversion."""
    from valle_hf import conversion

    monkeypatch.setattr(conversion, "convert_checkpoint", None)  # converting must not start: a call would fail
    status, _, err = run_script(["--checkpoint", fixtures.checkpoint, "--repo-id", repo_id, "--codec", "tiny-random",
                                 "--vocoder", "tiny-random"], capsys)
    assert status == 1 and err.startswith(f"error: --repo-id {repo_id!r}: Repo id must") and err.count("\n") == 1, err


@pytest.mark.parametrize("revision", [None, "v1"])
def test_offline_a_file_cached_in_another_cache_dir_or_at_a_revision_is_found(tmp_path, monkeypatch, revision):
    """Offline, the pre-check looked only in the default cache at main, so a file hf_hub_download finds in the
    cache_dir (or at the revision) it was given was refused as not cached."""
    import huggingface_hub.constants

    from valle_hf.errors import ModelNotFoundError
    from valle_hf.hub import hub_file

    commit = "0" * 40
    repo = tmp_path / "cache" / "models--someone--vocos"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.yaml").write_text("sample_rate: 24000\n")
    (repo / "refs").mkdir()
    (repo / "refs" / (revision or "main")).write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    found = hub_file("someone/vocos", "config.yaml", "the Vocos decoder", "offline: give a folder",
                     cache_dir=tmp_path / "cache", revision=revision)
    assert found.read_text() == "sample_rate: 24000\n"
    with pytest.raises(ModelNotFoundError, match="not in the Hugging Face cache, and HF_HUB_OFFLINE is set"):
        hub_file("someone/vocos", "config.yaml", "the Vocos decoder", "offline: give a folder",
                 cache_dir=tmp_path / "elsewhere", revision=revision)


def test_a_hub_download_at_a_revision_in_a_subfolder_is_checked_there(tmp_path, monkeypatch, vocos_checkpoint_dir):
    """The fast pre-check asked for the file at the repository's root on main, whatever revision and subfolder the
    download was given: a decoder kept in a folder, or on a branch only, was refused as missing."""
    from conftest import served_hub

    from valle_hf.codec import load_codec, tiny_random_codec
    from valle_hf.errors import ModelNotFoundError
    from valle_hf.vocos import load_original_vocos

    tiny_random_codec().save_pretrained(tmp_path / "encodec")
    files = {f"vocos/{path.name}": path for path in vocos_checkpoint_dir.iterdir()}
    files |= {f"encodec/{path.name}": path for path in (tmp_path / "encodec").iterdir()}
    with served_hub(monkeypatch, {"someone/decoders": files}, {"someone/decoders": {"v1"}}):
        vocoder = load_original_vocos("someone/decoders", revision="v1", subfolder="vocos", cache_dir=tmp_path / "a")
        codec = load_codec("someone/decoders", revision="v1", subfolder="encodec", cache_dir=tmp_path / "b")
        assert vocoder.config.hop_length == codec.config.hop_length
        missing = r"decoders/vocos/config.yaml at revision v2\): the repository has no branch"
        with pytest.raises(ModelNotFoundError, match=missing):
            load_original_vocos("someone/decoders", revision="v2", subfolder="vocos", cache_dir=tmp_path / "c")


def test_a_gated_decoder_is_checked_with_the_token_the_download_is_given(tmp_path, monkeypatch, vocos_checkpoint_dir):
    """The pre-check asked without the `token` given for the download, so a gated repository was refused as if the
    token were wrong; without a token, the refusal names the gated repository in one line (the Hub's answer runs over
    several)."""
    from conftest import served_hub

    from valle_hf.errors import ModelNotFoundError
    from valle_hf.vocos import load_original_vocos

    files = {path.name: path for path in vocos_checkpoint_dir.iterdir()}
    with served_hub(monkeypatch, {"someone/gated": files}, token="secret"):
        assert load_original_vocos("someone/gated", token="secret", cache_dir=tmp_path / "a").config.hop_length
        # the fix, a token with access, was not said (the offline choices were)
        gated = (r"^could not download the Vocos decoder .*: the repository is gated, and this machine's Hugging Face "
                 r"token \(HF_TOKEN, or hf auth login\) has no access to it")
        with pytest.raises(ModelNotFoundError, match=gated) as error:
            load_original_vocos("someone/gated", cache_dir=tmp_path / "b")
    assert "\n" not in str(error.value)


def test_a_cached_model_and_codec_load_from_the_cache_at_once_while_the_hub_fails(tmp_path, monkeypatch,
                                                                                converted_dir):
    """transformers asked a failing Hub again for each optional file the cache lacks (adapter_config.json), retrying
    it for half a minute per load, before it loaded what was cached."""
    from conftest import served_hub
    from huggingface_hub import constants

    from valle_hf.codec import load_codec, tiny_random_codec
    from valle_hf.loading import load_model, load_processor
    from valle_hf.processing import VallEProcessor

    tiny_random_codec().save_pretrained(tmp_path / "encodec")
    repos = {"someone/encodec": {path.name: path for path in (tmp_path / "encodec").iterdir()},
             "someone/valle": {path.name: path for path in converted_dir.iterdir() if path.is_file()}}
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with served_hub(monkeypatch, repos) as hub:
        load_codec("someone/encodec")  # into the cache
        load_model("someone/valle")
        load_processor("someone/valle")
        hub.outage = True
        asked = len(hub.requests)
        assert load_codec("someone/encodec").config.hop_length and load_model("someone/valle").config.hop_length
        assert load_processor("someone/valle")("ðə")["input_ids"].numel()
        # each load's one check (the model's two: its config, its generation settings), then the cache: nothing
        # asked again
        assert len(hub.requests) - asked == 4
        asked = len(hub.requests)  # the processor alone (as a pipeline loads it) retried for over a minute
        assert VallEProcessor.from_pretrained("someone/valle")("ðə")["input_ids"].numel()
        assert len(hub.requests) - asked == 1


@pytest.mark.parametrize("failing", ["model.safetensors", "tokenizer.json", "generation_config.json"])
def test_a_hub_failing_on_the_weights_or_the_tokenizer_alone_is_named_at_once(tmp_path, monkeypatch, converted_dir,
                                                                               failing):
    """A 500 on model.safetensors alone (config.json answered) was retried for half a minute, then reported as a
    repository without weights, with the offline choices as the fix; the tokenizer's alike. Each is now asked once,
    and named; a repository without the tokenizer says so, and one without model.safetensors is left to transformers,
    which reports it (its weights may be named otherwise, or sharded). A failing generation_config.json left the
    library's sampler defaults in place of the model's tuned ones, without a word; a repository without one loads."""
    from conftest import served_hub
    from huggingface_hub import constants

    from valle_hf.errors import ModelNotFoundError
    from valle_hf.loading import load_model_and_processor

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    files = {path.name: path for path in converted_dir.iterdir() if path.is_file()}
    repos = {"someone/valle": files, "someone/no-tokenizer": {name: path for name, path in files.items()
                                                             if name != "tokenizer.json"},
             "someone/no-weights": {name: path for name, path in files.items() if name != "model.safetensors"},
             "someone/untuned": {name: path for name, path in files.items() if name != "generation_config.json"}}
    with served_hub(monkeypatch, repos) as hub:
        hub.failing.add(failing)
        with pytest.raises(ModelNotFoundError, match=rf"^could not download the .*someone/valle/{failing}: .*500"):
            load_model_and_processor("someone/valle")
        assert [status for _, path, status in hub.file_requests() if path.endswith(failing)] == [500]
        hub.failing.clear()
        no_tokenizer = r"^could not download the phoneme tokenizer of someone/no-tokenizer .*tokenizer.json.*tokenizer="
        with pytest.raises(ModelNotFoundError, match=no_tokenizer):
            load_model_and_processor("someone/no-tokenizer")
        assert not [path for path in hub.downloads() if "no-tokenizer" in path and path.endswith("model.safetensors")]
        with pytest.raises(ModelNotFoundError, match=r"^could not load someone/no-weights \(.*model.safetensors"):
            load_model_and_processor("someone/no-weights")
        assert load_model_and_processor("someone/untuned")[0].generation_config is not None


@pytest.mark.parametrize("name", [None, "tiny-random", "folder"])
def test_a_revision_of_a_model_not_fetched_by_that_name_is_refused(tmp_path, converted_dir, name):
    """The released model (fetched from its own repository and converted), tiny-random and a folder have no
    revision to pick: it would be ignored without a word."""
    from valle_hf.errors import VallEValueError

    name = str(converted_dir) if name == "folder" else name
    what = "the released model" if name is None else name
    with pytest.raises(VallEValueError, match=f"--revision v1 .*, and {what} is not one: drop --revision"):
        load_model_and_processor(name, revision="v1")


@pytest.mark.parametrize("revision", ["", " v1", 1])
def test_a_revision_that_is_no_name_is_refused(revision):
    """An empty revision was taken as none (main), one with spaces was sent as %20v1, a number failed deep in
    huggingface_hub with a TypeError about bytes."""
    from valle_hf.errors import VallETypeError, VallEValueError

    error, message = ((VallETypeError, "revision must be a string") if isinstance(revision, int) else
                      (VallEValueError, f"--revision {revision!r} .* is no branch, tag or commit name"))
    with pytest.raises(error, match=message):
        load_model_and_processor("someone/valle", revision=revision)


def test_a_revision_with_a_yaml_names_the_yaml(tmp_path):
    """--yaml picks an original checkpoint, which has no revision: the refusal names it, not the released model."""
    from valle_hf.errors import VallEValueError

    yaml_file = tmp_path / "config.yaml"
    with pytest.raises(VallEValueError, match=f"--revision v1 .*, and {yaml_file} is not one: drop --revision"):
        load_model_and_processor(None, config_yaml=str(yaml_file), revision="v1")


def test_a_hub_model_with_a_tokenizer_file_loads_at_the_revision(tmp_path, monkeypatch, converted_dir):
    """--tokenizer replaces the processor's download, not the model's: the model is still fetched at --revision (the
    repository has v1 only)."""
    from conftest import served_hub
    from huggingface_hub import constants

    repos = {"someone/valle": {path.name: path for path in converted_dir.iterdir() if path.is_file()}}
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with served_hub(monkeypatch, repos, {"someone/valle": {"v1"}}) as hub:
        model, _ = load_model_and_processor("someone/valle", tokenizer=str(converted_dir / "tokenizer.json"),
                                            revision="v1")
    assert model.config.model_type == "valle"
    assert {path.split("/")[4] for _, path, _ in hub.file_requests()} == {"v1"}


def test_a_download_that_fails_after_its_check_names_the_revision(monkeypatch):
    """The check passed (the Hub answered), then the download itself failed: the error names the file where it was
    asked for, at its revision."""
    import huggingface_hub

    from valle_hf import hub
    from valle_hf.errors import ModelNotFoundError

    def cut(*args, **kwargs):
        raise OSError("connection reset by peer")

    monkeypatch.setattr(hub, "check_reachable", lambda *args, **kwargs: False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", cut)
    with pytest.raises(ModelNotFoundError, match=r"could not download the vocoder \(someone/decoders/vocos/config.yaml "
                                                 r"at revision v1: OSError: connection reset by peer\); offline"):
        hub.hub_file("someone/decoders", "config.yaml", "the vocoder", "offline", revision="v1", subfolder="vocos")


@pytest.mark.parametrize("kind", ["codec", "model"])
def test_a_name_that_is_no_folder_and_no_hub_id_is_one_clear_error(tmp_path, kind):
    """A missing folder given as --codec (or a model name with spaces) reached huggingface_hub's repo-id validation:
    a traceback (HFValidationError) from every entry point."""
    from valle_hf.codec import load_codec
    from valle_hf.errors import ModelNotFoundError
    from valle_hf.loading import load_model

    name = {"codec": str(tmp_path / "nope"), "model": "a b/c d"}[kind]
    with pytest.raises(ModelNotFoundError, match=f"{re.escape(name)} is no folder here, and no Hub id"):
        load_codec(name) if kind == "codec" else load_model(name)


def test_a_hub_file_is_asked_for_once_while_the_hub_fails_and_a_name_that_is_no_hub_id_not_at_all(
        tmp_path, monkeypatch, vocos_checkpoint_dir):
    """The download alone retries a failing Hub with growing pauses (half a minute) before it gives up, and raises a
    bare HFValidationError for a name that is no repository id: the check before it asks once, and names both."""
    from conftest import served_hub

    from valle_hf.errors import ModelNotFoundError
    from valle_hf.hub import hub_file

    files = {path.name: path for path in vocos_checkpoint_dir.iterdir()}
    with served_hub(monkeypatch, {"someone/vocos": files}) as hub:
        assert hub_file("someone/vocos", "config.yaml", "the vocoder", "offline", cache_dir=tmp_path / "a").is_file()
        hub.outage, asked = True, len(hub.requests)
        with pytest.raises(ModelNotFoundError, match=r"^could not download the vocoder \(someone/vocos/config.yaml: "):
            hub_file("someone/vocos", "config.yaml", "the vocoder", "offline", cache_dir=tmp_path / "b")
        assert len(hub.requests) - asked == 1
        with pytest.raises(ModelNotFoundError, match="the vocoder cannot be found: a b/c d is no folder here"):
            hub_file("a b/c d", "config.yaml", "the vocoder", "offline", cache_dir=tmp_path / "c")
        assert len(hub.requests) - asked == 1


def test_a_file_the_cache_knows_the_hub_lacks_is_not_taken_as_cached_while_the_hub_fails(
        tmp_path, monkeypatch, vocos_checkpoint_dir):
    """The cache also records the files a download found missing: such a file is no cached file, and while the Hub
    fails the check refuses it at once, rather than leave the download to retry the failing Hub."""
    import huggingface_hub
    from conftest import served_hub
    from huggingface_hub.errors import EntryNotFoundError

    from valle_hf.errors import ModelNotFoundError
    from valle_hf.hub import hub_file

    files = {path.name: path for path in vocos_checkpoint_dir.iterdir()}
    with served_hub(monkeypatch, {"someone/vocos": files}) as hub:
        with pytest.raises(EntryNotFoundError):  # recorded in the cache as missing
            huggingface_hub.hf_hub_download("someone/vocos", "extra.yaml", cache_dir=tmp_path)
        hub.outage, asked = True, len(hub.requests)
        with pytest.raises(ModelNotFoundError, match=r"^could not download the vocoder \(someone/vocos/extra.yaml: "):
            hub_file("someone/vocos", "extra.yaml", "the vocoder", "offline", cache_dir=tmp_path)
        assert len(hub.requests) - asked == 1


def test_the_card_counts_the_decoders_parameters_without_the_codec_and_the_vocoder(fake_hub, converted_dir, capsys):
    """The card's count took in the Vocos vocoder's weights (a third of the fixture model's)."""
    from valle_hf import VallEForConditionalGeneration

    model = VallEForConditionalGeneration.from_pretrained(converted_dir)
    decoder = sum(weight.numel() for name, weight in model.state_dict().items()
                  if not name.startswith(("codec_model.", "vocoder.")))
    assert sum(weight.numel() for name, weight in model.state_dict().items() if name.startswith("vocoder."))
    status, _, err = run_script(["--model-dir", converted_dir, "--repo-id", "someone/count"], capsys)
    assert status == 0, err
    card = (fake_hub.root / "someone/count" / "README.md").read_text(encoding="utf-8")
    assert f"{decoder / 1e6:.1f} M parameters (without the codec and the vocoder)" in card


def test_a_sharded_model_missing_a_shard_or_a_config_without_its_sizes_is_not_uploaded(fake_hub, converted_dir,
                                                                                       tmp_path, capsys):
    """Shards 1, 3 and 4 of 4 were uploaded, an index without shards too; a config.json without num_hidden_layers
    was a KeyError traceback."""
    from valle_hf import VallEForConditionalGeneration
    from valle_hf.processing import VallEProcessor

    sharded = tmp_path / "sharded"
    VallEForConditionalGeneration.from_pretrained(converted_dir).save_pretrained(sharded, max_shard_size="1MB")
    VallEProcessor.from_pretrained(converted_dir).save_pretrained(sharded)
    capsys.readouterr()
    shards = sorted(sharded.glob("model-*.safetensors"))
    assert len(shards) > 1
    shards[1].unlink()
    status, _, err = run_script(["--model-dir", sharded, "--repo-id", "someone/sharded"], capsys)
    assert status == 1 and err == (f"error: not uploading: {sharded} lacks {shards[1].name}, a shard "
                                   "model.safetensors.index.json names: convert again\n"), err
    config = json.loads((converted_dir / "config.json").read_text())
    del config["num_hidden_layers"]
    unsized = tmp_path / "unsized"
    shutil.copytree(converted_dir, unsized)
    (unsized / "config.json").write_text(json.dumps(config))
    status, _, err = run_script(["--model-dir", unsized, "--repo-id", "someone/unsized"], capsys)
    assert status == 1 and err == (f"error: not uploading: {unsized / 'config.json'} has no whole number for "
                                   "num_hidden_layers: convert again\n"), err
    assert fake_hub.commits == []
