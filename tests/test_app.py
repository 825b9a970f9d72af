"""The web demo: `python -m valle_hf.app --model tiny-random` driven in headless Chromium and through `gradio_client`,
and its page logic (controls, streaming, errors) in process.

Needs the `webui` extra (gradio), and for the browser Debian's `chromium` and `chromium-driver`; without them the
tests skip with the reason, except in CI (`CI` set), which installs all of it, where they fail instead.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
import soundfile
import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from valle_hf.streaming import DEFAULT_CHUNK_SECONDS, AudioChunk, AudioIteratorStreamer


def _missing(reason: str):
    """Skip for lack of an optional tool; in CI, which installs everything the demo needs, fail instead."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason, allow_module_level=True)


try:
    import gradio  # noqa: F401
except ImportError:
    _missing('the web demo needs gradio: pip install -e ".[webui]"')

from valle_hf import app, webui  # noqa: E402
from valle_hf.cli import FLAG_SETTINGS, TTS_ONLY_SETTINGS, generation_kwargs  # noqa: E402
from valle_hf.configuration import setting_limits  # noqa: E402
from valle_hf.loading import load_model_and_processor  # noqa: E402
from valle_hf.seeding import sentence_seeds  # noqa: E402

TEXT = "Hello there."

# The page's short runs reach their step limit; outside a request, Gradio turns the page's notice into a UserWarning.
pytestmark = pytest.mark.filterwarnings("ignore:row\\(s\\) .* reached the length limit:UserWarning")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python -m valle_hf.app --model tiny-random` on 127.0.0.1, once for the module; yields its URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(log, "w") as output:
        process = subprocess.Popen([sys.executable, "-m", "valle_hf.app", "--model", "tiny-random", "--host",
                                    "127.0.0.1", "--port", str(port)], stdout=output, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, f"the app exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the app did not answer in 180 s:\n{log.read_text()}"
            try:
                urllib.request.urlopen(url, timeout=5)
                break
            except OSError:
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
    # SIGTERM ends the server as it ends every command (Gradio's own wait ended with status 0 and its own line)
    assert process.returncode == 143 and log.read_text().rstrip().endswith("\ninterrupted"), log.read_text()[-500:]


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's chromium and chromium-driver, driven by Selenium; nothing downloaded)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing('the browser tests need selenium: pip install -e ".[test]"')
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        _missing("the browser tests need headless Chromium: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                     "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


def _wait_for(driver, script: str, timeout: float = 120):
    """Wait until the JavaScript expression `script` is truthy; returns its value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda page: page.execute_script(
        f"return {script};"), message=f"waiting for {script}")


def _element(driver, selector: str, by: str = "css selector", timeout: float = 60):
    """The element `selector` finds (`by`: selenium's `By.CSS_SELECTOR` or another), once the page has it: Gradio
    mounts each kind of component as its code loads, so the text box on the page does not mean the button is there
    yet (a busy machine's page had the one, not the other)."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(
        expected_conditions.presence_of_element_located((by, selector)), message=f"waiting for {selector}")


@pytest.mark.subprocess
def test_the_page_speaks_in_a_browser(server, browser, tmp_path, prompt_wav):
    browser.get(server)
    _element(browser, "#tts-text textarea").send_keys(TEXT)
    _element(browser, "#tts-references input[type=file]").send_keys(str(prompt_wav))
    # Uploaded once the file is listed (its name is split in two elements: stem and extension).
    _wait_for(browser, "document.querySelector('#tts-references').innerText.replace(/\\s/g, '')"
                       f".includes('{prompt_wav.name}')")
    _element(browser, "#tts-button").click()

    # The streamed speech: an audio element with a source that the browser loaded and can play.
    stream = "document.querySelector('#tts-stream audio')"
    _wait_for(browser, f"{stream} && {stream}.src !== '' && {stream}.readyState >= 1 && !{stream}.error")
    played = browser.execute_async_script(f"const done = arguments[0]; {stream}.play().then(() => done('playing'), "
                                          "error => done(String(error)));")
    assert played == "playing"
    # The whole speech, with a download link: a 24 kHz WAV as long as the page says.
    link = _wait_for(browser, "document.querySelector('#tts-audio a[download]')?.href")
    assert link.endswith(".wav")
    shown = _wait_for(browser, "['seed', 'duration', 'elapsed'].map(name => "
                               "document.querySelector(`#tts-${name} input`).value).every(v => v !== '') && "
                               "['seed', 'duration', 'elapsed'].map(name => "
                               "Number(document.querySelector(`#tts-${name} input`).value))")
    seed, duration, elapsed = shown
    assert seed >= 0 and duration > 0 and elapsed > 0
    audio, rate = soundfile.read(io.BytesIO(urllib.request.urlopen(link, timeout=30).read()))
    assert rate == 24000 and audio.ndim == 1
    assert len(audio) / rate == pytest.approx(duration, abs=0.01)

    screenshot = tmp_path / "webui.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    if os.environ.get("VALLE_WEBUI_SCREENSHOT"):  # how docs/webui.png is made
        shutil.copy(screenshot, os.environ["VALLE_WEBUI_SCREENSHOT"])


def _set_number(browser, selector: str, value) -> None:
    """Type `value` into the number field under `selector` (Gradio reads it when the field loses focus)."""
    from selenium.webdriver.common.keys import Keys

    field = _element(browser, f"{selector} input")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", field)
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(str(value), Keys.TAB)


@pytest.mark.subprocess
def test_the_stop_button_ends_the_run_and_frees_the_model(server, browser):
    """There was no Stop: a run of many steps held the model (the queue runs one at a time) until it ended. Here a
    run of 100,000 greedy steps is stopped, and a run of 3 steps after it must end long before the first could."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By

    browser.get(server)
    _element(browser, "#tts-text textarea").send_keys(TEXT)
    _element(browser, "#tts-random-voice input").click()
    _element(browser, "//button[.//*[contains(text(), 'Sampler settings')]]", By.XPATH).click()
    _set_number(browser, "#tts-ar-temp", 0)
    _set_number(browser, "#tts-max-ar-steps", 20000)  # below the positions (22,500)
    _element(browser, "#tts-button").click()
    # the run is under way once its steps show (a fixed wait let a slow machine's Stop come before the run started)
    _wait_for(browser, "document.querySelector('#tts-audio .progress-bar')", timeout=60)
    _element(browser, "#tts-stop").click()
    _wait_for(browser, "!document.querySelector('#tts-audio .progress-bar')", timeout=30)  # a run left going keeps it
    _set_number(browser, "#tts-max-ar-steps", 3)
    # Gradio drops a click on Speak until the page has heard that the stopped run ended (a moment after its bar
    # went): click until the new run shows its bar. Its speech must come long before 20,000 steps could end.
    for _ in range(5):
        _element(browser, "#tts-button").click()
        with contextlib.suppress(TimeoutException):
            _wait_for(browser, "document.querySelector('#tts-audio .progress-bar, #tts-audio a[download]')", 5)
            break
    _wait_for(browser, "document.querySelector('#tts-audio a[download]')?.href", timeout=90)


@pytest.mark.subprocess
def test_a_message_is_shown_whole_as_text(server, browser):
    """The page renders a notice as HTML: "read as <unk> (the model was not trained on these symbols)" showed as
    "read as ", the tag dropped with the rest."""
    from selenium.webdriver.common.by import By

    browser.get(server)
    _element(browser, "#tts-text textarea").send_keys("Hello [there].")
    _element(browser, "#tts-random-voice input").click()
    _element(browser, "//button[.//*[contains(text(), 'Sampler settings')]]", By.XPATH).click()
    _set_number(browser, "#tts-max-ar-steps", 3)
    _element(browser, "#tts-button").click()
    shown = "[...document.querySelectorAll('[data-testid=toast-text]')].map(toast => toast.innerText).join('\\n')"
    toasts = _wait_for(browser, f"{shown}.includes('the phoneme tokenizer has no id for') && {shown}", timeout=90)
    assert "read as <unk> (the model was not trained on these symbols)" in toasts, toasts


@pytest.mark.subprocess
def test_empty_text_shows_the_message_not_a_traceback(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(server)
    _element(browser, "#tts-button").click()
    _wait_for(browser, "document.body.innerText.includes('empty text: nothing to speak')", timeout=60)
    assert "Traceback" not in browser.find_element(By.TAG_NAME, "body").text


@pytest.mark.subprocess
def test_the_api_returns_a_24khz_wav_and_stt_a_string(server, prompt_wav, tmp_path):
    try:
        from gradio_client import Client, handle_file
    except ImportError:
        _missing('the API test needs gradio_client: pip install -e ".[test]"')
    from gradio_client.exceptions import AppError

    client = Client(server, verbose=False)
    _, wav, seed, duration, _ = client.predict(text=TEXT, references=[handle_file(prompt_wav)], seed=7,
                                               max_ar_steps=40, api_name="/tts")
    info = soundfile.info(wav)
    assert (info.format, info.samplerate, info.channels) == ("WAV", 24000, 1)
    assert seed == 7 and info.duration == pytest.approx(duration, abs=0.01)
    ipa, seed = client.predict(audio=handle_file(prompt_wav), seed=7, max_ar_steps=20, api_name="/stt")
    assert isinstance(ipa, str) and ipa and seed == 7

    bad_audio = tmp_path / "bad.wav"
    bad_audio.write_bytes(b"this is not audio")
    for kwargs, message in [
        (dict(text="   ", random_voice=True), "empty text: nothing to speak"),
        (dict(text=TEXT, random_voice=True, ar_temp=-1),
         "--ar-temp -1 is not allowed: it must be 0 \\(greedy\\) or a finite number >= 1e-06"),
        (dict(text=TEXT, random_voice=True, dry_sequence_breakers="1,x"),
         "--dry-sequence-breakers '1,x': expected comma-separated token ids"),
        (dict(text=TEXT, references=[handle_file(bad_audio)]), "could not read audio file"),
        (dict(text=["Hi.", "Bye."], random_voice=True), "text must be a str, got list"),
        # against the model's own temperature: named as the control, not as the setting ("min_temperature=...")
        (dict(text=TEXT, random_voice=True, min_ar_temp=1e9),
         r"^--min-ar-temp 1000000000 is not allowed: it must be at most temperature \("),  # was spoken as "['Hi.', ..."
        # the API hands over the page's message: escaped only where the page would read a tag ("<unk>"), not here
        (dict(text=TEXT, random_voice=True, ar_temp=0.5, min_ar_temp=0.7), r"at most temperature \(0\.5\), or < 0 "),
        (dict(text=TEXT), "no reference voice: upload or record"),  # a random voice is a choice, not a forgotten upload
        (dict(text=TEXT, references=[handle_file(prompt_wav)], random_voice=True),
         "Random voice speaks without a reference"),
    ]:
        with pytest.raises(AppError, match=message):
            client.predict(**kwargs, api_name="/tts")


@pytest.mark.subprocess
def test_a_path_sent_as_text_for_a_file_is_refused_naming_handle_file(server, prompt_wav):
    """gradio_client sends a plain path as text, which the server cannot read: Gradio's check of the payload answered
    "The upstream Gradio app has raised an exception", with a traceback in the server's log."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(server, verbose=False)
    path = str(prompt_wav)
    for parameter, kwargs in [("references", dict(text=TEXT, references=[path], api_name="/tts")),
                              ("recording", dict(text=TEXT, recording=path, api_name="/tts")),
                              ("audio", dict(audio=path, api_name="/stt"))]:
        with pytest.raises(AppError, match=f"^{parameter}: expected an uploaded file, got .*handle_file"):
            client.predict(**kwargs)


