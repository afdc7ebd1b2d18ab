"""prm.console in one process: a library's own console handler is refused and its records go to the log file;
--verbose shows them on the console too; our warnings still show once; teardown leaves nothing behind."""

from __future__ import annotations

import logging
import os
import sys
import warnings

import pytest

from prm import console


@pytest.fixture
def quiet(tmp_path):
    saved = {k: os.environ.get(k) for k in (console.LOG_FILE_ENV, console.VERBOSE_ENV)}
    for key in saved:
        os.environ.pop(key, None)
    yield tmp_path / "prm.log"
    console.teardown()
    for key, value in saved.items():
        if value is not None:
            os.environ[key] = value


def _library_logger(name: str) -> logging.Logger:
    """A logger set up the way transformers and DeepSpeed set theirs: own stderr/stdout handler, no propagation."""
    logger = logging.getLogger(name)
    logger.addHandler(logging.StreamHandler(sys.stderr))
    logger.addHandler(logging.StreamHandler(sys.stdout))
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_library_chatter_goes_to_the_log_file_only(quiet, capfd):
    console.setup()
    lib = _library_logger("transformers")
    ds = _library_logger("DeepSpeed")
    lib.warning("LlamaForTokenClassification LOAD REPORT from: tiny")
    ds.warning("Setting accelerator to CPU.")  # before the file is named: kept, then written
    assert console.use_log_file(quiet) == quiet.resolve()
    assert os.environ[console.LOG_FILE_ENV] == str(quiet.resolve())
    logging.getLogger("vllm.engine").info("INFO vllm engine started")
    logging.getLogger("some_other_library").warning("a warning of a library we do not route")
    out, err = capfd.readouterr()
    assert "LOAD REPORT" not in out + err and "Setting accelerator" not in out + err and "vllm" not in out + err
    assert "a warning of a library we do not route" in err  # what Python shows by default still shows
    log = quiet.read_text()
    assert "LOAD REPORT" in log and "Setting accelerator" in log and "vllm engine started" in log
    console.teardown()
    assert console.LOG_FILE_ENV not in os.environ  # nothing leaks into the next command or test


def test_verbose_shows_the_chatter_on_the_console_too(quiet, capfd):
    console.setup(verbose=True)
    console.use_log_file(quiet)
    _library_logger("DeepSpeed").warning("Setting accelerator to CPU.")
    _, err = capfd.readouterr()
    assert "Setting accelerator" in err and "Setting accelerator" in quiet.read_text()
    assert os.environ[console.VERBOSE_ENV] == "1"  # the stages prm run starts are verbose as well


def test_python_warnings_of_libraries_are_filed_ours_shown_once(quiet, capfd):
    console.setup()
    console.use_log_file(quiet)
    warnings.warn_explicit("a library's deprecation", UserWarning, "/site-packages/somelib/x.py", 3)
    ours = os.path.join(os.path.dirname(console.__file__), "generation.py")
    for _ in range(2):
        warnings.warn_explicit("fell back to free text", UserWarning, ours, 10 + _)
    _, err = capfd.readouterr()
    assert "a library's deprecation" not in err and err.count("fell back to free text") == 1
    assert "a library's deprecation" in quiet.read_text()


def test_no_file_is_made_until_a_line_is_written(quiet):
    console.setup()
    console.use_log_file(quiet.parent / "later" / "prm.log")
    assert not (quiet.parent / "later").exists()  # a command refused before any library spoke leaves no folder
