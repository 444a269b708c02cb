"""Deterministic labelled support-ticket sentences for the demo and benchmarks.

Each label has its own phrasings, but the sentences share openers, products
and closers, and a share of the rows are deliberately ambiguous, so a model
must read the content words and does not reach 100%.
"""

from __future__ import annotations

import random

OPENERS = [
    "Hi,",
    "Hello team,",
    "Urgent:",
    "Quick question -",
    "",
    "",
    "Good morning,",
    "Hey support,",
    "Not sure who to ask, but",
    "Following up:",
]
PRODUCTS = [
    "the mobile app",
    "my subscription",
    "the premium plan",
    "the desktop client",
    "my order",
    "the web dashboard",
    "the family plan",
    "the API",
    "my account",
    "the smart speaker",
]
CLOSERS = [
    "",
    "",
    "Thanks.",
    "Please help.",
    "Can you look into it?",
    "This is the second time.",
    "Any update would be appreciated.",
    "Cheers",
    "Thank you in advance!",
    "I'm quite frustrated.",
]
INTENTS: dict[str, list[str]] = {
    "billing": [
        "I was charged twice for {p} this month",
        "my invoice for {p} shows the wrong amount",
        "I need a refund for {p}",
        "why did the price of {p} go up",
        "the payment for {p} failed but money left my bank",
        "please cancel the renewal charge on {p}",
        "can I get a receipt for {p}",
        "my card was declined when paying for {p}",
    ],
    "technical": [
        "{p} crashes every time I open it",
        "{p} is stuck on the loading screen",
        "I get error 500 when using {p}",
        "{p} stopped syncing after the update",
        "the login button in {p} does nothing",
        "{p} is extremely slow today",
        "notifications from {p} never arrive",
        "{p} keeps logging me out",
    ],
    "account": [
        "I forgot the password for {p}",
        "how do I change the email on {p}",
        "please delete {p} and all my data",
        "I can't verify my phone number for {p}",
        "someone else may have access to {p}",
        "how do I add a second user to {p}",
        "two-factor codes for {p} don't work",
        "I want to rename {p}",
    ],
    "shipping": [
        "{p} has not arrived yet",
        "the tracking number for {p} doesn't work",
        "{p} arrived damaged",
        "can I change the delivery address for {p}",
        "I received the wrong item instead of {p}",
        "{p} was delivered to my neighbour",
        "how long does shipping take for {p}",
        "part of {p} is missing from the box",
    ],
}
AMBIGUOUS = [
    "I have a problem with {p}",
    "something is wrong with {p}",
    "{p} is not working as expected",
    "I need help with {p}",
    "can someone call me about {p}",
]


def support_tickets(n: int, seed: int = 0, ambiguous_share: float = 0.08) -> list[tuple[str, str]]:
    """``n`` (text, label) pairs, balanced over the labels."""
    rng = random.Random(seed)
    labels = sorted(INTENTS)
    rows = []
    for i in range(n):
        label = labels[i % len(labels)]
        template = rng.choice(AMBIGUOUS if rng.random() < ambiguous_share else INTENTS[label])
        body = template.format(p=rng.choice(PRODUCTS))
        text = " ".join(
            part for part in (rng.choice(OPENERS), body[0].upper() + body[1:] + ".", rng.choice(CLOSERS)) if part
        )
        rows.append((text, label))
    rng.shuffle(rows)
    return rows
