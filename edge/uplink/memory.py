"""Give big buffers back to the OS: what an oversized MQTT 3.1.1 message leaves behind.

MQTT 3.1.1 cannot tell the broker how big a packet the device accepts, so paho-mqtt reads a
20 MB message whole before the uplink can drop it. glibc raises its mmap threshold after
such a buffer is freed, and the next ones then come from the heap and stay in the process:
an attacker could grow a device's RSS for good with a few big messages. A fixed threshold
keeps every buffer over 1 MiB in its own mapping, returned to the OS when freed.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
THRESHOLD = 1024 * 1024


def return_big_buffers() -> bool:
    """Fix glibc's mmap threshold at 1 MiB; False where there is no glibc (musl, macOS)."""
    try:
        # The symbols the process already has (libc's among them): no library search, which
        # would run ldconfig or a compiler in a subprocess at start.
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD))
    if not done:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused")
    return done
