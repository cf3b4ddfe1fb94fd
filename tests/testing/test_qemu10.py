"""The QEMU 10 set-up's pure parts (no download, no guest): the mirror apt is configured with,
and the arguments and environment a Qemu gives a guest."""
from pypdk.testing import vm

SOURCES = """Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_the_mirror_is_the_bookworm_stanzas(tmp_path):
    p = tmp_path / "debian.sources"
    p.write_text("Types: deb\nURIs: http://security.example/ds\nSuites: bookworm-security\n\n" + SOURCES)
    assert vm.debian_mirror(p) == ("http://mirror.example/debian",
                                   "/usr/share/keyrings/debian-archive-keyring.gpg")


def test_no_bookworm_mirror_is_a_one_line_error_with_the_fix(tmp_path):
    p = tmp_path / "debian.sources"
    p.write_text("Types: deb\nURIs: http://x/debian\nSuites: trixie\n")
    try:
        vm.debian_mirror(p)
    except vm.ResourceError as e:
        assert "no Debian bookworm mirror" in e.line() and "Suites: bookworm" in e.line()
    else:
        raise AssertionError("no error")


def test_an_unpacked_qemu_brings_its_firmware_and_module_dirs(tmp_path):
    q = vm._qemu10(tmp_path, "10.0.2")
    assert q.binary == str(tmp_path / "usr/bin/qemu-system-x86_64")
    assert q.args() == ["-L", str(tmp_path / "usr/share/qemu"), "-L", str(tmp_path / "usr/share/seabios"),
                        "-L", str(tmp_path / "usr/lib/ipxe/qemu")]
    assert q.env == {"QEMU_MODULE_DIR": str(tmp_path / "usr/lib/x86_64-linux-gnu/qemu")}
    assert q.has_vf_bar_bug
    assert not vm._qemu10(tmp_path, "10.1.0").has_vf_bar_bug
    assert vm.SYSTEM_QEMU.args() == [] and not vm.SYSTEM_QEMU.env and not vm.SYSTEM_QEMU.has_vf_bar_bug
