"""Names: prefixed, cloud-safe, within limits and stable across runs."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from mxinfra.naming import Naming, kubernetes_labels, shorten, standard_tags

LABEL = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")


def test_logical_names_carry_the_component_prefix():
    n = Naming("orders", "production")
    assert n.prefix == "orders-production" and n.logical("db") == "orders-production-db"


def test_physical_names_fit_and_are_stable():
    n = Naming("orders-management", "acceptance-eu-west")
    name = n.physical("files-bucket-with-long-suffix", max_len=32)
    assert len(name) <= 32 and name == n.physical("files-bucket-with-long-suffix", max_len=32)
    assert name != Naming("orders-management", "acceptance-eu-wes2").physical("files-bucket-with-long-suffix", max_len=32)
    assert re.fullmatch("[a-z0-9]{3,24}", Naming("orders", "production").physical("files", max_len=24, charset="a-z0-9"))


@given(st.from_regex(r"[a-z][a-z0-9-]{0,18}[a-z0-9]", fullmatch=True), st.from_regex(r"[a-z][a-z0-9-]{0,18}[a-z0-9]", fullmatch=True), st.integers(8, 63))
def test_physical_names_always_within_limit(app, env, limit):
    name = Naming(app, env).physical("database", max_len=limit)
    assert len(name) <= limit and re.fullmatch(r"[a-z0-9-]+", name)


def test_shorten_keeps_short_names():
    assert shorten("abc", 10) == "abc"


def test_kubernetes_labels_are_valid_label_values():
    tags = standard_tags("orders", "production", "production", "a" * 64, "1.4.2.1234")
    labels = kubernetes_labels(tags)
    assert labels["mxinfra.io/package-sha256"] == "a" * 12
    assert all(len(v) <= 63 and re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?", v) for v in labels.values())
