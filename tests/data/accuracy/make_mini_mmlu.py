"""Write tests/data/accuracy/mmlu-mini.tar.gz: MMLU's layout (data/dev, data/test CSVs for its 57
subjects) with made-up rows, byte-identical on every run, for the fake trtllm-eval.

Usage: python tests/data/accuracy/make_mini_mmlu.py   (then re-pin its sha256 in the fake manifests)
"""

from __future__ import annotations

import gzip
import io
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "fakes"))

from trtllm_eval_options import MMLU_SUBJECTS  # noqa: E402

DEV_ROWS, TEST_ROWS = 5, 2


def rows(subject: str, n: int, kind: str) -> bytes:
    topic = subject.replace("_", " ")
    lines = [
        f'"{kind} question {i} about {topic}?",one,two,three,four,{"ABCD"[i % 4]}' for i in range(n)
    ]
    return ("\n".join(lines) + "\n").encode()


def archive() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for subject in MMLU_SUBJECTS:
            for kind, n in (("dev", DEV_ROWS), ("test", TEST_ROWS)):
                data = rows(subject, n, kind)
                info = tarfile.TarInfo(f"data/{kind}/{subject}_{kind}.csv")
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


if __name__ == "__main__":
    (HERE / "mmlu-mini.tar.gz").write_bytes(archive())
