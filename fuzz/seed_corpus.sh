#!/bin/sh
# Seeds the corpora (run from the fuzz/ directory): real Fabric v2.5 blocks for decode_block, and a few code
# archives (plain, with links, with the hostile shapes the tests use) for code_archive.
set -eu
mkdir -p corpus/decode_block corpus/code_archive
cp ../fixtures/fabric-v2.5/blocks/*.pb corpus/decode_block/
python3 - <<'PY'
import io, stat, zipfile

def archive(name, entries):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for entry, kind, data in entries:
            info = zipfile.ZipInfo(entry)
            info.create_system = 3
            info.external_attr = {"file": stat.S_IFREG | 0o644, "dir": stat.S_IFDIR | 0o755,
                                  "link": stat.S_IFLNK | 0o777}[kind] << 16
            z.writestr(info, data)
    open("corpus/code_archive/" + name, "wb").write(buffer.getvalue())

archive("plain.zip", [("index.py", "file", "def handler(e, c): return e"), ("lib/", "dir", "")])
archive("inner-link.zip", [("real.py", "file", "x = 1"), ("index.py", "link", "real.py")])
archive("chained.zip", [("a/b/c/up", "link", "../../.."), ("x", "link", "a/b/c/up/../../.."),
                        ("x/escaped.txt", "file", "out")])
archive("through.zip", [("real/", "dir", ""), ("lib", "link", "real"), ("lib/evil.py", "file", "x")])
archive("dotdot.zip", [("../escaped.txt", "file", "x"), ("a\\..\\..\\b", "file", "y")])
PY
