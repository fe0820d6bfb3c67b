"""What the PyTorch sides of `oml-bench` (`torch_conv.py`, `torch_vit_block.py`) and their
breakdown scripts share: the timing rule and the ViT block's shape arguments."""
import statistics
import time


def timed(f, repeats):
    """Median seconds of `repeats` calls of `f` after one warm-up call."""
    f()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def add_vit_block_args(ap):
    """The shape of one ViT block (ViT-S/16 at 224² by default), as `oml-bench vit-block` takes it."""
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=197)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
