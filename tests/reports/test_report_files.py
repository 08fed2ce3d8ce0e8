"""Writing a report: links a browser can only read as relative paths, a temporary file that is never an existing
one, and a directory that refuses the report refusing it in one line with nothing written."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner
from tunelab.registry.recording import record_scores
from tunelab.reports import files
from tunelab.reports.render import write_report

from tests.helpers import finished_run, scores
from tests.reports.parsing import parse
from tunelab.cli import cli


def a_run(registry) -> int:
    run = finished_run(registry, "linked")
    record_scores(registry, run, scores("finetuned", f"run:{run}", {"arc_challenge": 0.3}))
    return run


def links(path: Path) -> list[str]:
    return [a.attrs["href"] for a in parse(path.read_text(encoding="utf-8")).iter("a")]


def test_links_are_relative_paths_whatever_the_report_is_called(registry, tmp_path):
    run = a_run(registry)
    # "report-2024-05-01T12:00_runs/run-1.html" reads as a URL of the scheme "report-2024-05-01t12".
    for name, href in (("report-2024-05-01T12:00.html", f"./report-2024-05-01T12%3A00_runs/run-{run}.html"),
                       ("javascript:alert(1)%2F%2F.html", f"./javascript%3Aalert%281%29%252F%252F_runs/run-{run}.html"),
                       ("lb #1?.html", f"./lb%20%231%3F_runs/run-{run}.html")):
        out = tmp_path / name
        write_report(registry, out, title="t", jobs=1)
        assert links(out) == [href]
        page = tmp_path / f"{out.stem}_runs" / f"run-{run}.html"
        assert page.is_file()
        assert links(page)[0].startswith("../") and "/" not in links(page)[0][3:]


def test_a_link_planted_at_the_old_temporary_name_is_not_written_through(registry, tmp_path):
    a_run(registry)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious", encoding="utf-8")
    (tmp_path / ".lb.html.tmp").symlink_to(victim)
    write_report(registry, tmp_path / "lb.html", title="t", jobs=1)
    assert victim.read_text(encoding="utf-8") == "precious"
    assert "<table" in (tmp_path / "lb.html").read_text(encoding="utf-8")


def test_the_temporary_file_is_created_exclusively_never_through_what_is_there(registry, tmp_path, monkeypatch):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious", encoding="utf-8")
    planted = tmp_path / ".page.html.planted.tmp"
    planted.symlink_to(victim)
    names = iter([planted.name, ".page.html.fresh.tmp"])  # the first name tried is taken by the link
    monkeypatch.setattr(files, "_temporary_name", lambda target: target.with_name(next(names)))
    files.write_atomically(tmp_path / "page.html", "<p>report</p>")
    assert victim.read_text(encoding="utf-8") == "precious" and planted.is_symlink()
    assert (tmp_path / "page.html").read_text(encoding="utf-8") == "<p>report</p>"
    assert not (tmp_path / ".page.html.fresh.tmp").exists()
    assert oct((tmp_path / "page.html").stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def report_into(registry, tmp_path, output: Path):
    return CliRunner().invoke(cli, ["--home", str(tmp_path / "home"), "--db", registry.url, "report",
                                    "-o", str(output)])


def test_a_report_into_a_place_that_is_no_directory_is_one_line_and_writes_nothing(registry, tmp_path):
    a_run(registry)
    (tmp_path / "out").write_text("a file, not a directory", encoding="utf-8")
    before = sorted(tmp_path.rglob("*"))
    result = report_into(registry, tmp_path, tmp_path / "out" / "lb.html")
    assert result.exit_code == 1
    assert result.output.splitlines() == [f"Error: cannot write {tmp_path / 'out' / 'lb.html'}: Not a directory"]
    assert sorted(tmp_path.rglob("*")) == before


def test_a_directory_that_refuses_writes_gets_one_line_and_nothing_written(registry, tmp_path, monkeypatch):
    a_run(registry)
    target = tmp_path / "shared"
    target.mkdir()

    def refuse(path: Path) -> int:  # a directory the user may not write (whoever runs the tests)
        if path.parent == target:
            raise PermissionError(13, "Permission denied", str(path))
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)

    monkeypatch.setattr(files, "_create_exclusive", refuse)
    result = report_into(registry, tmp_path, target / "lb.html")
    assert result.exit_code == 1
    assert result.output.splitlines() == [f"Error: cannot write {target / 'lb.html'}: Permission denied"]
    assert list(target.iterdir()) == []  # not even the run pages' folder


def test_the_error_crosses_from_a_forked_page_writer_intact():
    import pickle

    error = files.ReportWriteError.of(Path("/r/lb.html"), PermissionError(13, "Permission denied"))
    assert str(pickle.loads(pickle.dumps(error))) == "cannot write /r/lb.html: Permission denied"
