"""Side-by-side timing shared by every benchmark.

Machines here are shared and noisy, so absolute times drift: each case runs the
two contenders alternately, several times, and reports the medians and their
ratio, never a lone time. A case that is named shows a live progress line on
stderr while it runs, drawn between the timed runs.
"""

import statistics
import time
import tracemalloc

from sklearn_latent._progress import ProgressLine


def timed(fn):
    """Run ``fn()`` once; return (seconds, result)."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def compare(ours, reference, repeats=3, *, case=None):
    """Time ``ours()`` and ``reference()`` alternately ``repeats`` times.

    Returns a dict with the median seconds of each (``ours_s``, ``ref_s``),
    ``speedup`` = ref_s / ours_s, and the last result of each (``ours_result``,
    ``ref_result``), so that callers can report quality beside speed. A
    ``case`` name gets a live progress line: one step per timed run, with the
    medians so far.
    """
    ours_times, ref_times = [], []
    ours_result = ref_result = None
    line = None if case is None else ProgressLine(case, 2 * repeats, unit="run")
    for i in range(repeats):
        # Alternate which side goes first so that drift hits both alike.
        order = [(ours, ours_times), (reference, ref_times)]
        if i % 2:
            order.reverse()
        for fn, times in order:
            seconds, result = timed(fn)
            times.append(seconds)
            if fn is ours:
                ours_result = result
            else:
                ref_result = result
            if line is not None:
                medians = {
                    side: f"{statistics.median(t):.3g} s"
                    for side, t in (("ours", ours_times), ("reference", ref_times))
                    if t
                }
                line.update(len(ours_times) + len(ref_times), **medians)
    ours_s, ref_s = statistics.median(ours_times), statistics.median(ref_times)
    if line is not None:
        line.close(f"speedup {ref_s / ours_s:.2f}x")
    return {
        "ours_s": ours_s,
        "ref_s": ref_s,
        "speedup": ref_s / ours_s,
        "ours_result": ours_result,
        "ref_result": ref_result,
    }


def peak_memory(fn):
    """Peak bytes allocated through Python's allocators (numpy included) by ``fn()``."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
