"""Money on the wire is a decimal string; in the database it is integer cents. Never a float."""

import re

MAX_TRANSFER_CENTS = 1_000_000_00
# A balance is stored as a 64-bit integer of cents; 15 whole digits stays far inside it.
# ASCII digits only: `\d` and int() would also take other scripts' digits.
_DECIMAL = re.compile(r"(?P<units>[0-9]{1,15})(?:\.(?P<fraction>[0-9]{1,2}))?")


def parse_cents(text):
    """'12.3' -> 1230. Raises ValueError for anything but a plain non-negative decimal string."""
    if not isinstance(text, str):
        raise ValueError("must be a decimal string such as \"12.50\", not a JSON number")
    match = _DECIMAL.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a plain decimal with at most 2 decimal places")
    fraction = (match["fraction"] or "").ljust(2, "0")
    return int(match["units"]) * 100 + int(fraction)


def format_cents(cents):
    """1230 -> '12.30'."""
    if cents is None:
        return None
    sign = "-" if cents < 0 else ""
    units, fraction = divmod(abs(cents), 100)
    return f"{sign}{units}.{fraction:02d}"
