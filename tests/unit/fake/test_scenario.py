"""Scenario files: the shipped ones parse, durations scale, mistakes name their TOML path."""

from __future__ import annotations

from importlib import resources

import pytest

from proxy.fake.scenario import ScenarioError, parse

SHIPPED = sorted(
    p.name
    for p in (resources.files("proxy.fake") / "scenarios").iterdir()
    if p.name.endswith(".toml")
)


def test_three_scenarios_are_shipped() -> None:
    assert {"smoke.toml", "three-providers.toml", "rolling-resets.toml"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_scenario_parses_with_phases_and_options(name: str) -> None:
    text = (resources.files("proxy.fake") / "scenarios" / name).read_text("utf-8")
    s = parse(text, name)
    assert s.options
    assert any(p.phases for p in s.providers)
    for p in s.providers:
        timeline = p.timeline(1.0)
        # every incident ends within the load, so the recovery is seen too
        assert timeline.end_s <= s.load.duration_s


def test_phases_become_behaviours_on_a_scaled_clock() -> None:
    s = parse(
        """
        [providers.a]
        ttft_ms = 50
        phases = [
          { kind = "outage", from_s = 10, to_s = 20, status = 502 },
          { kind = "throttle", from_s = 20, to_s = 30, retry_after_s = 5 },
          { kind = "slow", from_s = 30, to_s = 40, factor = 10 },
          { kind = "resets", from_s = 40, to_s = 50, rate = 0.5, after_chunks = 3 },
          { kind = "reset", from_s = 50, to_s = 60 },
          { kind = "refused", from_s = 60, to_s = 70 },
        ]
        """
    )
    (a,) = s.providers
    t = a.timeline(0.1)
    outage, throttle, slow, resets, reset, refused = t.phases
    assert (outage.start_s, outage.end_s, outage.behaviour.status) == (1.0, 2.0, 502)
    assert throttle.behaviour.status == 429
    assert throttle.behaviour.retry_after_ms == "500"
    assert throttle.behaviour.retry_after == "1"
    assert slow.behaviour.ttft_s == pytest.approx(0.5)
    assert (resets.rate, resets.behaviour.fault, resets.behaviour.fault_after_chunks) == (
        0.5,
        "reset_mid_stream",
        3,
    )
    assert reset.behaviour.fault == "reset_before_headers"
    assert t.refusals() == ((6.0, 7.0),)
    assert s.options == (("weighted", {"strategy": "weighted"}),)  # the default option set


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            "[providers.a]\nphases = [{ kind = 'meteor', from_s = 1, to_s = 2 }]",
            "providers.a.phases[0].kind",
        ),
        (
            "[providers.a]\nphases = [{ kind = 'slow', from_s = 3, to_s = 2 }]",
            "providers.a.phases[0].to_s",
        ),
        ("[providers.a]\nphases = [{ kind = 'outage', to_s = 2, status = 429 }]", "status"),
        ("[providers.a]\nttft = 5", "providers.a.ttft: unknown key"),
        ("[load]\nrequests = 0\n[providers.a]", "load.requests"),
        ("[load]\nstream_share = 2\n[providers.a]", "load.stream_share"),
        ("seed = 1", "at least one"),
        ("time_scale = 0\n[providers.a]", "time_scale"),
        (
            "[providers.a]\nphases = [{ kind = 'refused', to_s = 2, rate = 0.5 }]",
            "refuses everyone",
        ),
        ("name = ", "TOML syntax"),
    ],
)
def test_mistakes_are_named(text: str, where: str) -> None:
    with pytest.raises(ScenarioError, match=r"^x\.toml: ") as info:
        parse(text, "x.toml")
    assert where in str(info.value)
