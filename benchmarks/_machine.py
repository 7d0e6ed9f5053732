"""What the benchmarks report of the machine they ran on."""

import platform

WANTED = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_flags():
    """The vector, int8 and bfloat16 instruction sets this CPU reports, as one line."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(line for line in f if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return platform.processor() or "unknown"
    return " ".join(flag for flag in WANTED if flag in flags) or "none of " + ", ".join(WANTED)
