"""Consent: validation, latest statement wins whatever the arrival order, and the policy."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from models.consent import ConsentPolicy, InvalidConsent, statements
from models.customer import merge
from models.events import Event
from models.segment import InvalidEvent, normalize
from tests.models.folding import P, fold, view

T0 = 1_700_000_000_000


def identify(i: int, t: int, consent: Any, **traits: Any) -> Event:
    return Event("identify", f"m{i}", t, t, "web", user_id="u",
                 traits={"consent": consent, **traits})  # fmt: skip


def updated(i: int, t: int, consent: Any, source: str | None = None) -> Event:
    props: dict[str, Any] = {"consent": consent}
    if source:
        props["source"] = source
    return Event("track", f"m{i}", t, t, "email", user_id="u", event="Consent Updated",
                 properties=props)  # fmt: skip


@pytest.mark.parametrize(
    ("consent", "field"),
    [
        ("yes", "consent"),
        ({"Email": True}, "consent.Email"),
        ({"email": "yes"}, "consent.email"),
        ({"email": {"marketing": 1}}, "consent.email.marketing"),
        ({"email": {"Bad Purpose": True}}, "consent.email.Bad Purpose"),
    ],
)
def test_malformed_consent_names_the_field(consent: Any, field: str) -> None:
    with pytest.raises(InvalidConsent) as err:
        list(statements(consent))
    assert err.value.field == field


def test_ingest_refuses_malformed_consent() -> None:
    with pytest.raises(InvalidEvent) as err:
        normalize({"type": "identify", "userId": "u", "traits": {"consent": {"sms": "no"}}},
                  received_at=T0, new_id=lambda: "x")  # fmt: skip
    assert err.value.field == "traits.consent.sms"
    with pytest.raises(InvalidEvent) as err:
        normalize({"type": "track", "event": "Consent Updated", "userId": "u",
                   "properties": {"consent": []}}, received_at=T0, new_id=lambda: "x")  # fmt: skip
    assert err.value.field == "properties.consent"


def test_statements_latest_wins_in_any_arrival_order() -> None:
    events = [
        identify(1, T0, {"email": True, "sms": {"marketing": True}}, consent_source="signup"),
        updated(2, T0 + 10, {"email": False}, source="unsubscribe link"),
        identify(3, T0 + 5, {"email": True, "push": False}),
    ]
    views = [view(list(order)) for order in itertools.permutations(events)]
    assert all(v["consent"] == views[0]["consent"] for v in views)
    consent = views[0]["consent"]
    assert consent["email"]["marketing"] == {
        "granted": False, "at": "2023-11-14T22:13:20.010Z", "source": "unsubscribe link",
    }  # fmt: skip
    assert consent["sms"]["marketing"]["granted"] is True
    assert consent["sms"]["marketing"]["source"] == "signup"
    assert consent["push"]["marketing"]["granted"] is False
    # consent is not a trait
    assert "consent" not in views[0]["traits"] and "consent_source" not in views[0]["traits"]


def test_contactable_applies_the_policy_to_unknown_channels() -> None:
    v = view([identify(1, T0, {"sms": True, "push": False})])
    assert v["contactable"] == {
        "web": True, "app": True, "email": False, "sms": True, "push": False,
        "store": True, "call": True,
    }  # fmt: skip
    strict = view(
        [identify(1, T0, {"sms": True})], policy=ConsentPolicy(frozenset({"push", "sms"}))
    )
    assert strict["contactable"]["email"] is True and strict["contactable"]["push"] is False


def test_merge_keeps_the_latest_statement_of_either() -> None:
    phone = fold([identify(1, T0, {"email": True})])
    laptop = fold([updated(2, T0 + 1, {"email": False})])
    for m in (merge(phone, laptop, "u", P), merge(laptop, phone, "u", P)):
        assert m.consent["email:marketing"][2] is False
