"""A quiet console: each stage prints its own progress and summary; library chatter goes to a log file.

    prm run configs/quickstart.yaml              # chatter in runs/quickstart/prm.log
    prm run configs/quickstart.yaml --verbose    # ... and on the console as well
    prm sample --config C.yaml -o out/samples.jsonl   # chatter in out/prm.log (the output's folder)

Chatter is what the libraries say on their own: transformers' LOAD REPORT tables and resize notices
(`mean_resizing`), its weight-loading and shard-writing progress bars, DeepSpeed's "Setting accelerator"
lines and config dumps, vLLM's INFO lines, torch's distributed messages, and Python `warnings` raised
inside libraries. Their loggers are turned into `_RoutedLogger`s before the libraries import them, so the
console handlers the libraries attach are refused and every record reaches the root logger, whose handler
writes the log file (`prm.log` in the run directory, or in the folder of the command's output). Warnings
our own code gives (a fallback, a refused constraint field, dropped examples) are printed by that code on
stderr and stay on the console; a Python warning raised in our own files is shown once too. Loggers of
other libraries keep their WARNING-and-above lines on the console, as Python's default does.

`setup()` runs first in `prm.app.cli.main`, before any library is imported, and `teardown()` when the
command ends; `use_log_file()` names the file once the command knows where it writes. Records wait in
memory until the file is named and its folder exists (the command makes it when it writes its output);
a command that never gets there (bad input refused up front, `prm config get`) writes no log and makes no
folder, and what it logged is dropped (`--verbose` shows it). The settings
travel to the commands `prm run` starts, and to torchrun workers, through the environment: `PRM_LOG_FILE`
(the file every process appends to) and `PRM_VERBOSE=1`. Messages that the C++ side of torch writes
straight to stderr cannot be routed: without `--verbose` they are limited to errors (`TORCH_CPP_LOG_LEVEL`).
A leaf of the library: it imports nothing of prm.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import tempfile
from importlib.util import find_spec
from pathlib import Path

LOG_FILE_ENV = "PRM_LOG_FILE"
VERBOSE_ENV = "PRM_VERBOSE"
LOG_NAME = "prm.log"

# Loggers whose output is chatter (each covers its children: "torch" covers "torch.distributed").
ROUTED = ("transformers", "DeepSpeed", "deepspeed", "vllm", "torch", "accelerate", "peft", "datasets",
          "huggingface_hub", "httpx", "httpcore", "urllib3", "filelock", "py.warnings")

# Environment read by the libraries when they import; set only where the user has not set it.
QUIET_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' "Loading weights" / "Writing model shards" bars
    "TORCH_CPP_LOG_LEVEL": "ERROR",  # c10 / gloo warnings written by C++ to stderr: not routable, so limited
}

_VLLM_CONFIG_PREFIX = "prm-vllm-logging-"
_FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s: %(message)s"


def _routed(name: str) -> bool:
    return name in ROUTED or name.split(".")[0] in ROUTED


class _RoutedLogger(logging.Logger):
    """The logger class while `setup()` is in force. For a library's logger (a name under ROUTED), console
    handlers it attaches are refused and its records always go on to the root logger (a library's
    `propagate = False` is ignored), whose handlers decide where they show; any other logger is a plain one."""

    @property  # type: ignore[override]
    def propagate(self) -> bool:
        return True if _file_handler is not None and _routed(self.name) else self._propagate

    @propagate.setter
    def propagate(self, value: bool) -> None:
        self._propagate = value

    def addHandler(self, hdlr: logging.Handler) -> None:  # noqa: N802 - logging's name
        if _file_handler is not None and _routed(self.name) and (_is_console(hdlr) or _is_our_file(hdlr)):
            return  # our file gets the record from the root already
        super().addHandler(hdlr)


def _is_console(handler: logging.Handler) -> bool:
    stream = getattr(handler, "stream", None)
    return (isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
            and stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__))


def _is_our_file(handler: logging.Handler) -> bool:
    return isinstance(handler, _LogFile)


class _LogFile(logging.Handler):
    """Appends every record to the log file. Records wait in memory until the file is named and its folder
    exists: the folder is the command's output folder, which the command makes when it first writes, so a
    command refused before writing anything (bad input) leaves no folder behind."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter(_FORMAT))
        self.path: Path | None = None
        self._pending: list[logging.LogRecord] = []

    def open(self, path: Path) -> None:
        self.path = path
        self.write_pending()

    def write_pending(self) -> None:
        """Write the records that waited, once the folder is there (teardown() calls it a last time)."""
        if self.path is None or not self.path.parent.is_dir() or not self._pending:
            return
        pending, self._pending = self._pending, []
        try:  # one open per batch: several processes (torchrun workers, prm run's stages) append to it
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.writelines(self.format(record) + "\n" for record in pending)
        except OSError:
            self.handleError(pending[-1])

    def emit(self, record: logging.LogRecord) -> None:
        self._pending.append(record)
        self.write_pending()


