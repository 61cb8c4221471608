"""Fuzz: ``edge bundle`` and ``edge install`` arguments and files, in-process.

``edge bundle`` checks its arguments before it builds or downloads anything: hostile
targets, Python versions, output paths, config files and model paths (with the output always
somewhere it cannot be written, so no case reaches the package index) exit 2 in one line.
``edge install --bundle`` on hostile bytes and on tar archives with hostile member names
(absolute, ``..``, links, devices) refuses them without unpacking anything outside its
scratch directory: exit 2, never a traceback.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from edge.deploy.bundle import PYTHONS, TARGETS
from tests.oracles import has_traceback, run_cli

pytestmark = pytest.mark.fuzz

HOSTILE = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=30)
ARG = st.one_of(HOSTILE, st.sampled_from(["", "-", "--", "x.tar.gz", "/", ".", "..", "\x00"]))


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fuzz-bundle-") as directory:
        yield Path(directory)


@given(
    target=st.one_of(st.sampled_from(sorted(TARGETS)), ARG),
    python=st.one_of(st.sampled_from(PYTHONS), ARG),
    out=ARG,
    config=st.one_of(st.none(), st.binary(max_size=200), ARG),
    models=st.one_of(st.none(), ARG),
)
@example(target="--", python="3.11", out="", config=None, models=None)  # argparse: a list
@example(target="linux_armv7l", python="3.11", out="", config="a\x00b", models=None)
def test_bundle_arguments_exit_2_before_any_download(
    scratch: Path,
    target: str,
    python: str,
    out: str,
    config: bytes | str | None,
    models: str | None,
) -> None:
    # --key=value: a value that looks like an option is still the value.
    argv = ["bundle", f"--target={target}", f"--python={python}",
            f"--out={scratch}/missing/{out}.tar.gz"]  # fmt: skip
    if isinstance(config, bytes):
        (scratch / "edge.toml").write_bytes(config)
        argv += [f"--config={scratch / 'edge.toml'}"]
    elif config is not None:
        argv += [f"--config={config}"]
    if models is not None:
        argv += [f"--models={models}"]
    code, printed = run_cli(argv)
    assert code == 2, printed
    assert not has_traceback(printed) and printed.count("\n") == 1, printed
    assert not (scratch / "missing").exists()


MEMBER = st.one_of(
    st.sampled_from(
        [
            "top/",
            "/etc/passwd",
            "../escape",
            "top/../../x",
            "top/wheels/a.whl",
            "a/install.sh/..",
            "top/link",
            ".",
            "",
        ]
    ),
    HOSTILE.filter(lambda name: not name.endswith("install.sh")),
)
KIND = st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
                        tarfile.CHRTYPE, tarfile.FIFOTYPE])  # fmt: skip


@given(
    members=st.lists(st.tuples(MEMBER, KIND, MEMBER), max_size=6),
    garbage=st.one_of(st.none(), st.binary(max_size=300)),
)
@example(members=[("top/", tarfile.LNKTYPE, "top/")], garbage=None)  # tarfile's KeyError
@example(members=[("top/x\x00", tarfile.REGTYPE, "")], garbage=None)
@example(  # tarfile's own RecursionError: a symlink to "" after a directory of the same name
    members=[("top/", tarfile.REGTYPE, "top/"), ("top/", tarfile.SYMTYPE, "")], garbage=None
)
def test_install_refuses_what_is_not_a_bundle(
    scratch: Path, members: list[tuple[str, bytes, str]], garbage: bytes | None
) -> None:
    bundle = scratch / "bundle.tar.gz"
    if garbage is not None:
        bundle.write_bytes(garbage)
    else:
        with tarfile.open(bundle, "w:gz") as tar:
            for name, kind, target in members:
                info = tarfile.TarInfo(name)
                info.type, info.linkname, info.size = kind, target, 0
                tar.addfile(info, io.BytesIO(b""))
    code, printed = run_cli(["install", "--bundle", str(bundle), "--root", str(scratch / "root")])
    assert code == 2, printed
    assert not has_traceback(printed) and "not an edgeline bundle" in printed, printed
    assert not (scratch / "root").exists() and not Path("/escape").exists()
