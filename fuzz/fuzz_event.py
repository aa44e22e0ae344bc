"""Coverage-guided fuzz target (atheris) for `ActivityEvent.from_bytes`: it must return or reject, never raise.

    make fuzz                     # FUZZ_SECONDS=60 by default; the seed corpus is fuzz/corpus/
    python fuzz/fuzz_event.py -max_total_time=20 fuzz/corpus

A crash prints the input and stops with a non-zero exit; turn it into a named test in
tests/test_event_decoding.py. New inputs found go to a scratch folder, not the committed corpus.
"""

import sys

import atheris

with atheris.instrument_imports():
    from logs.events import ActivityEvent, InvalidEvent


def test_one_input(data):
    try:
        ActivityEvent.from_bytes(data)
    except InvalidEvent as rejection:
        rejection.reason.encode("utf-8")


def main():
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
