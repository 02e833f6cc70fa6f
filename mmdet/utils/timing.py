"""Timing a forward: malloc tuning, one timed call, CUDA-graph replay and a kernel profile
(``mmdet.apis.benchmark`` and tools/benchmark.py use them)."""

import ctypes
import time

import torch


def keep_freed_memory():
    """Make glibc malloc serve tensors up to 32 MB from the heap and never return freed memory
    to the system, so that later tensors reuse pages already mapped. Returns False where the C
    library is not glibc (nothing changed)."""
    try:
        libc = ctypes.CDLL('libc.so.6')
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt parameters (malloc.h)
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))


def time_once(fn, device):
    """Seconds one call of ``fn`` takes (the GPU synchronised before and after)."""
    if device.type == 'cuda':
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == 'cuda':
        torch.cuda.synchronize()
    return time.perf_counter() - start


def graphed(forward, x):
    """A CUDA graph of ``forward(x)`` (x copied into a static input); returns its replay function.

    Two eager runs before the capture (autotuning, cuDNN's algorithm search, caches); the
    caller's warm-up then replays the graph.
    """
    static = x.clone(memory_format=torch.channels_last)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            forward(static)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        forward(static)

    def replay():
        graph.replay()

    # The graph reads and writes the memory of the model (weights, buffers, caches) and of the
    # input: both must live as long as the replay, or their memory is reused by later variants
    replay.keep_alive = forward, static
    return replay


def profile_forward(label, fn, device, top):
    """Profile one eager call of ``fn`` and print its ``top`` most expensive kernels (CUDA) or
    operators (CPU), grouped by name, with counts: how many launches one forward makes and
    where their time goes."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == 'cuda'
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        fn()
        if cuda:
            torch.cuda.synchronize()
    wall_ms = 1e3 * (time.perf_counter() - start)
    if cuda:
        kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
        items = [(e.name, e.time_range.elapsed_us()) for e in kernels]
    else:  # operators called from Python, their children included
        items = [(e.name, e.cpu_time_total) for e in prof.events() if e.cpu_parent is None]
    groups = {}
    for name, us in items:
        count, total = groups.get(name, (0, 0.0))
        groups[name] = (count + 1, total + us)
    busy_ms = sum(us for _, us in items) / 1e3
    kind = 'kernels' if cuda else 'operators'
    print(f'[profile {label}] {len(items)} {kind}, {busy_ms:.2f} ms busy of {wall_ms:.2f} ms wall (profiled)')
    for name, (count, us) in sorted(groups.items(), key=lambda kv: -kv[1][1])[:top]:
        print(f'  {us / 1e3:8.3f} ms {100 * us / 1e3 / max(busy_ms, 1e-9):5.1f}% {count:6d}x  {name[:90]}')