def test_an_upload_that_is_not_audio_sent_through_the_api_is_named_without_a_traceback(tiny, tmp_path):
    """The browser refuses a text file for the reference voice before it is sent; the API passed it to Gradio's own
    check, which refused it as "Invalid file type" naming no input, with a traceback in the server's log."""
    page = webui.build_page(*tiny, "`tiny-random`")
    events = {event.api_name: event for event in page.fns.values() if event.fn is not None}
    wired = dict(zip(events["tts"].input_keyword_names, events["tts"].inputs, strict=True))
    notes = tmp_path / "notes.txt"
    notes.write_text("not a voice")
    payload = wired["references"].data_model.model_validate([{"path": str(notes)}])
    with pytest.raises(webui.gr.Error) as raised:
        wired["references"].preprocess(payload)
    assert raised.value.message.startswith("references: Invalid file type") and not raised.value.print_exception


def test_a_value_outside_a_dropdowns_choices_sent_through_the_api_is_named_without_a_traceback(tiny):
    """Gradio refused it as "Value: float64 is not in the list of choices", naming none of the API's forty
    parameters, with a traceback in the server's log; each parameter named once, on both tabs. (The language takes
    any espeak-ng voice.)"""
    page = webui.build_page(*tiny, "`tiny-random`")
    events = {event.api_name: event for event in page.fns.values() if event.fn is not None}
    dropdowns = [(name, component) for api in ("tts", "stt")
                 for name, component in zip(events[api].input_keyword_names, events[api].inputs, strict=True)
                 if isinstance(component, webui.gr.Dropdown) and not component.allow_custom_value]
    assert {"nar_dtype", "language_switch"} <= {name for name, _ in dropdowns}
    for name, component in dropdowns:
        with pytest.raises(webui.gr.Error) as raised:
            component.preprocess("no such choice")
        message = raised.value.message
        assert message.startswith(f"{name}: Value: no such choice is not in the list of choices"), message
        assert message.count(f"{name}:") == 1 and not raised.value.print_exception


@pytest.fixture(scope="module")
def tiny():
    return load_model_and_processor("tiny-random")


def test_each_control_states_the_range_its_flag_takes(tiny):
    """The beam width's hint said "0/1 = off; allowed: an integer >= 1", though the page, as the CLI, takes 0."""
    from valle_hf.cli import FLAG_RULES
    from valle_hf.configuration import SETTING_RULES

    model, _ = tiny
    controls = webui.sampler_controls(model.generation_config, model.config, "tts")
    limits = setting_limits(model.config)
    for flag, control in controls.items():
        rule = FLAG_RULES.get(flag) or SETTING_RULES.get(FLAG_SETTINGS[flag], (None,))[0]
        if isinstance(control, (webui.gr.Checkbox, webui.gr.Dropdown)):  # "allowed: True or False" was shown
            assert "allowed:" not in control.info, (flag, control.info)
            continue
        limit = f"; {limits[FLAG_SETTINGS[flag]]}" if FLAG_SETTINGS[flag] in limits else ""
        assert rule is None or control.info.endswith(f"allowed: {rule}{limit}"), (flag, control.info)
        # the help's bracketed default is the released model's; the control shows this model's
        assert "[" not in control.info.partition("allowed: ")[0], (flag, control.info)
    assert FLAG_RULES and set(FLAG_RULES) <= set(controls)
    assert {FLAG_SETTINGS[flag] for flag in controls} >= set(limits) - {"max_new_tokens"}  # its flag's rule is none


def test_the_limits_the_page_states_are_the_models_own(tiny):
    """The page said "[0, 3600]" seconds of prompt where the model takes 300 (its positions), "max levels >= 0" where
    it has 8: each limit stated is the largest value `check_settings_fit` takes for this model."""
    from valle_hf.configuration import check_settings, check_settings_fit
    from valle_hf.errors import VallEValueError

    model, _ = tiny
    for setting, words in setting_limits(model.config).items():
        largest = float(re.search(r"at most ([\d.]+)", words).group(1))
        step = 1 if largest.is_integer() and "s for" not in words else 1 / model.config.frame_rate
        given = int(largest) if step == 1 else largest
        check_settings({setting: given})
        check_settings_fit({setting: given}, model.config)
        with pytest.raises(VallEValueError):
            past = given + step
            check_settings({setting: past})
            check_settings_fit({setting: past}, model.config)


def test_text_the_page_is_given_for_a_setting_is_read_as_the_cli_reads_it():
    """The page's API takes any JSON: text for a number control failed with int()'s bare ValueError."""
    from valle_hf.errors import UsageError

    with pytest.raises(UsageError, match="--top-k 'abc': expected an integer"):
        webui._arguments("tts", {"top_k": "abc"})
    args = webui._arguments("tts", {"top_k": "5.0", "ar_temp": "0.5", "dry_sequence_breakers": "1, 2"})
    assert (args.top_k, args.ar_temp, args.dry_sequence_breakers) == (5, 0.5, [1, 2])
    args = webui._arguments("tts", {"top_k": 5.0, "max_ar_steps": 12, "dry_sequence_breakers": ""})  # a number field's
    assert (args.top_k, args.max_ar_steps, args.dry_sequence_breakers) == (5, 12, []) and type(args.top_k) is int


