"""The commands refuse bad numbers with a message that says what they accept."""

import argparse

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from logs.management.commands._arguments import number


def test_numbers_within_bounds_are_parsed():
    assert number(float, above=0)("0.5") == 0.5
    assert number(float, above=0)("5000") == 5000.0
    assert number(int, at_least=1, at_most=10)("10") == 10


@pytest.mark.parametrize("parse, text, message", [
    (number(float, above=0), "0", "'0' is not a number, greater than 0"),
    (number(float, above=0), "nan", "is not a number, greater than 0"),
    (number(float, above=0), "inf", "is not a number, greater than 0"),
    (number(int, at_least=1), "2.5", "'2.5' is not a whole number, at least 1"),
    (number(int, at_least=1, at_most=10), "11", "at most 10"),
])
def test_refused_numbers_say_what_is_accepted(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse(text)


@pytest.mark.parametrize("command, args", [
    ("produce_activity", ["--rate", "-1"]),
    ("produce_activity", ["--count", "0"]),
    ("consume_activity", ["--batch-size", "100000"]),
    ("redrive_dead_letters", ["--max-attempts", "0"]),
    ("redrive_dead_letters", ["--max-attempts", "1000"]),
    ("redrive_dead_letters", ["--limit", "0"]),
])
def test_the_commands_reject_bad_numbers_before_connecting_anywhere(command, args):
    with pytest.raises(CommandError, match="is not a"):
        call_command(command, *args)
