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
SCRIPT = b'PROMPT = "Answer the question."\nprint(PROMPT)\n'


def upper_prompt(source: bytes) -> bytes:
    """A derive function (the data layer imports it by name): the prompt string of an upstream script."""
    return source.split(b'"')[1].upper()


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
    _Handler.files = {"/a.txt": PAYLOAD, "/cut/a.txt": PAYLOAD, "/rel.tar.gz": buf.getvalue(), "/eval.py": SCRIPT,
                      "/dev.txt": b"dev\n"}
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
    """Files under ``folder``, less the data layer's own bookkeeping (state marker, digest cache)."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".agent-gym-"))


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


def test_optional_files_are_not_needed_but_fetched_and_imported(server, tmp_path, monkeypatch):
    ds = _register("t-opt", DataFile("a.txt", url=f"{server}/a.txt", sha256=SHA),
                   DataFile("dev/dev.txt", url=f"{server}/dev.txt", optional=True))
    (tmp_path / "src" / "t-opt").mkdir(parents=True)
    (tmp_path / "src" / "t-opt" / "a.txt").write_bytes(PAYLOAD)
    assert ds.missing(tmp_path / "src") == [] and ds.is_present(tmp_path / "src")
    assert data.import_local(tmp_path / "src", data_dir=tmp_path / "dd", names=["t-opt"]) == {"t-opt": "imported"}
    monkeypatch.setenv("AGENT_GYM_DATA", str(tmp_path / "dd"))
    assert data.require("t-opt")  # the default split's files are there
    with pytest.raises(DataMissingError, match="dev/dev.txt.*agent-gym data fetch t-opt"):
        data.require("t-opt", "dev/dev.txt")
    (tmp_path / "src" / "t-opt" / "dev").mkdir()
    (tmp_path / "src" / "t-opt" / "dev" / "dev.txt").write_bytes(b"dev\n")
    data.import_local(tmp_path / "src", names=["t-opt"])
    assert (data.require("t-opt", "dev/dev.txt") / "dev" / "dev.txt").read_bytes() == b"dev\n"
    where = data.fetch("t-opt", data_dir=tmp_path / "fresh")
    assert (where / "dev" / "dev.txt").read_bytes() == b"dev\n"


def test_derived_file_is_computed_from_the_checked_upstream_source(server, tmp_path):
    sha = hashlib.sha256(SCRIPT).hexdigest()
    _register("t-derive", DataFile("prompt.txt", url=f"{server}/eval.py", sha256=sha, derive=f"{__name__}:upper_prompt"))
    where = data.fetch("t-derive", data_dir=tmp_path)
    assert (where / "prompt.txt").read_bytes() == b"ANSWER THE QUESTION."
    assert _leftovers(tmp_path) == ["prompt.txt"]  # neither the source nor a temporary file stays
    # the derived file is not checked against the source's sha256: importing it verifies
    assert data.import_local(tmp_path, data_dir=tmp_path / "dd", names=["t-derive"]) == {"t-derive": "imported"}
    _register("t-derive-bad", DataFile("prompt.txt", url=f"{server}/eval.py", sha256="1" * 64,
                                       derive=f"{__name__}:upper_prompt"))
    with pytest.raises(ChecksumError):
        data.fetch("t-derive-bad", data_dir=tmp_path / "bad")
    assert not (tmp_path / "bad" / "t-derive-bad").exists()


def test_fetch_offline_names_the_url_and_the_import_way_and_leaves_no_folder(tmp_path, capsys, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on: the connection is refused as offline
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/a.txt"
    _register("t-offline", DataFile("sub/a.txt", url=url, sha256=SHA))
    with pytest.raises(data.FetchError, match=rf"{url}.*agent-gym data import PATH"):
        data.fetch("t-offline", data_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
    from agent_gym.cli import main

    monkeypatch.setenv("AGENT_GYM_DATA", str(tmp_path))
    assert main(["data", "fetch", "t-offline"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and url in err[0] and "data import" in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_dataset_state_verified_modified_unverified_fetched(server, tmp_path, monkeypatch, capsys):
    src = tmp_path / "src"
    (src / "t-state").mkdir(parents=True)
    (src / "t-state" / "a.txt").write_bytes(PAYLOAD)
    _register("t-state", DataFile("a.txt", sha256=SHA))
    dd = tmp_path / "dd"
    data.import_local(src, data_dir=dd, names=["t-state"])
    state = data.dataset_state("t-state", data_dir=dd)
    assert state == {"name": "t-state", "state": "verified", "files": {"a.txt": SHA}, "source": "import"}
    data.import_local(src, data_dir=dd, names=["t-state"], verify=False)  # unchecked, yet the digests match
    assert data.dataset_state("t-state", data_dir=dd)["state"] == "verified"

    (src / "t-state" / "a.txt").write_bytes(b"edited on purpose\n")
    with pytest.raises(ChecksumError, match="--no-verify"):
        data.import_local(src, data_dir=dd, names=["t-state"])
    assert data.dataset_state("t-state", data_dir=dd)["state"] == "verified"  # the refused copy changed nothing
    monkeypatch.setenv("AGENT_GYM_DATA", str(dd))
    from agent_gym.cli import main

    assert main(["data", "import", "--no-verify", str(src)]) == 0
    state = data.dataset_state("t-state")
    assert state["state"] == "modified" and state["files"]["a.txt"] == hashlib.sha256(b"edited on purpose\n").hexdigest()
    assert (dd / "t-state" / data.MARKER).is_file()
    capsys.readouterr()
    assert main(["data", "list"]) == 0
    assert any(line.startswith("t-state") and "modified" in line for line in capsys.readouterr().out.splitlines())
    _register("t-state", DataFile("a.txt", sha256=SHA), DataFile("b.txt", url=f"{server}/dev.txt", optional=True))
    data.fetch("t-state")  # fetching the rest into an edited copy does not clear its mark
    assert data.dataset_state("t-state")["state"] == "modified"

    _register("t-archive", DataFile("sub/a.txt", url=f"{server}/rel.tar.gz", extract=True, strip="release"))
    data.fetch("t-archive", data_dir=dd)
    assert data.dataset_state("t-archive", data_dir=dd)["state"] == "fetched"
    (src / "t-archive" / "sub").mkdir(parents=True)
    (src / "t-archive" / "sub" / "a.txt").write_bytes(PAYLOAD)
    data.import_local(src, data_dir=dd, names=["t-archive"])
    assert data.dataset_state("t-archive", data_dir=dd)["state"] == "unverified"


def test_dataset_state_catches_an_edit_after_import_and_caches_digests(tmp_path, monkeypatch):
    src = tmp_path / "src"
    (src / "t-edit").mkdir(parents=True)
    (src / "t-edit" / "a.txt").write_bytes(PAYLOAD)
    _register("t-edit", DataFile("a.txt", sha256=SHA))
    dd = tmp_path / "dd"
    data.import_local(src, data_dir=dd, names=["t-edit"])
    assert data.dataset_state("t-edit", data_dir=dd)["state"] == "verified"
    calls = []
    monkeypatch.setattr(data, "sha256_of", lambda p: calls.append(p) or hashlib.sha256(Path(p).read_bytes()).hexdigest())
    for _ in range(3):
        data.dataset_state("t-edit", data_dir=dd)
    assert calls == []  # size and mtime unchanged: the cached digest
    (dd / "t-edit" / "a.txt").write_bytes(b"x" * len(PAYLOAD))
    state = data.dataset_state("t-edit", data_dir=dd)
    assert state["state"] == "modified" and state["differing"] == ["a.txt"] and len(calls) == 1


def test_a_derived_file_with_its_own_digest_is_checked_at_fetch_and_verified_after_import(server, tmp_path):
    source_sha, derived_sha = hashlib.sha256(SCRIPT).hexdigest(), hashlib.sha256(b"ANSWER THE QUESTION.").hexdigest()
    _register("t-derived", DataFile("prompt.txt", url=f"{server}/eval.py", sha256=source_sha,
                                    derive=f"{__name__}:upper_prompt", derived_sha256=derived_sha))
    data.fetch("t-derived", data_dir=tmp_path / "fetched")
    assert data.dataset_state("t-derived", data_dir=tmp_path / "fetched")["state"] == "verified"
    assert data.import_local(tmp_path / "fetched", data_dir=tmp_path / "dd", names=["t-derived"]) == {
        "t-derived": "imported"}
    assert data.dataset_state("t-derived", data_dir=tmp_path / "dd")["state"] == "verified"
    edited = tmp_path / "edited"
    (edited / "t-derived").mkdir(parents=True)
    (edited / "t-derived" / "prompt.txt").write_bytes(b"ANSWER THE QUESTION!")
    with pytest.raises(ChecksumError, match="prompt.txt does not match its sha256"):
        data.import_local(edited, data_dir=tmp_path / "dd", names=["t-derived"])
    data.import_local(edited, data_dir=tmp_path / "dd", names=["t-derived"], verify=False)
    assert data.dataset_state("t-derived", data_dir=tmp_path / "dd")["state"] == "modified"
    # a derivation that no longer gives the declared file: the fetch fails and stores nothing
    _register("t-derived-changed", DataFile("prompt.txt", url=f"{server}/eval.py", sha256=source_sha,
                                            derive=f"{__name__}:upper_prompt", derived_sha256="2" * 64))
    with pytest.raises(ChecksumError, match=f"upper_prompt derived it .* expected {'2' * 64}"):
        data.fetch("t-derived-changed", data_dir=tmp_path / "changed")
    assert _leftovers(tmp_path / "changed") == []


def test_gsm8k_imported_from_the_shared_data_is_verified_prompt_file_included(tmp_path):
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not (shared / "gsm8k").is_dir():
        pytest.skip("no ../shared/data/gsm8k on this machine")
    assert data.import_local(shared, data_dir=tmp_path, names=["gsm8k"]) == {"gsm8k": "imported"}
    state = data.dataset_state("gsm8k", data_dir=tmp_path)
    assert state["state"] == "verified", state
    assert state["files"]["agenttuning_prompt.json"] == (
        "4d26c702c00ee1288c4eae236b1ad3db82c4433be4e6de0f8bb4c2dd50f87944")


def test_jsonl_rows_name_the_bad_line_and_read_gzip(tmp_path):
    import gzip

    from agent_gym.data import jsonl_rows

    good = tmp_path / "rows.jsonl.gz"
    with gzip.open(good, "wt", encoding="utf-8") as fh:
        fh.write('{"a": 1}\n\n{"a": 2}\n')
    assert list(jsonl_rows(good)) == [(1, {"a": 1}), (3, {"a": 2})]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: a row is a JSON object, not list"):
        list(jsonl_rows(bad))
    bad.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not a JSON line"):
        list(jsonl_rows(bad))
