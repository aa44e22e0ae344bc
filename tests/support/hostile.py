"""Records that other clients can write and kafka-python cannot (its builders check what the protocol does not)."""


class UndecodableHeaderName(str):
    """A record header name whose bytes are not UTF-8. The protocol allows any bytes there and other
    clients write them; kafka-python takes only `str` names, so this one hands its record builder raw bytes."""

    def encode(self, *args, **kwargs):
        return b"\xff\xfetrace"
