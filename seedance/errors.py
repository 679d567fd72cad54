"""User-facing errors.

A `SeedanceError` carries a one-line message that says what went wrong and what
to do. The CLI prints it as `error: <message>` and exits non-zero, without a
traceback; the app shows it as a `gr.Error`.
"""

from __future__ import annotations


class SeedanceError(Exception):
    """An error caused by the user's input or environment, with a one-line fix."""

    def __init__(self, message: str):
        # Keep it on one line whatever the caller formatted.
        super().__init__(" ".join(str(message).split()))


class MediaError(SeedanceError):
    """A media file that cannot be read or written."""


class WeightsError(SeedanceError):
    """Missing, corrupt or unsafe weights."""
