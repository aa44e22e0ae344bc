"""logs/pipeline/kafka_internals.py: what it does to kafka-python, on real sockets."""

import socket
import types

import pytest
from kafka.errors import KafkaConnectionError
from kafka.net.transport import KafkaSSLTransport, KafkaTCPTransport

from logs.pipeline import kafka_internals


@pytest.fixture
def ended_stream():
    """A socket whose peer sent an answer and closed: both wait to be read, as after a refused login."""
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.sendall(b"the broker's answer")
    peer.close()
    yield types.SimpleNamespace(_sock=ours)
    ours.close()


def test_kafka_python_alone_drops_bytes_read_together_with_the_end_of_the_stream(ended_stream):
    """Why the adapter patches the transports: when this fails, kafka-python no longer reports an error with
    the bytes it read (or no longer has `_sock_recv`), and the patch can go."""
    original = KafkaTCPTransport._sock_recv.__wrapped__
    data, error = original(ended_stream)
    assert data == b"the broker's answer" and isinstance(error, KafkaConnectionError)


@pytest.mark.parametrize("transport", [KafkaTCPTransport, KafkaSSLTransport])
def test_bytes_read_before_the_end_are_delivered_and_the_end_is_reported_at_the_next_read(ended_stream, transport):
    assert transport._sock_recv.keeps_data_read_before_the_end
    assert transport._sock_recv(ended_stream) == (b"the broker's answer", None)
    data, error = transport._sock_recv(ended_stream)
    assert data == b"" and isinstance(error, KafkaConnectionError)


def test_the_patch_is_applied_once_however_often_it_is_asked_for():
    before = KafkaTCPTransport._sock_recv
    kafka_internals.deliver_data_read_before_the_end_of_stream()
    assert KafkaTCPTransport._sock_recv is before