@pytest.mark.parametrize("greedy", [False, True], ids=["sampling-config", "greedy-config"])
@pytest.mark.parametrize("task", ["tts", "stt"])
def test_every_cli_flag_has_a_control_whose_default_changes_nothing(tiny, task, prompt_wav, greedy, monkeypatch):
    """Also for a config that decodes greedily with a temperature set: its temperature control showed that
    temperature, which the page then passed as a setting when changed and back, and the run sampled."""
    model, processor = tiny
    if greedy:
        monkeypatch.setattr(model.generation_config, "do_sample", False)
    controls = webui.sampler_controls(model.generation_config, model.config, task)
    expected = {flag for flag, setting in FLAG_SETTINGS.items() if task == "tts" or setting not in TTS_ONLY_SETTINGS}
    assert set(controls) == expected
    kwargs = generation_kwargs(webui._arguments(task, {flag: control.value for flag, control in controls.items()}))
    assert set(kwargs) == {FLAG_SETTINGS[flag] for flag in expected} | {"do_sample"}
    # Each value is the generation config's; where the config says None, the value None stands for.
    none_means = {"audio_backend": model.config.audio_backend, "max_levels": model.config.num_rvq_levels - 1,
                  "min_p": 0.0, "num_beams": 1}
    if greedy:
        none_means["temperature"] = 0.0  # greedy decoding, as the original's temperature 0 says
    for setting, value in kwargs.items():
        default = getattr(model.generation_config, setting)
        expected = none_means[setting] if default is None or setting == "temperature" and greedy else default
        assert value == expected, setting
    # The same run as with the model's own settings (the AR steps cut short, the same seed).
    kwargs["max_new_tokens"] = 12
    if task == "tts":
        inputs = dict(**processor([TEXT], prompt_audio=str(prompt_wav)), output_audio=False)
    else:
        inputs = dict(**processor(audio=[str(prompt_wav)]), task="stt")
    torch.manual_seed(0)
    with_controls = model.generate(**inputs, **kwargs)
    torch.manual_seed(0)
    alone = model.generate(**inputs, max_new_tokens=12)
    assert all(torch.equal(a, b) for a, b in zip(with_controls, alone, strict=True))


def test_both_tabs_queue_for_the_one_model_and_each_stop_button_cancels_its_tab_s_run(tiny):
    page = webui.build_page(*tiny, "`tiny-random`")
    events = {event.api_name: event for event in page.fns.values() if event.fn is not None}
    assert set(events) == {"tts", "stt"}
    assert all((event.queue, event.concurrency_id, event.concurrency_limit) == (True, "model", 1)
               for event in events.values())
    clicked = {page.blocks[block_id].elem_id: event for event in page.fns.values() for block_id, _ in event.targets}
    run_of = {event.api_name: index for index, event in page.fns.items() if event.fn is not None}
    for tab in ("tts", "stt"):
        cancels = [event.cancels for event in page.fns.values()
                   if any(page.blocks[block_id].elem_id == f"{tab}-stop" for block_id, _ in event.targets)]
        assert [run_of[tab]] in cancels, (tab, cancels)
        assert clicked[f"{tab}-button"].api_name == tab


def test_every_input_of_a_run_comes_from_a_control_of_its_tab(tiny):
    """A form field left out of the wiring runs with its default whatever the user set there: each parameter of
    `speak` and `transcribe`, and each sampler control, is a placed control of the page."""
    import inspect

    model, _ = tiny
    page = webui.build_page(*tiny, "`tiny-random`")
    events = {event.api_name: event for event in page.fns.values() if event.fn is not None}
    wired = {}
    for tab, action in (("tts", webui.Demo.speak), ("stt", webui.Demo.transcribe)):
        event = events[tab]
        names = event.input_keyword_names
        wired[tab] = dict(zip(names, event.inputs[len(event.inputs) - len(names):], strict=True))
        parameters = set(inspect.signature(action).parameters) - {"self", "progress", "flags"}
        assert set(names) == parameters | set(webui.sampler_controls(model.generation_config, model.config, tab))
        assert all(component._id in page.blocks for component in wired[tab].values()), tab  # placed on the page
    # Uploads reach the run as paths, several reference files at once
    assert wired["tts"]["references"].file_count == "multiple"
    assert wired["tts"]["recording"].type == wired["stt"]["audio"].type == "filepath"
    assert page.delete_cache == (3600, 3600)  # uploads and outputs older than an hour removed every hour


def _samples(row: int, start: int, end: int) -> torch.Tensor:
    """Samples `start:end` of a made-up row's speech, each telling its row and place."""
    return row / 10 + torch.arange(start, end) / 100


def _chunk(row: int, start: int, length: int, final: bool) -> AudioChunk:
    return AudioChunk(row, _samples(row, start, start + length), torch.zeros(length, 8, dtype=torch.long), start,
                      final)


def test_rows_are_played_in_order_as_soon_as_they_can_be_what_is_ready_in_one_piece():
    """Each piece is one update of the page, which costs Gradio tens of milliseconds: a long text's pieces, one per
    chunk, fell ever further behind the generation. What is ready together is one piece, the rows one after the
    other, and a piece goes at once, without waiting for a chunk still to come (the streamer's timeout ends a wait)."""
    streamer = AudioIteratorStreamer(timeout=1)
    played = webui.in_row_order(streamer)
    for chunk in (_chunk(1, 0, 2, False), _chunk(0, 0, 2, False), _chunk(0, 2, 1, False)):
        streamer.put(chunk)
    assert next(played).tolist() == _samples(0, 0, 3).tolist()  # row 1's waits for row 0's end
    for chunk in (_chunk(1, 2, 1, True), _chunk(0, 3, 0, True)):
        streamer.put(chunk)
    assert next(played).tolist() == _samples(1, 0, 3).tolist()  # row 1's two chunks, in one piece
    streamer.put(_chunk(2, 0, 4, True))
    streamer.end()
    assert next(played).tolist() == _samples(2, 0, 4).tolist()
    assert list(played) == []


def test_a_streamed_piece_is_16_bit_wav_clipped_to_full_scale():
    """Gradio plays a piece's bytes as they are (a float array it would normalise piece by piece): 16-bit WAV at the
    given rate, a sample past full scale at full scale."""
    rate = 8000
    piece = webui.wav_bytes(torch.tensor([2.0, -2.0, 0.5]), rate)
    info = soundfile.info(io.BytesIO(piece))
    assert (info.format, info.subtype, info.samplerate) == ("WAV", "PCM_16", rate)
    samples, _ = soundfile.read(io.BytesIO(piece), dtype="float32")
    assert samples.tolist() == pytest.approx([1.0, -1.0, 0.5], abs=1 / 2**15)


class _PacedByThePage(AudioIteratorStreamer):
    """Sends each chunk only once the page asks for the next one, as a page that keeps up finds them: how many pieces
    the page plays no longer depends on how a busy machine shares its time between the run and the page (a page
    given none meanwhile finds every chunk ready at once, and rightly plays them as one piece)."""

    def __init__(self, chunk_seconds: float):
        super().__init__(chunk_seconds, timeout=60)
        self.asked = threading.Semaphore(0)

    def __next__(self) -> AudioChunk:
        self.asked.release()
        return super().__next__()

    def put(self, chunk: AudioChunk) -> None:
        self.asked.acquire(timeout=60)  # a page that stopped asking must not hold the run for ever
        super().put(chunk)


def test_the_speech_streams_before_it_ends_and_the_stream_is_the_whole_speech(tiny, monkeypatch):
    monkeypatch.setattr(webui, "AudioIteratorStreamer", _PacedByThePage)
    demo = webui.Demo(*tiny)
    demo.outputs = {name: name for name in ("stream", "audio", "seed", "duration", "elapsed")}
    saved = []
    monkeypatch.setattr(webui, "save_audio", lambda path, waveform, rate: saved.append(waveform))
    steps = []
    updates = [update for update in demo.speak("Hi there. And a second sentence.", seed=3, stream_chunk=0.1,
                                               random_voice=True, progress=lambda done, **_: steps.append(done),
                                               ar_temp=0, max_ar_steps=40) if update != webui.gr.skip()]
    assert steps == [(step, 40) for step in range(1, 41)]  # the page's progress bar, step by step
    assert len(updates) > 3 and all(set(update) == {"stream"} for update in updates[:-1])
    assert updates[-1]["seed"] == 3 and updates[-1]["duration"] == len(saved[0]) / 24000
    rate = tiny[0].config.sampling_rate  # each piece plays at the model's rate
    assert {soundfile.info(io.BytesIO(update["stream"])).samplerate for update in updates[:-1]} == {rate}
    streamed = torch.cat([torch.from_numpy(soundfile.read(io.BytesIO(update["stream"]), dtype="float32")[0])
                          for update in updates[:-1]])
    torch.testing.assert_close(streamed, saved[0].clamp(-1, 1), atol=1 / 2**15, rtol=0)  # 16-bit WAV pieces


class _HeldToTheEnd(AudioIteratorStreamer):
    """Sends a run's chunks all at once, at its end, as a page that fell behind finds them."""

    def __init__(self, chunk_seconds: float):
        super().__init__(chunk_seconds, timeout=60)
        self.chunks: list[AudioChunk] = []
        self.sent = 0

    def put(self, chunk: AudioChunk) -> None:
        self.chunks.append(chunk)

    def end(self) -> None:
        for chunk in self.chunks[self.sent:]:
            super().put(chunk)
        self.sent = len(self.chunks)  # the run's thread ends it again, after generate did
        super().end()


