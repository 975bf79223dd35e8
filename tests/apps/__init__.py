"""Apps the integration tests run under real servers."""

from __future__ import annotations

import os


def rss_bytes() -> int:
    """This process's resident memory (Linux; 0 elsewhere), for tests that watch it."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0
