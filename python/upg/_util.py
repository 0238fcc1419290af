"""Helpers shared by the modules of the upg package (argument checks, progress display)."""

import operator
import os
import sys
import time


def fspath(path, what):
    """path as a str; TypeError naming `what` when it is not a str or os.PathLike."""
    if isinstance(path, (str, os.PathLike)):
        return os.fspath(path)
    raise TypeError(f"{what} must be a path (str or os.PathLike), got {type(path).__name__}")


def existing_path(path, what):
    """fspath(path), raising FileNotFoundError when nothing exists there."""
    p = fspath(path, what)
    if not os.path.exists(p):
        raise FileNotFoundError(f"{what} '{p}' does not exist")
    return p


def check_int(value, name, minimum=None, allow_none=False):
    """value as an int (bools refused); ValueError when below minimum."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    value = operator.index(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_number(value, name, allow_none=True):
    """value as a float, or None when allowed."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}") from None
    return float(value)


def threads_arg(threads):
    """threads=None -> 0 (the default: all cores or OMP_NUM_THREADS)."""
    return 0 if threads is None else check_int(threads, "threads", minimum=1)


class ProgressPrinter:
    """A one-line progress display on stderr, redrawn at most 10 times a second.

    Called as printer(label, done, total, detail); a new label starts a new line; close() ends it.
    """

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.label = None
        self.last = 0.0
        self.start = time.monotonic()
        self.drawn = False

    def __call__(self, label, done, total, detail=""):
        now = time.monotonic()
        if label != self.label:
            self.close()
            self.label = label
            self.start = now
        elif done < total and now - self.last < 0.1:
            return
        self.last = now
        elapsed = now - self.start
        eta = ""
        if 0 < done < total and elapsed > 0:
            left = elapsed * (total - done) / done
            eta = f" | ETA {int(left) // 60}:{int(left) % 60:02d}"
        line = f"\r{label} {done}/{total}{eta}" + (f" | {detail}" if detail else "")
        self.stream.write(line.ljust(79)[:200])
        self.stream.flush()
        self.drawn = True

    def close(self):
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
        self.drawn = False
        self.label = None
