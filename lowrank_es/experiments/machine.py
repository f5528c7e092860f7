"""How busy the machine was during a run, for the results file: wall times measured on a shared
CPU are inflated, CPU seconds much less so."""

from __future__ import annotations

import os
import resource
from typing import Any


def machine_load() -> dict[str, Any]:
    """This process's CPU seconds so far and the 1, 5 and 15 minute load averages now."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return {"process_cpu_s": round(use.ru_utime + use.ru_stime, 1),
            "load_average_1_5_15_min": [round(x, 2) for x in os.getloadavg()]}