def _keeping(streamers: list, make):
    """A stand-in for the page's `AudioIteratorStreamer(chunk_seconds)`: `make`'s streamer, kept in `streamers`."""
    def made(chunk_seconds: float) -> AudioIteratorStreamer:
        streamers.append(make(chunk_seconds))
        return streamers[-1]
    return made


def test_the_pieces_ready_together_are_one_update_of_the_whole_speech(tiny, monkeypatch):
    """An update per chunk cost the page tens of milliseconds each: with all of them ready, one update plays them."""
    streamers = []
    monkeypatch.setattr(webui, "AudioIteratorStreamer", _keeping(streamers, _HeldToTheEnd))
    demo = webui.Demo(*tiny)
    demo.outputs = {name: name for name in ("stream", "audio", "seed", "duration", "elapsed")}
    saved = []
    monkeypatch.setattr(webui, "save_audio", lambda path, waveform, rate: saved.append(waveform))
    updates = [update for update in demo.speak("Hi there. And a second sentence.", seed=3, stream_chunk=0.1,
                                               random_voice=True, ar_temp=0, max_ar_steps=40)
               if update != webui.gr.skip()]
    assert len(streamers[0].chunks) > 3 and len(updates) == 2 and set(updates[0]) == {"stream"}
    streamed = torch.from_numpy(soundfile.read(io.BytesIO(updates[0]["stream"]), dtype="float32")[0])
    torch.testing.assert_close(streamed, saved[0].clamp(-1, 1), atol=1 / 2**15, rtol=0)  # a 16-bit WAV piece


def test_a_piece_goes_to_the_page_without_waiting_for_the_next(tiny, monkeypatch):
    """The page sends what is ready in one update, but never waits for more to come: the speech would start later.
    Here the run sends one piece, then nothing (the streamer's timeout ends a wait), then another."""
    streamers = []
    monkeypatch.setattr(webui, "AudioIteratorStreamer",
                        _keeping(streamers, lambda seconds: AudioIteratorStreamer(seconds, timeout=1)))
    demo = webui.Demo(*tiny)
    demo.outputs = {name: name for name in ("stream", "audio", "seed", "duration", "elapsed")}
    # the run, fed by hand: its first piece is sent as it starts
    monkeypatch.setattr(demo, "_start", lambda progress, kwargs, streamer, **inputs: (
        streamer.put(_chunk(0, 0, 3, False)), SimpleNamespace(close=lambda: None))[1])
    updates = demo.speak(TEXT, random_voice=True)
    assert next(updates) == webui.gr.skip()
    for start, length in ((0, 3), (3, 2)):
        if start:
            streamers[0].put(_chunk(0, start, length, False))
        piece = soundfile.read(io.BytesIO(next(updates)["stream"]), dtype="float32")[0]
        assert piece.tolist() == pytest.approx(_samples(0, start, start + length).tolist(), abs=1 / 2**15)
    updates.close()


def test_an_emptied_field_means_its_default_for_the_stream_chunk_too(tiny, monkeypatch):
    """An emptied sampler control runs with the model's default, but an emptied stream chunk said "--stream-chunk None
    is not allowed", a value the user never typed."""
    chunks = []
    monkeypatch.setattr(webui, "AudioIteratorStreamer", lambda seconds: chunks.append(seconds))
    demo = webui.Demo(*tiny)
    demo.outputs = {name: name for name in ("stream", "audio", "seed", "duration", "elapsed")}
    list(demo.speak(TEXT, random_voice=True, stream_chunk=None, max_ar_steps=2))
    assert chunks == [DEFAULT_CHUNK_SECONDS]
    list(demo.speak(TEXT, random_voice=True, stream_chunk="0.25", max_ar_steps=2))  # the API's text: its number
    list(demo.speak(TEXT, random_voice=True, stream_chunk=" ", max_ar_steps=2))  # blank text: emptied
    assert chunks[1:] == [0.25, DEFAULT_CHUNK_SECONDS]


def test_a_model_whose_own_settings_cannot_be_streamed_speaks_unstreamed(tiny, monkeypatch):
    """A model whose generation config searches beams: every Speak failed, telling the page's user to drop an
    audio_streamer; it plays the speech once complete instead."""
    demo = webui.Demo(*tiny)
    demo.outputs = {name: name for name in ("stream", "audio", "seed", "duration", "elapsed")}
    monkeypatch.setattr(tiny[0].generation_config, "num_beams", 2)
    monkeypatch.setattr(webui, "save_audio", lambda path, waveform, rate: None)
    updates = [update for update in demo.speak(TEXT, random_voice=True, max_ar_steps=4) if update != webui.gr.skip()]
    assert len(updates) == 1 and "stream" not in updates[0] and set(updates[0]) == set(demo.outputs) - {"stream"}


def test_without_ffmpeg_the_speech_plays_once_complete(tiny, monkeypatch):
    monkeypatch.setattr(app.shutil, "which", lambda name: None)
    page = app.build_demo(*tiny, "tiny-random")
    assert "tts-stream" not in {block.elem_id for block in page.blocks.values()}
    demo = webui.Demo(*tiny)
    demo.outputs = {name: name for name in ("audio", "seed", "duration", "elapsed")}
    updates = [update for update in demo.speak(TEXT, random_voice=True, max_ar_steps=10) if update != webui.gr.skip()]
    assert len(updates) == 1 and set(updates[0]) == set(demo.outputs)


def test_the_seed_shown_repeats_the_run(tiny, monkeypatch):
    """A random run's seed, given back, gives the same speech, that of the CLI's --seed (sentence i draws from seed +
    i); another seed, other speech."""
    demo = webui.Demo(*tiny)
    demo.outputs = {name: name for name in ("audio", "seed", "duration", "elapsed")}
    saved = []
    monkeypatch.setattr(webui, "save_audio", lambda path, waveform, rate: saved.append(waveform))

    def speak(seed: int) -> int:
        updates = list(demo.speak("Hi there. And a second one.", seed=seed, random_voice=True, max_ar_steps=8))
        return updates[-1]["seed"]

    shown = speak(-1)
    assert speak(shown) == shown and torch.equal(saved[0], saved[1])
    speak(shown + 1)
    assert not torch.equal(saved[0], saved[2])
    model, processor = tiny
    rows = model.generate(**processor(["Hi there.", "And a second one."]), seeds=sentence_seeds(shown, 2),
                          max_new_tokens=8)
    assert torch.equal(saved[0], torch.cat(rows))


def test_the_runs_warnings_are_shown_on_the_page(tiny, prompt_wav, monkeypatch):
    """Speech cut off by the step limit was said in the server's log only, where the page's user never looks."""
    shown = []
    monkeypatch.setattr(webui.gr, "Warning", shown.append)
    demo = webui.Demo(*tiny)
    demo.outputs = {name: name for name in ("audio", "seed", "duration", "elapsed")}
    list(demo.speak("Hi there. And a second one.", random_voice=True, ar_temp=0, max_ar_steps=3))
    list(demo.transcribe(str(prompt_wav), ar_temp=0, max_ar_steps=2))
    assert len(shown) == 2, shown  # in the page's words: its control is --max-ar-steps, and it runs no command
    assert all("length limit (--max-ar-steps=" in message and message.endswith("cut off (raise --max-ar-steps)")
               for message in shown), shown


def test_a_long_texts_warning_names_a_few_of_its_sentences_not_all(tiny, monkeypatch):
    """Each sentence is a row: a text of thousands of sentences cut off by the step limit showed a notice listing
    every row, 29,000 characters of "[0, 1, 2, ...]"."""
    from valle_hf.generation import MAX_NAMED_ROWS

    shown = []
    monkeypatch.setattr(webui.gr, "Warning", shown.append)
    demo = webui.Demo(*tiny)
    demo.outputs = {name: name for name in ("audio", "seed", "duration", "elapsed")}
    sentences = MAX_NAMED_ROWS + 5
    list(demo.speak(" ".join(f"Sentence {number}." for number in range(sentences)), random_voice=True, ar_temp=0,
                    max_ar_steps=2))
    cut = [message for message in shown if "reached the length limit" in message]
    listed = ", ".join(str(row) for row in range(MAX_NAMED_ROWS - 1))
    assert len(cut) == 1 and cut[0].startswith(f"row(s) [{listed}, … (5 more), {sentences - 1}] reached"), shown


def test_a_runs_warning_is_shown_once_and_its_info_lines_not_at_all(monkeypatch):
    """A warning said again (by each row of a batch, say) is one notice; with transformers' verbosity at info, the
    package's info lines stay in the server's log; and nothing is left collecting after the run."""
    import transformers

    from valle_hf.errors import get_logger

    shown = []
    monkeypatch.setattr(webui.gr, "Warning", shown.append)
    package, logger = get_logger("valle_hf"), get_logger("valle_hf.generation")
    handlers, verbosity = list(package.handlers), transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_info()
    try:
        with webui.warnings_on_page():
            logger.info("an info line")
            logger.warning("row 1 reached the length limit")
            logger.warning("row 1 reached the length limit")
    finally:
        transformers.logging.set_verbosity(verbosity)
    assert shown == ["row 1 reached the length limit"]
    assert package.handlers == handlers


