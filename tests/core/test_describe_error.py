"""immp.describe_error: one line for a log, with a cause only where it says more."""

from __future__ import annotations

import immp


def _raised(exc: Exception, cause: Exception) -> Exception:
    try:
        raise exc from cause
    except Exception as caught:
        return caught


def test_a_cause_that_says_more_is_added_and_one_that_repeats_is_not():
    # httpx's ConnectError wraps httpcore's with the same words: said once, not twice.
    same = _raised(OSError("all attempts to connect to 127.0.0.1:1 failed"),
                   OSError("all attempts to connect to  127.0.0.1:1 failed"))  # fmt: skip
    assert immp.describe_error(same) == "OSError: all attempts to connect to 127.0.0.1:1 failed"
    more = _raised(RuntimeError("TLS failed"), OSError("certificate expired"))
    assert immp.describe_error(more) == "RuntimeError: TLS failed (OSError: certificate expired)"
