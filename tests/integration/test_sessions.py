"""Sessions against a real Redis, with a clock the tests move: idle, maximum length, owners."""

from __future__ import annotations

import pytest
import redis

from config.settings import Settings
from orchestrator.state.sessions import SESSION_ID_RE, SessionState, SessionStore
from tasks import clock
from tasks.errors import (
    InvalidDeviceIdError,
    PermissionDeniedError,
    SessionClosedError,
    SessionExpiredError,
    SessionNotFoundError,
    UsageError,
)
from tasks.keys import Keys

pytestmark = pytest.mark.integration

T0 = 1_700_000_000.0
IDLE_S = 30 * 60
MAX_S = 4 * 60 * 60


class FakeClock:
    """Stands in for `tasks.clock.now`; tests move it with `advance`."""

    def __init__(self, start: float) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock(T0)
    monkeypatch.setattr(clock, "now", fake)
    return fake


@pytest.fixture
def store(redis_client: redis.Redis, keys: Keys, fake_clock: FakeClock) -> SessionStore:
    settings = Settings(session_idle_timeout_s=IDLE_S, session_max_length_s=MAX_S)
    return SessionStore(redis_client, keys, settings)


def test_open_creates_an_open_session_with_a_ttl(
    store: SessionStore, redis_client: redis.Redis, keys: Keys
) -> None:
    session = store.open("alice", "dev1")
    assert SESSION_ID_RE.fullmatch(session.id)
    assert (session.user, session.device_id, session.state) == ("alice", "dev1", "open")
    assert session.created_at == session.last_active == T0
    assert session.cwd == "/" and session.closed_at is None  # the root, not the agent's cwd
    assert store.get(session.id) == session
    ttl = redis_client.ttl(keys.session(session.id))
    assert MAX_S < ttl <= MAX_S + 24 * 3600


def test_unknown_session_is_not_found(store: SessionStore) -> None:
    with pytest.raises(SessionNotFoundError):
        store.get("Sdeadbeef")
    with pytest.raises(SessionNotFoundError):
        store.check_usable("not-an-id:cmds", "alice")


def test_bad_device_id_is_refused(store: SessionStore) -> None:
    with pytest.raises(InvalidDeviceIdError):
        store.open("alice", "dev 1")


def test_session_expires_after_idle_timeout(store: SessionStore, fake_clock: FakeClock) -> None:
    session = store.open("alice", "dev1")
    fake_clock.advance(IDLE_S - 1)
    store.check_usable(session.id, "alice")
    fake_clock.advance(2)
    with pytest.raises(SessionExpiredError, match="idle timeout of 30m") as err:
        store.check_usable(session.id, "alice")
    assert "open a new session" in (err.value.hint or "")
    expired = store.get(session.id)
    assert expired.state is SessionState.EXPIRED
    assert expired.closed_at == T0 + IDLE_S


def test_touch_restarts_the_idle_time(store: SessionStore, fake_clock: FakeClock) -> None:
    session = store.open("alice", "dev1")
    for _ in range(3):
        fake_clock.advance(IDLE_S - 60)
        store.check_usable(session.id, "alice")
        store.touch(session.id)
    assert store.get(session.id).last_active == fake_clock.t


def test_session_expires_at_max_length_even_when_active(
    store: SessionStore, fake_clock: FakeClock
) -> None:
    session = store.open("alice", "dev1")
    while fake_clock.t + IDLE_S / 2 <= T0 + MAX_S:
        fake_clock.advance(IDLE_S / 2)
        store.touch(session.id)
    fake_clock.advance(IDLE_S / 2)
    with pytest.raises(SessionExpiredError, match="maximum length of 4h"):
        store.check_usable(session.id, "alice")
    with pytest.raises(SessionExpiredError):
        store.touch(session.id)


def test_expired_session_stays_refused_when_the_clock_goes_back(
    store: SessionStore, fake_clock: FakeClock
) -> None:
    session = store.open("alice", "dev1")
    fake_clock.advance(IDLE_S + 1)
    with pytest.raises(SessionExpiredError):
        store.check_usable(session.id, "alice")
    fake_clock.t = T0
    with pytest.raises(SessionExpiredError, match="idle"):
        store.check_usable(session.id, "alice")


def test_closed_session_is_refused(store: SessionStore, fake_clock: FakeClock) -> None:
    session = store.open("alice", "dev1")
    fake_clock.advance(10)
    closed = store.close(session.id, reason="done")
    assert closed.state is SessionState.CLOSED
    assert (closed.closed_at, closed.close_reason) == (T0 + 10, "done")
    with pytest.raises(SessionClosedError, match="closed") as err:
        store.check_usable(session.id, "alice")
    assert "open a new session" in (err.value.hint or "")
    with pytest.raises(SessionClosedError):
        store.touch(session.id)
    assert store.close(session.id).close_reason == "done"


def test_other_users_session_is_denied(store: SessionStore) -> None:
    session = store.open("alice", "dev1")
    with pytest.raises(PermissionDeniedError):
        store.check_usable(session.id, "mallory")
    store.close(session.id)
    # Denied, not "closed": others learn nothing about the session's state.
    with pytest.raises(PermissionDeniedError):
        store.check_usable(session.id, "mallory")


def test_cwd_is_kept_across_touches(store: SessionStore, fake_clock: FakeClock) -> None:
    session = store.open("alice", "dev1")
    assert store.set_cwd(session.id, "/srv/app").cwd == "/srv/app"
    fake_clock.advance(60)
    store.touch(session.id)
    assert store.check_usable(session.id, "alice").cwd == "/srv/app"
    assert store.set_cwd(session.id, None).cwd is None
    with pytest.raises(SessionNotFoundError):
        store.set_cwd("S00000000", "/tmp")


def test_list_filters_by_user_and_state(store: SessionStore, fake_clock: FakeClock) -> None:
    a1 = store.open("alice", "dev1")
    fake_clock.advance(1)
    b1 = store.open("bob", "dev2")
    fake_clock.advance(1)
    a2 = store.open("alice", "dev2")
    store.close(a2.id)
    assert [s.id for s in store.list()] == [a1.id, b1.id]
    assert [s.id for s in store.list(user="alice")] == [a1.id]
    assert [s.id for s in store.list(user="alice", include_closed=True)] == [a1.id, a2.id]
    fake_clock.advance(IDLE_S + 1)
    assert store.list() == []
    states = {s.id: s.state for s in store.list(include_closed=True)}
    assert states == {a1.id: "expired", b1.id: "expired", a2.id: "closed"}


def test_a_session_starts_in_the_directory_given_at_open(store: SessionStore) -> None:
    assert store.open("alice", "dev1", "/var/log").cwd == "/var/log"
    assert store.open("alice", "dev1", "C:\\Users").cwd == "C:\\Users"


@pytest.mark.parametrize("cwd", ["var/log", "", "/tmp\nx", "~/x"])
def test_a_start_directory_that_is_not_absolute_is_refused(store: SessionStore,
                                                            cwd: str) -> None:
    with pytest.raises(UsageError, match="not an absolute path"):
        store.open("alice", "dev1", cwd)
