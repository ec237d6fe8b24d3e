"""Redis goes away under a live stack: the API answers 503 `redis_unavailable` in one line (no
password), the CLI exits 17, and everything works again once Redis is back, untouched."""

from __future__ import annotations

import time
from pathlib import Path

from click.testing import CliRunner

from orchestrator.cli.main import main
from tasks.errors import RedisUnavailableError
from tasks.signing import KeyPair
from tests.stack import live_stack, new_device_id
from tests.throwaway_redis import PASSWORD, ThrowawayRedis


def test_requests_answer_503_while_redis_is_down_and_work_once_it_is_back(
        throwaway_redis: ThrowawayRedis, tmp_path: Path, signing_keys: KeyPair) -> None:
    device = new_device_id("outage")
    with live_stack(throwaway_redis.url, "lr", [device], tmp_path, signing=signing_keys,
                    heartbeat_interval_s=1.0) as st:
        session = st.open_session(device)
        assert st.run(session, "dir /")["status"] == "completed"

        throwaway_redis.stop()
        with st.client() as http:
            for path in ("/whoami", "/devices", f"/sessions/{session}", "/health"):
                resp = http.get(path)
                assert resp.status_code == 503, (path, resp.text)
                error = resp.json()["error"]
                assert error["code"] == "redis_unavailable"
                assert error["message"] == (
                    f"the orchestrator cannot reach Redis at "
                    f"redis://127.0.0.1:{throwaway_redis.port}/0")
                assert "\n" not in error["message"] and "hint" in error
                assert PASSWORD not in resp.text
            resp = http.post(f"/sessions/{session}/commands", json={"line": "dir /"})
            assert resp.status_code == 503, resp.text
            assert PASSWORD not in resp.text

        env = {"LR_API_URL": st.url, "LR_TOKEN": st.token, "LR_DATA_DIR": str(tmp_path / "h"),
               "LR_REDIS_URL": None}
        result = CliRunner().invoke(main, ["whoami"], env=env)
        assert result.exit_code == RedisUnavailableError.exit_code == 17, result.output
        lines = result.stderr.splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith(
            f"lr: the orchestrator cannot reach Redis at redis://127.0.0.1:{throwaway_redis.port}/0")
        assert PASSWORD not in result.output

        throwaway_redis.start()  # the same port, the same data
        with st.client() as http:
            assert http.get("/whoami").status_code == 200
            assert http.get("/health").json() == {"ok": True}
        ok = CliRunner().invoke(main, ["whoami"], env=env)
        assert ok.exit_code == 0, ok.output
        # The agent reconnects too: a command goes all the way again.
        deadline = time.monotonic() + 20
        body = st.run(session, "dir /")
        while body.get("status") != "completed" and time.monotonic() < deadline:
            body = st.run(session, "dir /")
        assert body["status"] == "completed", body
