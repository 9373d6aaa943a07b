"""Side-by-side timing shared by every benchmark.

Machines here are shared and noisy, so absolute times drift: each case runs the
two contenders alternately, several times, and reports the medians and their
ratio, never a lone time.
"""

import statistics
import time
import tracemalloc


def timed(fn):
    """Run ``fn()`` once; return (seconds, result)."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def compare(ours, reference, repeats=3):
    """Time ``ours()`` and ``reference()`` alternately ``repeats`` times.

    Returns a dict with the median seconds of each (``ours_s``, ``ref_s``),
    ``speedup`` = ref_s / ours_s, and the last result of each (``ours_result``,
    ``ref_result``), so that callers can report quality beside speed.
    """
    ours_times, ref_times = [], []
    ours_result = ref_result = None
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
    ours_s, ref_s = statistics.median(ours_times), statistics.median(ref_times)
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
