"""Numeric command-line arguments that explain what they accept when they are refused."""

import argparse
import math


def number(kind, *, above=None, at_least=None, at_most=None):
    """An argparse `type` for a finite int or float within the given bounds."""
    bounds = [f"greater than {above:g}" if above is not None else None,
              f"at least {at_least:g}" if at_least is not None else None,
              f"at most {at_most:g}" if at_most is not None else None]
    expected = f"a {'whole ' if kind is int else ''}number" + "".join(f", {bound}" for bound in bounds if bound)

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {expected}") from None
        if (not math.isfinite(value) or (above is not None and value <= above)
                or (at_least is not None and value < at_least) or (at_most is not None and value > at_most)):
            raise argparse.ArgumentTypeError(f"{text!r} is not {expected}")
        return value

    return parse
