"""Coherent random activity for a pool of users, built from the one event schema.

Coherent means: every `send` from A to B is followed by B's matching `receive` from A (same
transferId, amount and currency); nobody sends more than the balance tracked for them; a
`balance_inquiry` reports exactly that tracked balance.
"""

import random
import uuid
from datetime import datetime, timezone

from ..events import BALANCE_INQUIRY, RECEIVE, SEND, ActivityEvent

CURRENCY = "USD"
OPENING_BALANCE_CENTS = (100_00, 5_000_00)  # every user starts with a random balance in this range
MAX_GENERATED_TRANSFER_CENTS = 1_000_00
INQUIRY_SHARE = 0.3  # of the activities a user starts; the rest are transfers


def user_ids(count):
    return [f"user-{number}" for number in range(1, count + 1)]


def utc_now():
    """Now, to the millisecond: the precision of the wire format and of MongoDB dates."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def generate_activity(*, users, seed=None, clock=utc_now):
    """Endless iterator of ActivityEvents for `users` users (user-1 … user-N).

    With the same seed the sequence (ids, users, actions, amounts) is the same; timestamps come
    from `clock`, so they tell when the activity was generated.
    """
    if users < 1:
        raise ValueError("users must be at least 1")
    rng = random.Random(seed)
    pool = user_ids(users)
    balances = {user: rng.randint(*OPENING_BALANCE_CENTS) for user in pool}

    def new_uuid():
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    while True:
        user = rng.choice(pool)
        can_send = users > 1 and balances[user] > 0
        if not can_send or rng.random() < INQUIRY_SHARE:
            yield ActivityEvent(event_id=new_uuid(), user_id=user, action=BALANCE_INQUIRY,
                                timestamp=clock(), balance_cents=balances[user])
            continue
        counterparty = _other(rng, pool, user)
        amount = rng.randint(1, min(balances[user], MAX_GENERATED_TRANSFER_CENTS))
        balances[user] -= amount
        balances[counterparty] += amount
        transfer_id = new_uuid()
        for action, owner, other in ((SEND, user, counterparty), (RECEIVE, counterparty, user)):
            yield ActivityEvent(event_id=new_uuid(), user_id=owner, action=action, timestamp=clock(),
                                amount_cents=amount, currency=CURRENCY, counterparty_id=other,
                                transfer_id=transfer_id)


def _other(rng, pool, user):
    """A random user other than `user` (the pool has at least two)."""
    while True:
        candidate = rng.choice(pool)
        if candidate != user:
            return candidate
