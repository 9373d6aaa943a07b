"""Live progress lines for long work: ``verbose=1`` of every estimator, the
demo's steps and the benchmarks' cases.

A :class:`ProgressLine` shows what runs, the step reached out of the most
there can be, the elapsed time, an estimate of the time left and the values
the caller passes (the lower bound, its last change, ``tol``, ...); its last
label then says how the run ended. It writes to stderr:

- through ``tqdm.auto`` when tqdm is installed and stderr is a terminal or the
  output of a notebook (which gets a widget);
- else redrawn in place after a carriage return when stderr is a terminal;
- else (a file, a pipe, a CI log) as plain lines, at most one every
  ``PLAIN_INTERVAL`` seconds, and the last one.

tqdm outside a notebook writes each redraw to a file or a pipe too, hence the
plain lines there whether or not it is installed.

A run is one fit, one ``n_init`` restart or one pass of an online or
out-of-core fit: when there are several, the label names each
(``"EMGaussianMixture restart 2/3"``, ``"EMGaussianMixture pass 2"``; see
``BaseEM._progress_line``). Create lines at ``verbose=1`` only, so that a
silent fit formats and prints nothing.
"""

import shutil
import sys
import time

# Seconds between two writes: a terminal line is redrawn at most ten times a
# second, as tqdm does; a log gets a line every ten seconds.
TTY_INTERVAL = 0.1
PLAIN_INTERVAL = 10.0


class ProgressLine:
    """One live line of progress on stderr.

    Parameters
    ----------
    label : str
        What runs, e.g. ``"EMFactorAnalysis"`` or ``"EMGaussianMixture
        restart 2/3"``.
    total : int
        The most steps the run can take (``max_iter``); the time left assumes
        it takes them all.
    unit : str, default="it"
        What a step is, e.g. ``"epoch"``.

    Examples
    --------
    >>> import io, sys
    >>> sys.stderr, stderr = io.StringIO(), sys.stderr  # not a terminal
    >>> progress = ProgressLine("fit", total=100)
    >>> progress.update(1, lower_bound=-3.25, change=float("inf"))
    >>> progress.update(2, lower_bound=-3.2, change=0.05)
    >>> progress.close("converged")
    >>> sys.stderr, output = stderr, sys.stderr.getvalue()
    >>> print(output, end="")
    fit converged: 2/100 it [00:00] lower bound -3.2, change 0.05
    """

    def __init__(self, label, total, *, unit="it"):
        self.label, self.total, self.unit = label, total, unit
        self.file = sys.stderr
        self.tty = self.file is not None and self.file.isatty()
        self.step, self.values = 0, {}
        self.start = self.written = time.perf_counter()
        self.width = 0  # of the text last drawn in place
        tqdm = _tqdm(self.tty)
        self.bar = None
        if tqdm is not None:
            self.bar = tqdm(total=total, desc=label, unit=unit, file=self.file)
        elif self.tty:  # at once, as tqdm: a long first step shows what runs
            self._write(self._text(self.start), self.start)

    def update(self, step, **values):
        """Show that ``step`` is reached, with ``values`` (name: number; an
        underscore in a name shows as a space) after it."""
        self.step, self.values = step, values
        if self.bar is not None:
            self.bar.set_postfix_str(_describe(values), refresh=False)
            self.bar.update(step - self.bar.n)
            return
        now = time.perf_counter()
        # The last step is left to close(), which follows it.
        interval = TTY_INTERVAL if self.tty else PLAIN_INTERVAL
        if step < self.total and now - self.written >= interval:
            self._write(self._text(now), now)

    def close(self, outcome):
        """End the line, its label followed by ``outcome`` (e.g. "converged"):
        there the terminal's width cannot cut the outcome off."""
        label = f"{self.label} {outcome}"
        if self.bar is not None:
            self.bar.set_description(label, refresh=False)
            self.bar.close()
        else:
            now = time.perf_counter()
            self._write(self._text(now, label), now, last=True)

    def _text(self, now, closing_label=None):
        """``label: step/total unit [elapsed<left] values``; on closing, the
        closing label and no time left."""
        elapsed = now - self.start
        times = _clock(elapsed)
        if closing_label is None:
            left = elapsed * (self.total - self.step) / self.step if self.step else None
            times += "<" + ("?" if left is None else _clock(left))
        text = f"{closing_label or self.label}: {self.step}/{self.total} {self.unit}"
        text += f" [{times}]"
        return f"{text} {_describe(self.values)}" if self.values else text

    def _write(self, text, now, last=False):
        if self.file is None:  # e.g. pythonw: nowhere to write
            return
        if self.tty:
            # Padded over what the previous text left; a redraw within the
            # terminal's width, since a wrapped line cannot be redrawn.
            if not last:
                text = text[: shutil.get_terminal_size().columns - 1]
            self.file.write("\r" + text.ljust(self.width) + ("\n" if last else ""))
            self.width = len(text)
        else:
            self.file.write(text + "\n")
        self.file.flush()
        self.written = now


def _tqdm(tty):
    """tqdm.auto's class where it draws well (a terminal, a notebook), or None."""
    try:
        from tqdm.auto import tqdm
        from tqdm.autonotebook import tqdm as chosen
        from tqdm.std import tqdm as console
    except ImportError:
        return None
    return tqdm if tty or chosen is not console else None


def _describe(values):
    """``values`` as "name value, ..."."""
    return ", ".join(
        f"{name.replace('_', ' ')} {value:.6g}"
        if isinstance(value, float)  # numpy's float64 too
        else f"{name.replace('_', ' ')} {value}"
        for name, value in values.items()
    )


def _clock(seconds):
    """Seconds as mm:ss or h:mm:ss, as tqdm shows them."""
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{seconds:02d}"
    return f"{minutes:02d}:{seconds:02d}"