def test_an_upload_is_named_as_uploaded_not_by_its_path_on_the_server(tiny, tmp_path, monkeypatch):
    """The message named /tmp/gradio/<64 hex digits>/short.wav: where Gradio keeps the upload, not what was uploaded."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    upload = tmp_path / ("0123456789abcdef" * 4) / "short.wav"
    upload.parent.mkdir()
    soundfile.write(upload, [0.1] * 100, 24000)
    demo = webui.Demo(*tiny)
    with pytest.raises(webui.gr.Error, match=r"^'short\.wav is 4\.17 ms long, shorter than one codec frame"):
        list(demo.speak(TEXT, references=[str(upload)]))


def test_an_upload_path_with_the_separators_of_windows_is_named_as_uploaded(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    folder = str(Path(webui.gradio_utils.get_upload_folder()))
    hex_name = "0123456789abcdef" * 4
    for separator in ("/", "\\"):
        message = f"could not read {folder}{separator}{hex_name}{separator}voice.wav: not audio"
        assert webui._as_uploaded(message) == "could not read voice.wav: not audio"


def test_without_gradio_the_command_says_so_before_the_model_loads(capsys, monkeypatch):
    """A missing gradio must not cost a download first (minutes for the released model)."""
    import valle_hf

    monkeypatch.setattr(app, "_check_free", lambda *args: None)
    monkeypatch.setattr(app, "load_model", lambda *args: pytest.fail("the model loaded before gradio was looked for"))
    monkeypatch.delattr(valle_hf, "webui")
    monkeypatch.setitem(sys.modules, "valle_hf.webui", None)  # what an import of it meets without gradio
    assert app.main(["--model", "tiny-random"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the web demo needs gradio"), err


def test_the_precision_line_is_printed_as_the_cli_prints_it(capsys, monkeypatch):
    monkeypatch.setattr(app, "_check_free", lambda *args: None)
    monkeypatch.setattr(app, "_launch", lambda *args: None)
    assert app.main(["--model", "tiny-random"]) == 0
    err = capsys.readouterr().err
    assert any(line.startswith("precision: AR ") for line in err.splitlines()) and "[transformers] precision" not in err


def test_the_page_names_the_model_at_its_revision(tiny, monkeypatch):
    monkeypatch.setattr(app, "_check_free", lambda *args: None)
    loaded = SimpleNamespace(describe=lambda: "precision: as loaded")
    monkeypatch.setattr(app, "load_model", lambda args: (*tiny, loaded))
    pages = []
    monkeypatch.setattr(app, "_launch", lambda page, *args: pages.append(page))
    assert app.main(["--model", "someone/valle", "--revision", "v1"]) == 0
    assert app.main(["--yaml", "runs/config.yaml"]) == 0  # the checkpoint the yaml names, not the release
    assert app.main(["--model", "tiny-random"]) == 0
    assert [_model_line(page) for page in pages] == [
        "Model: `someone/valle` at revision `v1`",
        "Model: `the checkpoint runs/config.yaml names`",  # no revision given: none named
        "Model: `tiny-random`, an installation check: it makes noise, not speech"]


def _model_line(page) -> str:
    """The line of the page's Markdown that names its model."""
    texts = [block.value for block in page.blocks.values() if isinstance(block, webui.gr.Markdown)]
    return next(line for text in texts for line in text.splitlines() if line.startswith("Model: "))


def test_the_page_without_a_model_names_the_released_one(tiny, monkeypatch):
    """build_demo() (a Space's page) loads the released model; the page must not call it "a model given in Python"."""
    from valle_hf.loading import RELEASED_FOLDER

    monkeypatch.setattr(app, "load_model_and_processor", lambda model, revision=None: tiny)
    assert _model_line(app.build_demo()) == f"Model: `{RELEASED_FOLDER}`"


def test_a_warning_names_an_upload_as_uploaded(tiny, tmp_path, prompt_wav, monkeypatch):
    """A silent upload's warning named /tmp/gradio/<64 hex digits>/silent.wav, on both tabs."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    upload = tmp_path / ("0123456789abcdef" * 4) / "silent.wav"
    upload.parent.mkdir()
    rate = soundfile.info(prompt_wav).samplerate
    soundfile.write(upload, [0.0] * rate, rate)
    shown = []
    monkeypatch.setattr(webui.gr, "Warning", shown.append)
    demo = webui.Demo(*tiny)
    demo.outputs = {name: name for name in ("audio", "seed", "duration", "elapsed")}
    list(demo.speak(TEXT, references=[str(upload)], max_ar_steps=2))
    list(demo.transcribe(str(upload), max_ar_steps=2))
    silent = [message for message in shown if " is silent " in message]
    assert len(silent) == 2 and all(message.startswith("silent.wav is silent") for message in silent), shown


def test_a_run_out_of_memory_is_a_message(tiny, monkeypatch):
    """--beam-width 1000000000 showed Gradio's bare "Error": the CPU allocator's failure is a plain RuntimeError."""
    def allocate(**kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 136000000000 bytes.")

    model, processor = tiny
    demo = webui.Demo(model, processor)
    demo.outputs = {name: name for name in ("audio", "seed", "duration", "elapsed")}
    monkeypatch.setattr(model, "generate", allocate)
    with pytest.raises(webui.gr.Error, match=r"out of memory for this run \(.*136000000000 bytes.*\): ask for less"):
        list(demo.speak(TEXT, random_voice=True))

    def exhaust(**kwargs):
        raise MemoryError

    monkeypatch.setattr(model, "generate", exhaust)  # Python's own MemoryError too
    with pytest.raises(webui.gr.Error, match=r"out of memory for this run \(MemoryError\): ask for less") as raised:
        list(demo.speak(TEXT, random_voice=True))
    assert not raised.value.print_exception  # the user's to lower: no traceback in the server's log
    monkeypatch.setattr(model, "generate", lambda **kwargs: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback (in the server's log)
        list(demo.speak(TEXT, random_voice=True))


def test_a_streamed_run_that_fails_before_its_first_piece_is_a_message_not_a_wait(tiny, monkeypatch):
    """The page reads the streamed pieces until the run ends the stream: a run that failed first must end it too."""
    def allocate(**kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory")

    demo = webui.Demo(*tiny)
    demo.outputs = {name: name for name in ("stream", "audio", "seed", "duration", "elapsed")}
    monkeypatch.setattr(demo.model, "generate", allocate)
    shown = []

    def speak():
        try:
            list(demo.speak(TEXT, random_voice=True))
        except webui.gr.Error as error:
            shown.append(str(error))

    run = threading.Thread(target=speak, daemon=True)  # a run left waiting must not keep pytest from ending
    run.start()
    run.join(30)
    assert len(shown) == 1 and "out of memory for this run" in shown[0], shown


def test_a_sentence_that_came_out_empty_is_a_message_not_missing_speech(tiny, monkeypatch):
    from valle_hf.modeling import VallEForConditionalGeneration

    generate = VallEForConditionalGeneration.generate

    def second_stops_at_once(self, **kwargs):
        audio = generate(self, **kwargs)
        audio[1] = audio[1][:0]
        return audio

    monkeypatch.setattr(VallEForConditionalGeneration, "generate", second_stops_at_once)
    demo = webui.Demo(*tiny)
    demo.outputs = {name: name for name in ("audio", "seed", "duration", "elapsed")}
    with pytest.raises(webui.gr.Error, match=r"sentence 2 \('And a second one.'\) of 2 came out empty"):
        list(demo.speak("Hi there. And a second one.", random_voice=True, max_ar_steps=10))


def _processor_calls(demo) -> list[tuple[dict, dict]]:
    """The keyword arguments and the batch of each call the page makes to its processor, from now on."""
    processor, calls = demo.processor, []

    class Recording:
        feature_extractor = processor.feature_extractor

        def __call__(self, *args, **kwargs):
            batch = processor(*args, **kwargs)
            calls.append((kwargs, batch))
            return batch

    demo.processor = Recording()
    return calls


def test_a_recording_is_a_reference_voice_as_an_upload_is(tiny, prompt_wav):
    demo = webui.Demo(*tiny)
    demo.outputs = {name: name for name in ("audio", "seed", "duration", "elapsed")}
    calls = _processor_calls(demo)
    list(demo.speak(TEXT, recording=str(prompt_wav), seed=1, max_ar_steps=2))
    list(demo.speak(TEXT, references=[str(prompt_wav)], seed=1, max_ar_steps=2))
    prompts = [kwargs["prompt_audio"] for kwargs, _ in calls]
    recorded, uploaded = ([waveform for voice in prompt for waveform in voice] for prompt in prompts)  # [[waveforms]]
    assert recorded and all(torch.equal(*pair) for pair in zip(recorded, uploaded, strict=True))


def test_one_reference_path_given_in_python_is_one_voice_not_its_characters(tiny, prompt_wav):
    """`speak(references="voice.wav")` read each character of the path as a file ("audio file not found: e")."""
    demo = webui.Demo(*tiny)
    demo.outputs = {name: name for name in ("audio", "seed", "duration", "elapsed")}
    calls = _processor_calls(demo)
    for references in (str(prompt_wav), prompt_wav, [str(prompt_wav)]):
        list(demo.speak(TEXT, references=references, seed=1, max_ar_steps=2))
    one, as_path, listed = ([waveform for voice in kwargs["prompt_audio"] for waveform in voice] for kwargs, _ in calls)
    assert len(listed) == 1 and all(torch.equal(listed[0], *given) for given in (one, as_path))


def test_an_upload_whose_name_holds_a_semicolon_is_that_file(tiny, prompt_wav, tmp_path):
    """An upload named "a;b.wav" was split as the command line's "a.wav;b.wav" ("audio file not found: a"), on both
    tabs."""
    named = tmp_path / "voice;take 2.wav"
    shutil.copyfile(prompt_wav, named)
    demo = webui.Demo(*tiny)
    demo.outputs = {name: name for name in ("audio", "seed", "duration", "elapsed")}
    calls = _processor_calls(demo)
    list(demo.speak(TEXT, references=[str(named)], seed=1, max_ar_steps=2))
    list(demo.speak(TEXT, recording=str(named), seed=1, max_ar_steps=2))
    list(demo.speak(TEXT, references=[str(prompt_wav)], seed=1, max_ar_steps=2))
    uploaded, recorded, original = ([waveform for voice in kwargs["prompt_audio"] for waveform in voice]
                                    for kwargs, _ in calls)
    assert len(original) == 1 and all(torch.equal(original[0], *given) for given in (uploaded, recorded))
    assert list(webui.Demo(*tiny).transcribe(str(named), max_ar_steps=2))[-1]  # a transcription, not "not found"


def test_a_missing_recording_is_named_in_the_pages_words(tiny, prompt_wav):
    """The message spoke of an empty path or an unset variable, the CLI's mistakes, on the STT tab too."""
    demo = webui.Demo(*tiny)
    demo.outputs = {name: name for name in ("audio", "seed", "duration", "elapsed")}
    with pytest.raises(webui.gr.Error, match="no speech to transcribe: upload or record it"):
        list(demo.transcribe(None))
    with pytest.raises(webui.gr.Error, match="no reference voice: upload or record a few seconds of speech"):
        list(demo.speak("Hello there.", references=[], recording=None))
    with pytest.raises(webui.gr.Error, match="Random voice speaks without a reference, but one was given"):
        list(demo.speak("Hello there.", references=[str(prompt_wav)], random_voice=True))  # not "--no-prompt ..."


