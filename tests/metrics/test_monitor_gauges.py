"""The monitor's per-window numbers reach a Pushgateway from the DAG's ``decide`` task body
(``decision.decide_window``), as gauges that parse back to the window's numbers; a Pushgateway
that is not there is logged and the decision stands."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tasks.common.net import free_port
from tasks.monitoring import decision, gauges
from tests.monitoring.test_decision import _settings, _window


class Gateway:
    """Records what is pushed to it, as the Pushgateway's API takes it (PUT /metrics/job/...)."""

    def __init__(self) -> None:
        self.pushes: list[tuple[str, str, str]] = []
        pushes = self.pushes

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                pushes.append(("PUT", self.path, body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def pushed_values(body: str) -> dict[str, tuple[dict[str, str], float]]:
    return {
        s.name: (s.labels, s.value) for family in text_string_to_metric_families(body) for s in family.samples
    }


def test_the_decide_task_pushes_the_window_s_numbers(airloop_home):
    gateway = Gateway()
    try:
        settings = _settings(decision__confirm_windows=1, pushgateway_url=gateway.url)
        made = decision.decide_window(
            settings, _window(0, share=0.5, roc_auc=0.8).as_dict(), running_retrains=0
        )
        assert made["retrain"]
        [(method, path, body)] = gateway.pushes
        assert (method, path) == ("PUT", "/metrics/job/airloop_monitor/model/m")
        got = pushed_values(body)
        assert got["airloop_monitor_drift_share"] == ({"model_version": "1"}, 0.5)
        assert got["airloop_monitor_drift_share_threshold"][1] == 0.3
        assert got["airloop_monitor_live_roc_auc"][1] == 0.8
        assert got["airloop_monitor_holdout_roc_auc"][1] == 0.97
        assert got["airloop_monitor_retrain_triggered"][1] == 1.0
        assert got["airloop_monitor_retrain_failed"][1] == 0.0
        assert got["airloop_monitor_window_end_timestamp_seconds"][1] == _window(0).window.end.timestamp()
        assert set(got) <= set(gauges.GAUGES)

        calm = decision.decide_window(settings, _window(1).as_dict(), running_retrains=0)
        assert not calm["retrain"]
        assert pushed_values(gateway.pushes[-1][2])["airloop_monitor_retrain_triggered"][1] == 0.0
    finally:
        gateway.close()


def test_a_missing_number_is_left_out_and_a_failed_retrain_is_flagged():
    values = gauges.window_values(
        {"numbers": {"drift_share": 0.1, "roc_auc": None}, "retrain": False, "last_retrain_state": "failed"}
    )
    assert "airloop_monitor_live_roc_auc" not in values
    assert values["airloop_monitor_retrain_failed"] == 1.0 and values["airloop_monitor_drift_share"] == 0.1


def test_no_pushgateway_configured_or_reachable_does_not_fail_the_monitor(airloop_home, caplog):
    settings = _settings(decision__confirm_windows=1)
    assert settings.monitor.pushgateway_url is None
    assert gauges.push_window(None, {"window_id": "w"}) is False
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = _settings(decision__confirm_windows=1, pushgateway_url=down)
    with caplog.at_level(logging.WARNING, logger="tasks.monitoring.gauges"):
        made = decision.decide_window(settings, _window(0, roc_auc=0.8).as_dict(), running_retrains=0)
    assert made["retrain"] and made["window_id"] == "w000"
    assert any("could not push window w000" in r.getMessage() for r in caplog.records)
