"""`python -m valle_hf.app`: the web demo (a Gradio page, `valle_hf.webui`) for people who would rather click.

One model per process, loaded once at start-up, before the server starts; the page's requests wait in Gradio's queue
and run one at a time, so any number of browser tabs share that one model. Gradio is an optional extra
(`pip install -e ".[webui]"`); without it, and for any other mistake on the command line (an unknown flag, a model
that cannot be loaded, a port in use), the command ends with one `error:` line and exit status 1.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time

from .cli import add_model_arguments, check_device, load_model
from .errors import (
    ArgumentParser,
    MissingDependencyError,
    UsageError,
    VallEError,
    entry_point,
    get_logger,
    named,
    one_line,
)
from .loading import RELEASED_FOLDER, TINY_RANDOM, load_model_and_processor

__all__ = ["build_demo", "build_parser", "main"]

logger = get_logger(__name__)

MAX_PORT = 65535


class ServerError(VallEError, OSError):
    """The web server could not start where it was asked to (a port in use, an address not of this machine)."""


def _webui():
    """The page's module, which needs the optional gradio package."""
    try:
        from . import webui
    except ImportError as error:
        raise MissingDependencyError(f'the web demo needs gradio ({error}): pip install -e ".[webui]"') from None
    return webui


def build_parser() -> ArgumentParser:
    """The demo's arguments: which model (as the CLI's `--model` and its companions), where it runs, where to serve."""
    parser = ArgumentParser(prog="python -m valle_hf.app", description="A web page for VALL-E text-to-speech "
                            "(with a voice prompt, streamed as it is generated) and speech-to-text.")
    add_model_arguments(parser)
    add = parser.add_argument
    add("--host", type=named, default=None, help="address to serve on [127.0.0.1, or $GRADIO_SERVER_NAME]")
    add("--port", type=int, default=None, help="port to serve on [7860, or $GRADIO_SERVER_PORT]")
    return parser


def build_demo(model=None, processor=None, model_name: str | None = None, revision: str | None = None):
    """The demo page (a `gradio.Blocks`, queue set up) for a loaded model and processor; without them, for the
    released model (downloaded and converted on first use). For a Hugging Face Space: `build_demo().launch()`.
    `model_name` (what `--model` said) and `revision` (`--revision`: its branch, tag or commit) name the model on the
    page; a revision without a model is refused (`VallEValueError`), as the released model has none to pick.

    The audio also plays while it is generated when ffmpeg is installed (Gradio encodes that stream with it);
    without ffmpeg it plays when complete.
    """
    webui = _webui()
    if model is None:
        model, processor = load_model_and_processor(None, revision=revision)
        model_name = model_name or RELEASED_FOLDER
    stream = shutil.which("ffmpeg") is not None
    if not stream:
        logger.warning("ffmpeg not found: the page plays the audio once complete (install ffmpeg to hear it while "
                       "it is generated)")
    described = _describe(model_name, revision) if model_name else "a model given in Python"
    return webui.build_page(model, processor, described, stream=stream)


def _describe(model_name: str, revision: str | None = None) -> str:
    """How the page names the model (Markdown)."""
    if model_name == TINY_RANDOM:
        return f"`{TINY_RANDOM}`, an installation check: it makes noise, not speech"
    return f"`{model_name}`" + (f" at revision `{revision}`" if revision else "")


def _port(port: int | None) -> int:
    """--port, else $GRADIO_SERVER_PORT, else 7860: always one port, since Gradio given none serves on the next free one
    after a port in use, where the user would not look. Raises `UsageError` for a number that is not a port, and for a
    $GRADIO_SERVER_PORT that is not a number even with --port (Gradio reads it when it is imported)."""
    value = os.environ.get("GRADIO_SERVER_PORT")
    try:
        preset = None if value is None else int(value)
    except ValueError:
        raise UsageError(f"GRADIO_SERVER_PORT={value!r} is not a port number: set it to one, or unset it and give "
                         "--port") from None
    chosen = port if port is not None else preset if preset is not None else 7860
    if not 1 <= chosen <= MAX_PORT:
        given = f"--port {chosen}" if port is not None else f"GRADIO_SERVER_PORT={chosen}"
        raise UsageError(f"{given} is not a port: give one in 1..{MAX_PORT}")
    return chosen


def _serving_host(host: str | None) -> str:
    """The address Gradio serves on: --host, else $GRADIO_SERVER_NAME, else 127.0.0.1; an IPv6 address without the
    brackets a URL writes around it ("[::1]" is "::1"), as Gradio strips them."""
    chosen = host or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    return chosen[1:-1] if chosen.startswith("[") and chosen.endswith("]") else chosen


def _check_free(host: str | None, port: int) -> None:
    """Refuse (`ServerError`), before the model loads, an address that cannot be served on: a port in use, a host
    that is not of this machine. Gradio finds out only at launch, after a load that may take minutes. Each of the
    host's addresses is tried as the server binds it (asyncio's `create_server`: all of them, IPv6 apart from IPv4)."""
    serving = _serving_host(host)
    try:
        for family, kind, protocol, _, address in socket.getaddrinfo(serving, port, type=socket.SOCK_STREAM,
                                                                     flags=socket.AI_PASSIVE):
            with socket.socket(family, kind, protocol) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port closed a moment ago is free
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                probe.bind(address)
    except (OSError, UnicodeError) as error:  # UnicodeError: a name the idna codec refuses ("..", a 64-letter label)
        raise _cannot_serve(host, port, error) from None


def _launch(page, host: str | None, port: int) -> None:
    """Serve `page` until Ctrl-C or SIGTERM, which end the command as they end every command (`entry_point`: one
    line, status 130 or 143). Gradio's own wait took either for a normal end: its own line, and status 0."""
    try:
        page.launch(server_name=host, server_port=port, prevent_thread_lock=True)
    except OSError as error:
        raise _cannot_serve(host, port, error) from None
    try:
        while page.is_running:
            time.sleep(0.1)
    finally:
        page.close()


def _cannot_serve(host: str | None, port: int, error: OSError | UnicodeError) -> ServerError:
    return ServerError(f"cannot serve on {_serving_host(host)}:{port} ({one_line(error)}): choose another --port or "
                       "--host")


@entry_point()
def main(argv: list[str] | None = None) -> int:
    """Load the model and serve the page until interrupted; returns the exit status (1 with one `error:` line on
    stderr for a user's mistake)."""
    args = build_parser().parse_args(argv)
    port = _port(args.port)
    _check_free(args.host, port)
    _webui()  # before the model loads: a missing gradio should not cost a download first
    check_device(args)
    model, processor, precision = load_model(args)
    print(precision.describe(), file=sys.stderr)  # as the CLI prints it: a line of output, not a warning
    name = args.model or (f"the checkpoint {args.yaml} names" if args.yaml else RELEASED_FOLDER)  # as load_model
    _launch(build_demo(model, processor, name, args.revision), args.host, port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