@pytest.mark.parametrize("inputs, message", [
    (dict(text=None), "text must be a str, got NoneType"),
    (dict(text="  ", random_voice=False), "empty text: nothing to speak"),  # the text first, then the voice
    (dict(language=None), "language must be a str, got NoneType"),
    (dict(seed=1e300), r"Seed must be a whole number from 0 to \d+"),  # ran, then the page could not show it
    (dict(seed=float("nan")), "Seed must be a whole number"),
    (dict(seed=float("inf")), "Seed must be a whole number"),
    (dict(seed=2.5), "Seed must be a whole number"),
    (dict(seed="seven"), "Seed must be a number, got 'seven'"),
    (dict(seed="2.5"), "Seed must be a whole number"),  # text is read as a number, as the sampler controls' is
    (dict(seed=True), "Seed must be a number, got True"),  # JSON's true is not seed 1
    (dict(seed=-5), r"Seed must be a whole number from 0 to \d+ \(or -1 for a random one\), got -5"),  # was random
    (dict(seed=-1.5), "Seed must be a whole number"),
    (dict(stream_chunk=0), r"--stream-chunk 0 is not allowed: it must be a number of seconds in \(0, 3600\]"),
    (dict(stream_chunk=-1, beam_width=2), "--stream-chunk -1 is not allowed"),  # checked, though it won't stream
    # the controls' names, not the settings' (max_levels=8), also for the rules of this model (tiny-random's 8 levels)
    (dict(max_nar_levels=8), "--max-nar-levels 8 is not allowed: it must be an integer 0..7 \\(or unset: all "
                             "levels\\)"),
    (dict(layer_skip=True, layer_skip_exit_layer=9), "--layer-skip-exit-layer 9 is not allowed"),
    (dict(dry_sequence_breakers="99999999999999999999"), "--dry-sequence-breakers .* is not allowed"),  # was "Error"
    # a list, an object or true for a number was named as a number out of range ("--ar-temp 1 is not allowed")
    (dict(ar_temp=[1]), r"--ar-temp \[1\]: expected a number"),
    (dict(top_k={}), r"--top-k \{\}: expected an integer"),
    (dict(stream_chunk="half"), "Stream chunk must be a number, got 'half'"),
    (dict(stream_chunk="0"), r"--stream-chunk 0 is not allowed"),
    (dict(stream_chunk=[1]), r"Stream chunk must be a number, got \[1\]"),
    (dict(random_voice="false"), "Random voice must be true or false, got 'false'"),  # was read as ticked
    (dict(ar_temperature=0.5), "unknown sampler setting 'ar_temperature'"),  # was ignored without a word
])
def test_what_the_api_may_send_that_the_page_would_not_is_a_message(tiny, inputs, message):
    """The page's API takes any JSON: a null text or language, a seed the page's number field cannot hold."""
    demo = webui.Demo(*tiny)
    demo.outputs = {name: name for name in ("audio", "seed", "duration", "elapsed")}
    with pytest.raises(webui.gr.Error, match=message) as raised:
        list(demo.speak(**{"text": "Hello there.", "random_voice": True, "max_ar_steps": 3, **inputs}))
    assert not raised.value.print_exception  # a user's mistake: no traceback in the server's log either


def test_the_stt_seed_shown_repeats_the_transcription(tiny, prompt_wav):
    """The speech-to-text tab sampled from the process's random state, and said no seed: a transcription could not be
    repeated, on the page or with the CLI's `--task stt --seed`."""
    demo = webui.Demo(*tiny)

    def transcribe(seed: int) -> tuple[str, int]:
        return list(demo.transcribe(str(prompt_wav), seed=seed, ar_temp=1.0, max_ar_steps=12))[-1]

    ipa, shown = transcribe(-1)
    assert transcribe(shown) == (ipa, shown)
    assert transcribe(str(shown)) == (ipa, shown)  # the API's text, read as the sampler controls' text is (was refused)
    assert {transcribe(seed)[0] for seed in range(shown + 1, shown + 4)} != {ipa}
    model, processor = tiny
    text_ids = model.generate(**processor(audio=[str(prompt_wav)]), task="stt", seeds=[shown], temperature=1.0,
                              max_new_tokens=12)
    assert processor.decode(text_ids[0]) == ipa


def test_a_seed_is_any_whole_number_the_page_can_show():
    """The page's number field hands over a float: 7.0 is the CLI's --seed 7, an int."""
    seeds = [webui._seed(seed) for seed in (0.0, 7.0, float(webui.MAX_PAGE_SEED))]
    assert seeds == [0, 7, webui.MAX_PAGE_SEED] and {type(seed) for seed in seeds} == {int}



def test_the_tab_title_names_the_model_without_markdown(tiny):
    assert webui.build_page(*tiny, "`tiny-random`, an installation check").title == \
        "VALL-E: tiny-random, an installation check"


def test_a_fraction_in_a_whole_number_field_is_refused_not_rounded(tiny):
    """The page ran --max-ar-steps 3.7 as 4 steps and seed 2.5 as seed 2 without a word: its integer fields rounded
    what was typed before the page's checks, which refuse it as the CLI does, could see it."""
    page = webui.build_page(*tiny, "`tiny-random`")
    fields = {block.label: block for block in page.blocks.values() if isinstance(block, webui.gr.Number)}
    demo = webui.Demo(*tiny)
    demo.outputs = {name: name for name in ("audio", "seed", "duration", "elapsed")}
    for label, name, message in [("Seed", "seed", "Seed must be a whole number"),
                                 ("max ar steps (--max-ar-steps)", "max_ar_steps", "--max-ar-steps 3.7: expected an "
                                                                                   "integer"),
                                 ("top k (--top-k)", "top_k", "--top-k 3.7: expected an integer")]:
        typed = fields[label].preprocess(3.7)  # what the page hands the run
        with pytest.raises(webui.gr.Error, match=message):
            list(demo.speak(**{"text": TEXT, "random_voice": True, "max_ar_steps": 2, name: typed}))


