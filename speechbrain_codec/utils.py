"""Small shared helpers: atomic file writes and user-facing errors."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = ["CodecError", "atomic_path", "atomic_write_text", "atomic_write_json", "one_line_errors", "save_png"]


class CodecError(RuntimeError):
    """An error caused by user input (a file, an option), with a one-line message.

    The command-line tools print ``str(err)`` without a traceback.
    """


def one_line_errors(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a command-line ``main``: a :class:`CodecError` prints ``error: ...`` and returns 1.

    The wrapped function returns its own status (``None`` counts as 0); argparse's own
    ``SystemExit`` and any other exception pass through unchanged.

    >>> @one_line_errors
    ... def main():
    ...     raise CodecError("x.wav: not found; check --manifest")
    >>> import contextlib, io
    >>> with contextlib.redirect_stderr(io.StringIO()) as err:
    ...     status = main()
    >>> status, err.getvalue().strip()
    (1, 'error: x.wav: not found; check --manifest')
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            status = main(*args, **kwargs)
        except CodecError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        return 0 if status is None else status

    return wrapper


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    If the body raises, the temporary file or folder is removed and whatever existed at
    ``path`` before is left untouched, so an interrupted stage never leaves a half-written
    output that a later run would mistake for a finished one.

    Example
    -------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with atomic_path(os.path.join(d, "a.txt")) as tmp:
    ...     _ = tmp.write_text("hello")
    >>> open(os.path.join(d, "a.txt")).read()
    'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.tmp-"
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if is_dir:
            if path.exists():
                old = path.with_name(f".{path.name}.old-{os.getpid()}")
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        else:
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")



def save_png(fig, path: str | os.PathLike, dpi: int = 120) -> None:
    """Write a matplotlib figure as a PNG atomically (see :func:`atomic_path`) and close it."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        plt.close(fig)


def load_state_checked(module, state: dict, source: str, hint: str = "", may_miss: tuple[str, ...] = ()) -> None:
    """Load ``state`` into ``module`` or raise :class:`CodecError` listing every missing and
    unexpected key and every shape mismatch (``load_state_dict`` would stop at the first
    mis-shaped tensor with a bare RuntimeError). Keys starting with a ``may_miss`` prefix may be
    absent (layers that are new in ``module``)."""
    own = module.state_dict()
    missing = sorted(k for k in set(own) - set(state) if not k.startswith(may_miss or ("\0",)))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        raise CodecError(
            f"{source}: does not fit the configuration; missing keys {missing}, unexpected keys {unexpected}, "
            f"shape mismatches {shapes}" + (f". {hint}" if hint else "")
        )
    module.load_state_dict(state, strict=not may_miss)
