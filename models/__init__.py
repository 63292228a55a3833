"""The pure core of nudge: event schema, customer state, key layout and codecs.

Nothing in this package performs I/O or imports redis, bytewax or fastapi, so the same code
runs in the dataflow, the API, replays and tests.
"""


class NudgeError(Exception):
    """Root of every error raised by `models`."""