def test_the_language_switch_control_reaches_the_phonemes(tiny):
    """espeak marks the English word in French text with (en)...(fr); "remove" drops the markers."""
    demo = webui.Demo(*tiny)
    demo.outputs = {name: name for name in ("audio", "seed", "duration", "elapsed")}
    calls = _processor_calls(demo)
    for switch in ("keep", "remove"):
        list(demo.speak("J'aime le football.", language="fr", language_switch=switch, random_voice=True,
                        max_ar_steps=2))
    seen = [batch["input_ids"] for _, batch in calls]
    assert seen[0].shape != seen[1].shape or not torch.equal(seen[0], seen[1])


@pytest.mark.parametrize("run", ["streamed", "beam search", "stt"])
def test_leaving_the_page_ends_the_run(tiny, prompt_wav, monkeypatch, run):
    """A run that does not stream (beam search, speech-to-text) went on to its end after the page was left: Gradio
    can close a generator only where it yields."""
    monkeypatch.setattr(webui, "POLL_SECONDS", 0.05)
    runs, generation = [], webui.Generation
    monkeypatch.setattr(webui, "Generation", type("Recorded", (generation,), {
        "start": lambda self: (runs.append(self), generation.start(self))}))
    demo = webui.Demo(*tiny)
    demo.outputs = {name: name for name in ("stream", "audio", "seed", "duration", "elapsed")}
    long = dict(ar_temp=0, max_ar_steps=3000)
    if run == "stt":
        updates = demo.transcribe(str(prompt_wav), **long)
    else:
        updates = demo.speak(TEXT, random_voice=True, beam_width=2 if run == "beam search" else 1, **long)
    assert next(updates) == webui.gr.skip()  # before the run starts
    assert set(next(updates)) <= {"stream", "__type__"}  # a piece of speech, or an update that changes nothing
    assert [thread for thread in threading.enumerate() if isinstance(thread, webui.Generation)]  # under way
    updates.close()  # what Gradio does when the browser goes away
    assert not [thread for thread in threading.enumerate() if isinstance(thread, webui.Generation)]
    assert len(runs) == 1 and isinstance(runs[0].error, webui.RunCancelled)  # ended by the close, not by its steps


def test_a_run_left_going_by_a_cancel_ends_before_the_next_one_starts(tiny, monkeypatch):
    """Gradio frees the model's queue slot at a cancel, but closes the cancelled run's generator only at its next
    update: the next run started on the model beside the one left going."""
    runs, alive_at_start, generation = [], [], webui.Generation

    def start(self):
        alive_at_start.append([run.is_alive() for run in runs])
        runs.append(self)
        generation.start(self)

    monkeypatch.setattr(webui, "Generation", type("Recorded", (generation,), {"start": start}))
    demo = webui.Demo(*tiny)
    demo.outputs = {name: name for name in ("audio", "seed", "duration", "elapsed")}
    cancelled = demo.speak(TEXT, random_voice=True, ar_temp=0, max_ar_steps=3000)
    try:
        next(cancelled), next(cancelled)  # under way; then left as Gradio leaves it, not closed
        assert runs[0].is_alive()
        list(demo.speak(TEXT, random_voice=True, max_ar_steps=2))
        assert alive_at_start == [[], [False]] and isinstance(runs[0].error, webui.RunCancelled)
    finally:
        cancelled.close()


def test_a_run_cancelled_after_a_steps_layers_gives_no_result(tiny, prompt_wav, monkeypatch):
    """A cancel that came after a step's decoder layers had run ended the AR through the stopping criterion, and a
    speech-to-text run (nothing runs after its AR) returned its cut-short transcription as if it had ended: the test
    of a page left mid-run failed whenever the cancel fell there."""
    progress = webui.StepProgress.__call__

    def cancel_at_the_second_step(self, input_ids, scores, **kwargs):
        if self.done == 1:  # this step's layers have run: only the stopping criterion can see the cancel now
            self.stop.set()
        return progress(self, input_ids, scores, **kwargs)

    monkeypatch.setattr(webui.StepProgress, "__call__", cancel_at_the_second_step)
    runs, generation = [], webui.Generation
    monkeypatch.setattr(webui, "Generation", type("Recorded", (generation,), {
        "start": lambda self: (runs.append(self), generation.start(self))}))
    demo = webui.Demo(*tiny)
    with pytest.raises(webui.RunCancelled):
        list(demo.transcribe(str(prompt_wav), ar_temp=0, max_ar_steps=50))
    assert len(runs) == 1 and runs[0].output is None


@pytest.mark.parametrize("tab", ["tts", "stt"])
def test_a_run_yields_before_it_starts_so_that_it_can_be_cancelled_at_once(tiny, prompt_wav, tab):
    """Gradio registers a run's generator, which Stop (or a page left) closes, only at its first update: a Stop
    before the first streamed piece was lost, and the run held the model to its end."""
    demo = webui.Demo(*tiny)
    demo.outputs = {name: name for name in ("stream", "audio", "seed", "duration", "elapsed")}
    long = dict(ar_temp=0, max_ar_steps=3000)
    updates = demo.transcribe(str(prompt_wav), **long) if tab == "stt" else demo.speak(TEXT, random_voice=True, **long)
    assert next(updates) == webui.gr.skip()
    assert not [thread for thread in threading.enumerate() if isinstance(thread, webui.Generation)]
    updates.close()


def _free_port() -> int:
    """A port nothing listens on now: the address is checked before the model loads, so 7860 must not be needed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_command_line_mistakes_end_with_one_error_line(tmp_path, capsys, monkeypatch):
    """A port out of range ended with a traceback from the socket once the model had loaded."""
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    for argv, environment, message in [
        (["--port", "many"], None, "argument --port: invalid int value"),
        (["--model", str(tmp_path / "missing"), "--port", str(_free_port())], None, "model not found"),
        (["--port", "99999"], None, "--port 99999 is not a port: give one in 1..65535"),
        (["--port", "-5"], None, "--port -5 is not a port"),
        ([], "70000", "GRADIO_SERVER_PORT=70000 is not a port"),
        (["--port", "8000"], "abc", "GRADIO_SERVER_PORT='abc' is not a port number"),  # gradio reads it on import
        # a name the resolver's idna codec refuses ended with its UnicodeError's traceback
        (["--host", "..", "--port", str(_free_port())], None, "cannot serve on ..:"),
        (["--host", "a" * 64, "--port", str(_free_port())], None, "(encoding with 'idna' codec failed"),
        (["--host", "", "--model", str(tmp_path / "missing")], None, "argument --host: is empty"),  # it served on
        # 127.0.0.1: an empty one is most often an unset shell variable
    ]:
        if environment is not None:
            monkeypatch.setenv("GRADIO_SERVER_PORT", environment)
        assert app.main(argv) == 1
        monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_a_port_is_one_of_1_to_65535_from_either_source(monkeypatch):
    """Port 0 asks the system for any free port, one the user would not know to open; 65535 is a port."""
    from valle_hf.errors import UsageError

    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    assert (app._port(1), app._port(app.MAX_PORT)) == (1, app.MAX_PORT)
    with pytest.raises(UsageError, match="^--port 0 is not a port: give one in 1..65535"):
        app._port(0)
    monkeypatch.setenv("GRADIO_SERVER_PORT", "0")
    with pytest.raises(UsageError, match="^GRADIO_SERVER_PORT=0 is not a port"):
        app._port(None)
    assert app._port(app.MAX_PORT) == app.MAX_PORT  # --port wins over the variable


def test_the_command_serves_on_the_address_it_checked(tiny, monkeypatch):
    """The host and port checked free are those handed to Gradio (without --port, 7860: Gradio given none would
    serve on the next free port after one in use)."""
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    checked, served = [], []
    monkeypatch.setattr(app, "_check_free", lambda host, port: checked.append((host, port)))
    loaded = SimpleNamespace(describe=lambda: "precision: as loaded")
    monkeypatch.setattr(app, "load_model", lambda args: (*tiny, loaded))
    monkeypatch.setattr(app, "_launch", lambda page, host, port: served.append((host, port)))
    assert app.main(["--model", "tiny-random"]) == 0
    assert app.main(["--model", "tiny-random", "--host", "0.0.0.0", "--port", "8123"]) == 0
    assert served == checked == [(None, 7860), ("0.0.0.0", 8123)]


def test_the_page_is_served_until_it_stops_then_closed_and_a_failed_launch_is_one_error(monkeypatch):
    """Gradio's launch fails with an OSError where the address went in use after the check: one `error:` line."""
    class Page:
        def __init__(self, polls: int, error: OSError | None = None):
            self.polls, self.error, self.closed = polls, error, False

        def launch(self, server_name, server_port, prevent_thread_lock):
            if self.error:
                raise self.error

        @property
        def is_running(self):
            self.polls -= 1
            return self.polls >= 0

        def close(self):
            self.closed = True

    monkeypatch.setattr(app.time, "sleep", lambda seconds: None)
    page = Page(polls=3)
    app._launch(page, None, 8123)
    assert page.polls == -1 and page.closed  # asked until it stopped running
    with pytest.raises(app.ServerError, match=r"^cannot serve on 127.0.0.1:8123 \(\[Errno 98\] Address already in"):
        app._launch(Page(polls=0, error=OSError(98, "Address already in use")), None, 8123)


