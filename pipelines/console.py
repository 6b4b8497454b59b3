"""What the command line prints besides odlite's own lines: TensorFlow's logs and progress bars.

TensorFlow writes notices a user can do nothing about on every start (no CUDA driver on a
CPU machine, oneDNN and CPU-instruction notices, Keras' note that a feature map it was
handed goes unused). The CLI hides them unless ``--verbose``; odlite's own warnings (a
clipped box, a field written with its default) are printed by odlite and always stay.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings

from tqdm import tqdm

# Seconds between progress lines when stderr is a log file rather than a terminal.
LOG_FILE_INTERVAL = 60.0

_NOISE = (
    r"Input dict contained keys",  # Keras: the FPN's input dict carries levels it does not use
    r".*tf\.function retracing",
)


def quiet_tensorflow(verbose: bool) -> None:
    """Hide TensorFlow's start-up notices and known-harmless warnings; call before TensorFlow is imported.

    A TF_CPP_MIN_LOG_LEVEL the user set is kept.
    """
    if verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # also the cuInit "error" of a machine without a GPU
    for message in _NOISE:
        warnings.filterwarnings("ignore", message=message)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # absl comes with TensorFlow; without it there is nothing to quiet
        pass


@contextlib.contextmanager
def native_stderr(shown: bool):
    """Unless ``shown``, hide what C++ code writes to file descriptor 2 during the block.

    TensorFlow's C++ side (the TFLite converter's MLIR passes: "Ignored output_format",
    "fully_quantize: 0, ...") writes straight to fd 2, past Python's logging and even
    TF_CPP_MIN_LOG_LEVEL=3, so fd 2 itself is pointed at a temporary file for the block and put
    back after. Should the block fail, what was caught is written out, since it may say why.
    """
    if shown:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                caught.seek(0)
                sys.stderr.write(caught.read().decode(errors="replace"))


def progress_bar(**kwargs) -> tqdm:
    """tqdm as odlite uses it: redrawn in place on a terminal, an occasional line in a log file."""
    if not sys.stderr.isatty():
        kwargs.update(mininterval=LOG_FILE_INTERVAL, maxinterval=LOG_FILE_INTERVAL, ncols=100)
    else:
        kwargs.setdefault("dynamic_ncols", True)
    return tqdm(**kwargs)
