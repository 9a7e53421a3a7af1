"""Secrets in storage and tracking URLs: one masking rule (cnnlab.urls) wherever a URL is printed
or written (search.json, experiment.html, config.yaml, checkpoints, console lines), and a plain
postgresql:// URL reaching the PostgreSQL driver that is installed."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from conftest import run_cli, write_pattern_npy
from pgserver import pg_server

import cnnlab
from cnnlab import urls
from cnnlab.errors import CnnlabError
from cnnlab.urls import mask_text, mask_url, mask_values

TINY = {"model": "mlp", "model_args": {"hidden": 16}, "epochs": 1, "batch_size": 64,
        "num_threads": 1, "device": "cpu", "verbose": False, "report": False}


@pytest.mark.parametrize(("url", "masked"), [
    # a raw "@" in the password: urllib splits at the last "@", so none of it is shown
    ("postgresql://cnnlab:p@ss@db.example:5432/s", "postgresql://cnnlab:***@db.example:5432/s"),
    ("postgresql://cnnlab:p%40ss@db:5432/s", "postgresql://cnnlab:***@db:5432/s"),
    # secret-looking query values, any case; the others stay
    ("postgresql+psycopg2://cnnlab@db/s?password=hunter2&sslmode=require",
     "postgresql+psycopg2://cnnlab@db/s?password=***&sslmode=require"),
    ("mysql+pymysql://u@db/s?PassWord=x&api_key=y&charset=utf8",
     "mysql+pymysql://u@db/s?PassWord=***&api_key=***&charset=utf8"),
    ("https://host/mlflow?token=abc#top", "https://host/mlflow?token=***#top"),
    # on http(s) a user part alone is a token; on a database it is the user name
    ("https://ghp_token@mlflow.example", "https://***@mlflow.example"),
    ("postgresql://cnnlab@db/s", "postgresql://cnnlab@db/s"),
    # nothing secret: the very same text (sqlite's slashes kept)
    ("sqlite:////abs/runs/mlflow.db", "sqlite:////abs/runs/mlflow.db"),
    ("sqlite:///rel/study.db", "sqlite:///rel/study.db"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("runs/mlruns", "runs/mlruns"),
    ("http://u:pw@[::1", "http://***"),  # unparseable: all of it hidden
])
def test_mask_url_hides_every_secret_and_keeps_where(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert urls.is_masked(masked) == (masked != url)


def test_urls_inside_text_and_settings_documents_are_masked() -> None:
    text = "(psycopg2.OperationalError) postgresql://u:s3cret@db/x?password=s3cret failed"
    assert "s3cret" not in mask_text(text) and "postgresql://u:***@db/x" in mask_text(text)
    doc = {"track_uri": "http://u:s3cret@h:5000", "resumed": [
        {"changed": {"track_uri": ["http://u:***@h:5000", "http://u:s3cret@h:5000"]}}],
        "lr": 0.1, "data": "/data/x"}
    out = mask_values(doc)
    assert "s3cret" not in json.dumps(out)
    assert out["lr"] == 0.1 and out["data"] == "/data/x"
    assert doc["track_uri"] == "http://u:s3cret@h:5000"  # a copy: the settings are not changed


def test_a_raw_at_in_the_password_is_encoded_for_sqlalchemy() -> None:
    from sqlalchemy.engine import make_url

    raw = "postgresql+psycopg2://cnnlab:p@ss@db:5432/s?x=a@b"
    assert make_url(raw).host == "ss@db"  # what SQLAlchemy makes of it by itself
    fixed = make_url(urls.encode_password(raw))
    assert (fixed.host, fixed.password, fixed.port) == ("db", "p@ss", 5432)
    assert urls.encode_password("postgresql://cnnlab:pw@db/s") == "postgresql://cnnlab:pw@db/s"


def test_plain_postgresql_gets_the_installed_driver_or_one_line_naming_the_scheme(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnlab.experiments.search import storage_url

    have = {m: urls.installed(m) for m in ("psycopg", "psycopg2")}
    if not any(have.values()):
        pytest.skip("no PostgreSQL driver installed")
    got = storage_url("postgresql://cnnlab@db/s")
    from sqlalchemy.engine import make_url

    driver = make_url(got).get_dialect().driver
    assert have[{"psycopg": "psycopg", "psycopg2": "psycopg2"}[driver]], got
    assert storage_url("postgresql+psycopg2://cnnlab@db/s") == "postgresql+psycopg2://cnnlab@db/s"
    # no driver at all: one line that names the package and the scheme to use, password hidden
    monkeypatch.setattr(urls, "installed", lambda module: False)
    with pytest.raises(CnnlabError) as err:
        storage_url("postgresql://cnnlab:s3cret@db/s")
    msg = str(err.value)
    assert "psycopg2-binary" in msg and "postgresql+psycopg2://" in msg and "s3cret" not in msg
    assert "\n" not in msg


def test_search_json_and_its_page_show_the_storage_without_secrets(tmp_path: Path) -> None:
    from cnnlab.experiments.search import SearchSpec, _meta, write_search_page

    spec = SearchSpec(base={}, space={"optimizer": {"type": "categorical", "choices": ["sgd"]}},
                      out=str(tmp_path), study="s",
                      storage="postgresql://cnnlab:p@ss@db/s?password=hunter2")
    meta = _meta(spec, None)
    assert meta["storage"] == "postgresql://cnnlab:***@db/s?password=***"
    page = write_search_page(tmp_path, [], ["trial"], meta).read_text()
    assert "hunter2" not in page and "p@ss" not in page and "ss@db" not in page
    assert "postgresql://cnnlab:***@db/s?password=***" in page


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when this returns: connections are refused


def test_config_yaml_checkpoints_and_messages_of_a_run_hold_no_tracking_password(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("mlflow", reason="pip install -e '.[track]'")
    uri = f"http://cnnlab:s3cret@127.0.0.1:{_closed_port()}/?token=t0ken"
    res = cnnlab.train(**TINY, track="mlflow", track_uri=uri, out=str(tmp_path / "run"))
    err = capsys.readouterr().err
    files = [p for p in res.run_dir.rglob("*") if p.is_file()]
    assert {"config.yaml", "best.pt", "metrics.json"} <= {p.name for p in files}
    for p in files:  # the checkpoints too: they are shared and uploaded
        data = p.read_bytes()
        assert b"s3cret" not in data and b"t0ken" not in data, p
    assert "s3cret" not in err and "t0ken" not in err
    assert "--track mlflow is off" in err
    assert "cnnlab:***@127.0.0.1" in (res.run_dir / "config.yaml").read_text()
    # a resume without --track-uri cannot use the masked one: it says so and trains on
    res = cnnlab.train(epochs=2, out=str(res.run_dir), resume=True, verbose=False)
    err = capsys.readouterr().err
    assert sum("give --track-uri again" in line for line in err.splitlines()) == 1, err
    assert len(res.history) == 2


def _search(data: Path, out: Path, storage: str) -> tuple[str, str]:
    r = run_cli("search", str(data), "--lr", "1e-3:0.1:log", "--epochs", "1", "--trials", "2",
                "--pruner", "none", "--model", "mlp", "--model-arg", "hidden=8",
                "--num-threads", "1", "--no-member-plots", "--storage", storage,
                "--study", out.name, "--out", str(out))
    assert r.returncode == 0, r.stderr
    return r.stdout, r.stderr


@pytest.mark.slow  # a PostgreSQL server and two searches of two trials
def test_a_postgresql_search_in_both_url_forms_writes_no_password(tmp_path: Path) -> None:
    data = write_pattern_npy(tmp_path / "pat", 20, test_every=None)
    with pg_server() as url:  # postgresql+psycopg2://cnnlab@127.0.0.1:PORT/postgres (trust)
        where = url.split("://", 1)[1].split("@", 1)[1]
        forms = {  # the README's plain form, with a raw "@" in the password ...
            "plain": (f"postgresql://cnnlab:p@ss@{where}", ["p@ss", "ss@127"],
                      f"postgresql://cnnlab:***@{where}"),
            # ... and the explicit driver with the password as a query parameter
            "driver": (f"postgresql+psycopg2://cnnlab@{where}?password=hunter2", ["hunter2"],
                       f"postgresql+psycopg2://cnnlab@{where}?password=***")}
        for name, (storage, secrets, shown) in forms.items():
            out = tmp_path / name
            stdout, stderr = _search(data, out, storage)
            meta = json.loads((out / "search.json").read_text())
            assert meta["storage"] == shown and meta["counts"]["complete"] == 2, meta
            page = (out / "experiment.html").read_text()
            assert shown in page
            for text in (json.dumps(meta), page, stdout, stderr,
                         (out / "leaderboard.csv").read_text()):
                assert not any(s in text for s in secrets), (name, text[:300])