def test_the_page_is_served_on_one_port_only(monkeypatch):
    """Without --port, $GRADIO_SERVER_PORT or 7860, never Gradio's search for the next free port after one in use."""
    class Page:
        is_running = False  # served, then stopped at once

        def launch(self, server_name, server_port, prevent_thread_lock):
            ports.append(server_port)

        def close(self):
            pass

    ports = []
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    app._launch(Page(), None, app._port(None))
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    app._launch(Page(), None, app._port(None))
    app._launch(Page(), None, app._port(8123))
    assert ports == [7860, 7999, 8123]
    monkeypatch.setenv("GRADIO_SERVER_PORT", "many")
    with pytest.raises(ValueError, match="GRADIO_SERVER_PORT='many' is not a port number"):
        app._port(None)


def test_a_port_in_use_ends_with_one_error_line_before_the_model_loads(capsys, monkeypatch):
    """Gradio found the port in use at launch, after the model's load (minutes for the released model)."""
    monkeypatch.setattr(app, "load_model", lambda *args: pytest.fail("the model loaded before the port was checked"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert app.main(["--model", "tiny-random", "--host", "127.0.0.1", "--port", str(port)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: cannot serve on 127.0.0.1:{port}"), err


def test_the_address_checked_is_the_one_served(capsys, monkeypatch):
    """Without --host the page is served on $GRADIO_SERVER_NAME, but 127.0.0.1 was checked (and named in the error);
    Gradio's spelling of an IPv6 address, "[::1]", was refused as an unknown host."""
    monkeypatch.setattr(app, "load_model", lambda *args: pytest.fail("the model loaded before the address was checked"))
    monkeypatch.setenv("GRADIO_SERVER_NAME", "192.0.2.1")  # TEST-NET-1: documentation's address, no machine's
    assert app.main(["--model", "tiny-random", "--port", "8123"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot serve on 192.0.2.1:8123"), err
    assert app._serving_host("127.0.0.1") == "127.0.0.1"  # --host wins over the variable, as in Gradio
    with socket.socket(socket.AF_INET6) as probe:
        try:
            probe.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback here")
        port = probe.getsockname()[1]
    app._check_free("[::1]", port)


@pytest.mark.parametrize("tab", ["tts", "stt"])
def test_a_control_without_its_switch_is_warned_about_but_not_one_left_at_its_default(tiny, prompt_wav, monkeypatch,
                                                                                      tab):
    """The page sends every control: left alone, --dry-base (1.75) without --dry-multiplier is no choice of the user."""
    shown = []
    monkeypatch.setattr(webui.gr, "Warning", shown.append)
    demo = webui.Demo(*tiny)
    demo.outputs = {name: name for name in ("audio", "seed", "duration", "elapsed")}
    controls = dict(demo.control_defaults[tab], max_ar_steps=3)

    def run(**controls):
        updates = demo.transcribe(str(prompt_wav), **controls) if tab == "stt" else demo.speak(
            "Hi there.", random_voice=True, **controls)
        list(updates)

    run(**controls)
    assert not [message for message in shown if "has no effect" in message], shown
    run(**{**controls, "dry_base": 2.0})
    assert [message for message in shown if "has no effect" in message] == [
        "--dry-base has no effect without --dry-multiplier > 0: set --dry-multiplier, or drop --dry-base"]


def test_a_revision_without_a_model_is_refused_not_shown():
    """build_demo(revision=...) loaded the released model as it is and said on the page it ran at that revision."""
    from valle_hf.errors import VallEValueError

    with pytest.raises(VallEValueError, match="picks a version of a Hub id, and the released model is not one"):
        app.build_demo(revision="v1")


class _StopAtTheFirstStep(StoppingCriteria):
    """Cancels the run (as Stop does) at its first AR step, and ends the AR there."""

    def __init__(self, stop: threading.Event):
        self.stop = stop

    def __call__(self, input_ids, scores, **kwargs):
        self.stop.set()
        return torch.ones(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def _cancelled_run(tiny, prompt_wav, stop, watches, streamer, **settings) -> webui.Generation:
    """A run of the page's on TEXT, 4 AR steps at most, that `stop` cancels: it ends in `RunCancelled`. The hooks of
    `watches` are removed after it."""
    model, processor = tiny
    try:
        inputs = processor(TEXT, prompt_audio=str(prompt_wav))
        generation = webui.Generation(model, streamer, stop, **inputs, max_new_tokens=4, **settings)
        generation.start()
        with pytest.raises(webui.RunCancelled):
            generation.result()
    finally:
        for watch in watches:
            watch.remove()
    return generation


@pytest.mark.parametrize("backend", ["vocos", "encodec"])
@pytest.mark.parametrize("cancelled", ["at the AR", "at the last NAR level"])
def test_a_cancelled_run_ends_before_its_nar_levels_and_its_audio_decoding(tiny, prompt_wav, backend, cancelled):
    """Only the AR steps read the run's stop (a stopping criterion): the NAR levels and the audio decoding after it,
    most of a long text's time, ran to their end after a Stop (a minute for 2,000 sentences)."""
    model = tiny[0]
    stop, heads = threading.Event(), []
    last = model.classifiers[model.config.num_rvq_levels - 1]
    watches = [*(head.register_forward_pre_hook(lambda module, args: heads.append(stop.is_set()))
                 for head in model.classifiers),
               model.vocoder.register_forward_pre_hook(lambda *_: pytest.fail("vocoder ran")),
               model.codec_model.decoder.layers[0].register_forward_pre_hook(
                   lambda *_: pytest.fail("codec decoder ran"))]
    if cancelled == "at the last NAR level":
        watches.append(last.register_forward_hook(lambda *_: stop.set()))
    criteria = StoppingCriteriaList([_StopAtTheFirstStep(stop)] if cancelled == "at the AR" else [])
    generation = _cancelled_run(tiny, prompt_wav, stop, watches, None, audio_backend=backend,
                                stopping_criteria=criteria)
    assert True not in heads  # no head ran after the stop: AR steps, NAR levels
    assert not any(module._forward_pre_hooks for module in generation._checkpoints())  # the run's checks removed


def test_a_cancelled_streamed_run_ends_within_its_encodec_decoding(tiny, prompt_wav):
    """A streamed run decodes EnCodec audio through `codec.DecoderStream`, which calls the decoder's layers, never
    the decoder itself: a Stop during a chunk's decoding waited for every row's (a long text's final chunks, one row
    after the other, after the AR's last step)."""
    layers, stop, after = tiny[0].codec_model.decoder.layers, threading.Event(), []
    watches = [layers[0].register_forward_pre_hook(lambda *_: stop.set()),  # cancelled as the decoding starts
               layers[-1].register_forward_pre_hook(lambda *_: after.append(stop.is_set()))]
    _cancelled_run(tiny, prompt_wav, stop, watches, AudioIteratorStreamer(), audio_backend="encodec")
    assert True not in after  # the decoder's last layer did not run after the stop


class _CancelAndRunAnother(StoppingCriteria):
    """Cancels its own run at its first AR step and, while that run's checks are still on the model, runs another
    on the same model to its end (as a run started while a stopped one winds down would)."""

    def __init__(self, stop: threading.Event, **other):
        self.stop, self.other, self.others = stop, other, []

    def __call__(self, input_ids, scores, **kwargs):
        self.stop.set()
        other = webui.Generation(stop=threading.Event(), **self.other)
        other.start()
        other.join()
        self.others.append(other)
        return torch.ones(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def test_cancelling_a_run_leaves_another_run_on_the_same_model_going(tiny, prompt_wav):
    """The checks a run adds are on the shared model's modules: a cancelled run's checks raised `RunCancelled` in
    every run that reached them, the one that was not cancelled too."""
    model, processor = tiny
    other = dict(model=model, streamer=None, **processor(TEXT, prompt_audio=str(prompt_wav)), max_new_tokens=4)
    stop = threading.Event()
    cancel = _CancelAndRunAnother(stop, **other)
    cancelled = webui.Generation(stop=stop, stopping_criteria=StoppingCriteriaList([cancel]), **other)
    cancelled.start()
    with pytest.raises(webui.RunCancelled):
        cancelled.result()
    assert len(cancel.others) == 1 and cancel.others[0].error is None and cancel.others[0].output is not None
