"""``enqueue`` is typed: mypy accepts tests/typecheck_sample.py and rejects a wrong argument.

The sample marks its deliberately wrong calls with ``# type: ignore[...]``; with
``warn_unused_ignores`` (pyproject.toml) mypy fails as soon as one of them stops being an error.
These tests show both halves: without the ignore the wrong call is reported, and an ignore on a
call that became correct fails the check.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "typecheck_sample.py"
WRONG_CALL = 'await add.enqueue("x", 2)  # type: ignore[arg-type]'


def mypy(path: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    """Run mypy with the project's configuration (strict, warn_unused_ignores) on ``path``.

    A private cache: mypy replays cached errors of an unchanged module with the path it had
    when cached, which would name another test's temp file.
    """
    config = str(ROOT / "pyproject.toml")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            config,
            "--cache-dir",
            str(cache),
            str(path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )


def variant(tmp_path: Path, name: str, replacement: str) -> tuple[Path, int]:
    """A copy of the sample with the wrong call replaced; its path and the call's line."""
    source = SAMPLE.read_text(encoding="utf-8")
    assert source.count(WRONG_CALL) == 1
    line = source[: source.index(WRONG_CALL)].count("\n") + 1
    path = tmp_path / f"{name}.py"
    path.write_text(source.replace(WRONG_CALL, replacement), encoding="utf-8")
    return path, line


def errors(result: subprocess.CompletedProcess[str], path: Path) -> list[str]:
    """mypy's error lines about ``path`` (test_sample_type_checks covers the rest)."""
    return [
        line
        for line in result.stdout.splitlines()
        if line.startswith(f"{path}:") and ": error: " in line
    ]


def test_sample_type_checks(tmp_path: Path) -> None:
    result = mypy(SAMPLE, tmp_path / "cache")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout


def test_wrong_argument_type_is_an_error(tmp_path: Path) -> None:
    path, line = variant(tmp_path, "typecheck_wrong", 'await add.enqueue("x", 2)')
    result = mypy(path, tmp_path / "cache")
    assert result.returncode == 1, result.stdout + result.stderr
    assert errors(result, path) == [
        f'{path}:{line}: error: Argument 1 to "enqueue" of "JobFunction" has incompatible type '
        '"str"; expected "int"  [arg-type]'
    ]


def test_an_ignore_that_is_no_longer_needed_fails(tmp_path: Path) -> None:
    path, line = variant(
        tmp_path, "typecheck_fixed", "await add.enqueue(1, 2)  # type: ignore[arg-type]"
    )
    result = mypy(path, tmp_path / "cache")
    assert result.returncode == 1, result.stdout + result.stderr
    (error,) = errors(result, path)
    assert error.startswith(f'{path}:{line}: error: Unused "type: ignore" comment')