class _ConsoleFilter(logging.Filter):
    """What reaches the console without --verbose: WARNING and above from loggers that are not chatter, and
    Python warnings raised in our own files; each message once."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()
        self.ours = _our_folders()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        top = record.name.split(".")[0]
        if record.name == "py.warnings":
            if not any(str(record.args[0] if record.args else record.msg).startswith(f) for f in self.ours):
                return False
        elif record.name in ROUTED or top in ROUTED:
            return False
        message = record.getMessage()
        if record.name == "py.warnings":  # "path:line: Category: text\n  source": once per text, not per line
            message = re.sub(r"^.*?:\d+: ", "", message).split("\n")[0]
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


def _our_folders() -> tuple[str, ...]:
    """The source folders of prm and its stage packages (a Python warning from there is ours)."""
    folders = [str(Path(__file__).resolve().parent)]
    for name in ("prm.data_synthesis", "prm.train", "prm.eval"):
        spec = find_spec(name)
        folders += [str(Path(p).resolve()) for p in (spec.submodule_search_locations or [])] if spec else []
    return tuple(folders)


_file_handler: _LogFile | None = None
_console_handler: logging.Handler | None = None
_verbose = False
_saved_env: dict[str, str | None] = {}
_vllm_config: Path | None = None


def _set_env(key: str, value: str, default: bool = False) -> None:
    """Set an environment variable for this command (and the processes it starts); `teardown` restores it."""
    if default and key in os.environ:
        return
    _saved_env.setdefault(key, os.environ.get(key))
    os.environ[key] = value


def setup(verbose: bool = False) -> None:
    """Route library chatter to the log file (and, with `verbose`, to the console too). Call it before the
    libraries import; `teardown()` undoes it (a command run in-process, as the tests do, leaves nothing)."""
    global _file_handler, _console_handler, _verbose
    teardown()
    _verbose = verbose or os.environ.get(VERBOSE_ENV) == "1"
    if _verbose:
        _set_env(VERBOSE_ENV, "1")  # the commands prm run starts are verbose too
        _set_env("VLLM_LOGGING_LEVEL", "INFO", default=True)
    else:
        for key, value in QUIET_ENV.items():
            _set_env(key, value, default=True)
    logging.setLoggerClass(_RoutedLogger)  # loggers the libraries make from now on, children included
    for name in ROUTED:
        logging.getLogger(name)
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and _routed(name) and not isinstance(logger, _RoutedLogger):
            propagate = logger.propagate
            logger.__class__ = _RoutedLogger  # a library imported before setup
            logger.propagate = propagate
            for handler in [h for h in logger.handlers if _is_console(h)]:
                logger.removeHandler(handler)
    logging.captureWarnings(True)  # Python warnings (Python's filters still apply) become records
    root = logging.getLogger()
    _file_handler = _LogFile()
    root.addHandler(_file_handler)
    root.setLevel(logging.INFO)
    _console_handler = logging.StreamHandler(sys.stderr)
    _console_handler.setFormatter(logging.Formatter("%(name)s %(levelname)s: %(message)s"))
    if not _verbose:
        _console_handler.addFilter(_ConsoleFilter())
    root.addHandler(_console_handler)
    if os.environ.get(LOG_FILE_ENV):
        use_log_file(os.environ[LOG_FILE_ENV])


def teardown() -> None:
    """Take our handlers off the root logger and restore the environment `setup` changed (the libraries'
    loggers stay routed: with no handler of ours, their warnings reach stderr as Python's default has it)."""
    global _file_handler, _console_handler
    root = logging.getLogger()
    if _file_handler is not None:
        _file_handler.write_pending()
    for handler in (_file_handler, _console_handler):
        if handler is not None:
            root.removeHandler(handler)
    if _file_handler is not None:
        root.setLevel(logging.WARNING)
        logging.captureWarnings(False)
        logging.setLoggerClass(logging.Logger)
    _file_handler = _console_handler = None
    global _vllm_config
    if _vllm_config is not None:
        _vllm_config.unlink(missing_ok=True)
        _vllm_config = None
    for key, value in _saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _saved_env.clear()


def use_log_file(path: str | os.PathLike[str]) -> Path | None:
    """Write the chatter to `path` (the first call wins: `PRM_LOG_FILE` from `prm run` comes first). Also
    points vLLM's own logging (its engine processes included) at the same file. None before `setup()`."""
    if _file_handler is None:
        return None
    if _file_handler.path is None:
        target = Path(path).resolve()
        _file_handler.open(target)
        _set_env(LOG_FILE_ENV, str(target))
        _configure_vllm(target)
    return _file_handler.path


def log_file_near(output: str | os.PathLike[str] | None, folder: bool = False) -> Path | None:
    """`use_log_file` in the folder of a command's output (`folder`: the output is itself a folder)."""
    if not output:
        return None
    out = Path(output)
    return use_log_file((out if folder or not out.suffix else out.parent) / LOG_NAME)


def log_file() -> Path | None:
    """The log file of this process, once named."""
    return _file_handler.path if _file_handler is not None else None


def _configure_vllm(path: Path) -> None:
    """vLLM configures its own logging in each of its processes from `VLLM_LOGGING_CONFIG_PATH`: point it at
    the log file (and at the console too with --verbose), unless the user gave a config of their own. In
    this process the file handler is refused (the root's handler writes the record); in vLLM's engine
    processes, which do not run `setup()`, it writes the file."""
    given = os.environ.get("VLLM_LOGGING_CONFIG_PATH", "")
    if given and not Path(given).name.startswith(_VLLM_CONFIG_PREFIX):
        return  # the user's own vLLM logging (one inherited from a parent prm command is remade here)
    if os.environ.get("VLLM_CONFIGURE_LOGGING") == "0":
        return
    handlers: dict[str, dict[str, str]] = {"file": {"()": "prm.console.file_handler", "path": str(path)}}
    if _verbose:
        handlers["console"] = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                               "formatter": "plain", "level": "INFO"}
    config = {"version": 1, "disable_existing_loggers": False,
              "formatters": {"plain": {"format": _FORMAT}}, "handlers": handlers,
              "loggers": {"vllm": {"handlers": list(handlers), "level": "INFO", "propagate": False}}}
    global _vllm_config
    # In the temporary folder, not the output's (naming the log file must not create the output folder);
    # one file a process, removed by teardown().
    _vllm_config = Path(tempfile.gettempdir()) / f"{_VLLM_CONFIG_PREFIX}{os.getpid()}.json"
    _remove_stale(_vllm_config.parent)
    _vllm_config.write_text(json.dumps(config))
    _set_env("VLLM_LOGGING_CONFIG_PATH", str(_vllm_config))


def _remove_stale(folder: Path) -> None:
    """Remove the vLLM configs of processes that are gone without their teardown (killed by SIGKILL)."""
    for stale in folder.glob(f"{_VLLM_CONFIG_PREFIX}*.json"):
        pid = stale.stem[len(_VLLM_CONFIG_PREFIX):]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            stale.unlink(missing_ok=True)
        except OSError:  # alive, another user's
            pass


def file_handler(path: str) -> logging.Handler:
    """The log file's handler for vLLM's logging config (`"()"` factory): its engine processes write through
    it; in a process that ran `setup()` it is refused, the root's own handler writes the record."""
    handler = _LogFile()
    handler.open(Path(path))
    return handler
