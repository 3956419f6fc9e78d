import pytest

from protocol import Channel, StationTopic, TopicError


def test_topic_round_trip() -> None:
    topic = StationTopic("st-410105-001", Channel.TELEMETRY)
    assert str(topic) == "citysense/v1/stations/st-410105-001/telemetry"
    assert StationTopic.parse(str(topic)) == topic


def test_subscription_filter_covers_every_station() -> None:
    assert StationTopic.subscription(Channel.STATE) == "citysense/v1/stations/+/state"


@pytest.mark.parametrize(
    "topic",
    [
        "citysense/v2/stations/st-1/telemetry",
        "citysense/v1/stations/st-1",
        "citysense/v1/stations/st-1/telemetry/extra",
        "citysense/v1/stations/st-1/firmware",
        "citysense/v1/stations/+/telemetry",
        "citysense/v1/stations//telemetry",
        "citysense/v1/stations/st-1\n/telemetry",
        "citysense/v1/stations/st-1/telemetry\n",
    ],
)
def test_foreign_topics_are_refused(topic: str) -> None:
    with pytest.raises(TopicError):
        StationTopic.parse(topic)


@pytest.mark.parametrize("station_id", ["a/b", "st-1\n", "\nst-1", "", "-st", "x" * 65])
def test_station_id_is_validated_when_built(station_id: str) -> None:
    with pytest.raises(TopicError):
        StationTopic(station_id, Channel.STATE)
