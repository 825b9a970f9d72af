"""The web demo as a Hugging Face Space runs it (`python app.py`): `python -m valle_hf.app` with its options, by
default the released model, served where the Space says ($GRADIO_SERVER_NAME, $GRADIO_SERVER_PORT)."""

import sys

from valle_hf.app import main

if __name__ == "__main__":
    sys.exit(main())
