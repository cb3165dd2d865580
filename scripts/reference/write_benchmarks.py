"""Writes one benchmark's results into a section of BENCHMARKS.md (between marker comments).

Usage: write_benchmarks.py FILE SECTION COMMAND FACEDEX_JSON PEER_JSON
"""

import datetime
import json
import os
import platform
import re
import sys
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def replace_section(path: Path, section: str, table: str) -> None:
    """Puts `table` (which carries its own markers) between the section's markers in `path`."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"<!-- {section}:begin -->.*?<!-- {section}:end -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: table, text)
    else:
        text = text.rstrip("\n") + "\n\n" + table + "\n"
    path.write_text(text)


def main() -> None:
    path, section, command = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    ours, peer = json.loads(sys.argv[4]), json.loads(sys.argv[5])
    # More of our runs (other settings), each compared with the same peer run.
    variants = [json.loads(argument) for argument in sys.argv[6:]]
    ratio = ours["photos_per_s"] / peer["photos_per_s"]
    table = "\n".join([
        f"<!-- {section}:begin -->",
        f"Measured {datetime.date.today()} on {os.cpu_count()} cores ({cpu_model()}), one run of `{command}`:",
        "",
        "| implementation | photos | faces | seconds | photos/s | faces/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *(f"| {r['implementation']} | {r['photos']} | {r['faces']} | {r['seconds']:.2f} | {r['photos_per_s']:.2f} | {r['faces_per_s']:.2f} |"
          for r in (ours, *variants, peer)),
        "",
        f"**facedex / {peer['implementation']}: {ratio:.2f}× photos/s.**",
        *(line for v in variants for line in (
            "", f"{v['implementation']} / {peer['implementation']}: {v['photos_per_s'] / peer['photos_per_s']:.2f}× photos/s.")),
        f"<!-- {section}:end -->",
    ])
    replace_section(path, section, table)
    print(f"{section}: facedex {ours['photos_per_s']} photos/s, {peer['implementation']} {peer['photos_per_s']} photos/s, ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
