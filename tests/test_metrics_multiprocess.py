"""/metrics gathers what every web and worker process recorded (prometheus-client multiprocess mode)."""
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sys
    from app import create_app

    app = create_app({"SQLALCHEMY_DATABASE_URI": sys.argv[1], "METRICS_TOKEN": "metrics-test-token"})
    client = app.test_client()
    if sys.argv[2] == "request":
        assert client.get("/healthz").status_code == 200
    else:
        response = client.get("/metrics", headers={"Authorization": "Bearer metrics-test-token"})
        assert response.status_code == 200
        sys.stdout.write(response.get_data(as_text=True))
""")


def _run(database_url: str, action: str, multiproc_dir: str) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": multiproc_dir}
    result = subprocess.run([sys.executable, "-c", SCRIPT, database_url, action], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _healthz_count(metrics_text: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith("kassa_http_requests_total{") and 'endpoint="/healthz"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_sum_requests_served_by_separate_processes(database, tmp_path):
    multiproc_dir = str(tmp_path)
    app_url = database["app_url"]
    _run(app_url, "request", multiproc_dir)
    _run(app_url, "request", multiproc_dir)
    assert _healthz_count(_run(app_url, "scrape", multiproc_dir)) == 2
