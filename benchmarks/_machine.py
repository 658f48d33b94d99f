"""One line naming the CPU and the SIMD level, printed with every benchmark's
figures (the scripts with their own machine block print it there too)."""
import platform


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_line() -> str:
    import grurec  # late: bench_memory's children measure RSS before importing it

    return f"CPU: {cpu_model()}; grurec SIMD level: {grurec.simd_level()}"
