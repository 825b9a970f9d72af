"""Where models come from: the released model through the real download path (a local Hub on 127.0.0.1), the
embedded tiny-random model, directories, original checkpoints, and one-line errors when nothing can be loaded."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile
from hub_server import LocalHub

from valle_hf.loading import RELEASED_CHECKPOINT, RELEASED_REPO

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
    import torch

    from valle_hf.loading import tiny_random_model

    torch.manual_seed(5)
    state = torch.get_rng_state()
    first = tiny_random_model().state_dict()
    assert torch.equal(torch.get_rng_state(), state)  # neither reseeded nor advanced
    torch.manual_seed(6)  # another global state: the same model
    again = tiny_random_model().state_dict()
    assert all(torch.equal(value, again[key]) for key, value in first.items())
    other = tiny_random_model(seed=1).state_dict()
    assert not torch.equal(first["model.embed_text.weight"], other["model.embed_text.weight"])
    assert not torch.equal(first["classifiers.0.weight"], other["classifiers.0.weight"])
