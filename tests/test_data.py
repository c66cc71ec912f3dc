"""The data layer: verified downloads from a real local HTTP server, local import, clear errors."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest

from agent_gym import data
from agent_gym.data import ChecksumError, DataFile, DataMissingError, Dataset

PAYLOAD = b"line one\nline two\n" * 1000


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self):  # noqa: N802 (http.server's name)
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        if self.path.startswith("/cut/"):  # announce the whole file, send half, hang up
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("release/sub/a.txt")
        info.size = len(PAYLOAD)
        tf.addfile(info, io.BytesIO(PAYLOAD))
    _Handler.files = {"/a.txt": PAYLOAD, "/cut/a.txt": PAYLOAD, "/rel.tar.gz": buf.getvalue()}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _register(name: str, *files: DataFile) -> Dataset:
    ds = Dataset(name=name, root=name, files=files)
    data.register_dataset(name, ds)
    return ds


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_fetch_downloads_and_verifies(server, tmp_path):
    _register("t-ok", DataFile("a.txt", url=f"{server}/a.txt", sha256=SHA))
    where = data.fetch("t-ok", data_dir=tmp_path)
    assert (where / "a.txt").read_bytes() == PAYLOAD
    assert data.dataset("t-ok").is_present(tmp_path)


def test_wrong_checksum_leaves_no_file(server, tmp_path):
    _register("t-bad", DataFile("a.txt", url=f"{server}/a.txt", sha256="0" * 64))
    with pytest.raises(ChecksumError, match="expected 0000"):
        data.fetch("t-bad", data_dir=tmp_path)
    assert _leftovers(tmp_path / "t-bad") == []


def test_interrupted_download_leaves_no_half_file(server, tmp_path):
    _register("t-cut", DataFile("a.txt", url=f"{server}/cut/a.txt", sha256=SHA))
    with pytest.raises(Exception):
        data.fetch("t-cut", data_dir=tmp_path)
    assert _leftovers(tmp_path / "t-cut") == []
    _register("t-cut", DataFile("a.txt", url=f"{server}/a.txt", sha256=SHA))  # the retry works
    assert (data.fetch("t-cut", data_dir=tmp_path) / "a.txt").exists()


def test_archive_is_extracted_without_its_top_folder(server, tmp_path):
    _register("t-tar", DataFile("sub/a.txt", url=f"{server}/rel.tar.gz", extract=True, strip="release"))
    where = data.fetch("t-tar", data_dir=tmp_path)
    assert (where / "sub" / "a.txt").read_bytes() == PAYLOAD
    assert _leftovers(tmp_path) == ["a.txt"]


def test_missing_dataset_error_names_the_commands(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENT_GYM_DATA", str(tmp_path))
    _register("t-missing", DataFile("x.json", url="http://127.0.0.1:9/x.json"))
    with pytest.raises(DataMissingError, match=r"agent-gym data fetch t-missing.*agent-gym data import PATH"):
        data.require("t-missing")


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(KeyError, match="known: .*gsm8k"):
        data.dataset("no-such-dataset")


def test_import_copies_verifies_and_reports(tmp_path):
    src = tmp_path / "src"
    (src / "t-imp").mkdir(parents=True)
    (src / "t-imp" / "a.txt").write_bytes(PAYLOAD)
    _register("t-imp", DataFile("a.txt", sha256=SHA))
    _register("t-absent", DataFile("b.txt"))
    result = data.import_local(src, data_dir=tmp_path / "dd", names=["t-imp", "t-absent"])
    assert result == {"t-imp": "imported", "t-absent": "absent"}
    assert (tmp_path / "dd" / "t-imp" / "a.txt").read_bytes() == PAYLOAD
    (src / "t-imp" / "a.txt").write_bytes(b"tampered")
    with pytest.raises(ChecksumError):
        data.import_local(src, data_dir=tmp_path / "dd", names=["t-imp"])


def test_import_of_the_shared_data_via_the_cli(tmp_path, monkeypatch, capsys):
    SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

    if not SHARED_DATA.is_dir():
        pytest.skip("no ../shared/data on this machine")
    from agent_gym.cli import main

    monkeypatch.setenv("AGENT_GYM_DATA", str(tmp_path))
    assert main(["data", "import", str(SHARED_DATA), "--link"]) == 0
    assert "gsm8k" in capsys.readouterr().out
    assert data.dataset("gsm8k").is_present() and data.dataset("mmlu").is_present()
