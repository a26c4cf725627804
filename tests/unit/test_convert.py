"""The hand-made Timestamp conversion gives what protobuf's FromDatetime gives, for any time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from vaultd.api.convert import timestamp

_OFFSETS = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)


def _reference(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=_OFFSETS)
)
def test_aware_times_convert_as_protobuf_converts_them(moment: datetime) -> None:
    assert timestamp(moment) == _reference(moment)
    assert timestamp(moment).ToDatetime(tzinfo=UTC) == moment


@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
def test_naive_times_are_taken_as_utc(moment: datetime) -> None:
    assert timestamp(moment) == _reference(moment)


def test_before_the_epoch_the_nanos_stay_positive() -> None:
    moment = datetime(1969, 12, 31, 23, 59, 59, 250_000, tzinfo=UTC)
    assert (timestamp(moment).seconds, timestamp(moment).nanos) == (-1, 250_000_000)
